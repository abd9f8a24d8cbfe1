//! What one write costs the CDC pipeline: Kafka records and bytes per addItem (by topic), WAL
//! bytes per addItem, and the CPU that Postgres, Kafka Connect and Kafka spend per 1,000 of them.
//! It measures whatever the stack captures, so the same command compares capture settings.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::client::{create_orders, gql};
use crate::server::Server;
use crate::Ctx;

const ADD_ITEM: &str = "mutation($o: ID!, $p: ID!) { addItem(orderId: $o, productId: $p, quantity: 1) { version } }";
const HEARTBEATS: &str = "__debezium-heartbeat.ordercast";
/// Orders written at once; each order's items are added one after another.
const PARALLEL_ORDERS: usize = 8;

pub(crate) async fn footprint(ctx: &mut Ctx, s1: &Server) -> Result<Value> {
    let writes: usize = if ctx.args.quick { 200 } else { 2_000 };
    let per_order = ctx.products.len();
    let orders = create_orders(ctx, s1, writes.div_ceil(per_order), false).await?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&ctx.args.database_url)
        .await
        .context("connecting to Postgres")?;
    let kafka = Kafka::connect(&ctx.args.kafka_brokers)?;
    let topics = kafka.cdc_topics()?;
    // Let the order creations above drain through the pipeline first.
    kafka.settle(&topics).await?;

    let wal_before: i64 = sqlx::query_scalar("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint")
        .fetch_one(&pool)
        .await?;
    let ends_before = kafka.ends(&topics)?;
    let cpu_before = cpu_by_process();
    let started = Instant::now();

    let lines: Vec<(Uuid, Uuid)> = orders
        .iter()
        .flat_map(|order| ctx.products.iter().map(move |product| (*order, *product)))
        .take(writes)
        .collect();
    let mut by_order: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    for (order, product) in lines {
        by_order.entry(order).or_default().push(product);
    }
    let failures: usize = futures::stream::iter(by_order)
        .map(|(order, products)| {
            let (http, base, token) = (ctx.http.clone(), s1.base.clone(), ctx.token.clone());
            async move {
                let mut failed = 0;
                for product in products {
                    let vars = json!({ "o": order, "p": product });
                    failed += usize::from(gql(&http, &base, &token, ADD_ITEM, vars).await.is_err());
                }
                failed
            }
        })
        .buffer_unordered(PARALLEL_ORDERS)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .sum();
    let writing = started.elapsed();
    kafka.settle(&topics).await?;

    let wal_after: i64 = sqlx::query_scalar("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint")
        .fetch_one(&pool)
        .await?;
    let cpu_after = cpu_by_process();
    let ends_after = kafka.ends(&topics)?;
    pool.close().await;
    let window = started.elapsed();

    let ok = (writes - failures) as f64;
    let mut per_topic = serde_json::Map::new();
    let (mut records, mut bytes) = (0_u64, 0_u64);
    for topic in topics.iter().filter(|t| *t != HEARTBEATS) {
        let (n, size) = kafka.read_between(topic, &ends_before, &ends_after)?;
        records += n;
        bytes += size;
        if n > 0 {
            per_topic.insert(
                topic.clone(),
                json!({ "records_per_write": n as f64 / ok, "bytes_per_write": size as f64 / ok }),
            );
        }
    }
    let heartbeats = count_between(HEARTBEATS, &ends_before, &ends_after);
    let cpu = |service: Service| {
        let ticks = cpu_after
            .iter()
            .filter(|(_, (owner, _))| *owner == service)
            .map(|(pid, (_, after))| after - cpu_before.get(pid).map_or(0, |(_, before)| *before))
            .sum::<u64>();
        ticks as f64 * 1_000.0 / clock_ticks_per_second() / ok * 1_000.0
    };
    let result = json!({
        "writes": writes, "failed": failures,
        "writes_per_s": ok / writing.as_secs_f64(),
        "window_s": window.as_secs_f64(),
        "kafka_records_per_write": records as f64 / ok,
        "kafka_bytes_per_write": bytes as f64 / ok,
        "by_topic": per_topic,
        "heartbeat_records_in_window": heartbeats,
        "wal_bytes_per_write": (wal_after - wal_before) as f64 / ok,
        "cpu_ms_per_1000_writes": {
            "postgres": cpu(Service::Postgres), "connect": cpu(Service::Connect), "kafka": cpu(Service::Kafka),
        },
    });
    ctx.rows.push(format!(
        "| footprint | {writes} addItem | {:.2} Kafka records and {:.0} bytes per write; WAL {:.0} bytes per write; CPU per 1,000 writes: Postgres {:.0} ms, Connect {:.0} ms, Kafka {:.0} ms |",
        records as f64 / ok,
        bytes as f64 / ok,
        (wal_after - wal_before) as f64 / ok,
        cpu(Service::Postgres),
        cpu(Service::Connect),
        cpu(Service::Kafka),
    ));
    Ok(result)
}

fn count_between(topic: &str, before: &Ends, after: &Ends) -> i64 {
    after
        .iter()
        .filter(|((t, _), _)| t == topic)
        .map(|(key, end)| end - before.get(key).copied().unwrap_or(0))
        .sum()
}

type Ends = HashMap<(String, i32), i64>;

struct Kafka {
    consumer: BaseConsumer,
    brokers: String,
}

impl Kafka {
    fn connect(brokers: &str) -> Result<Kafka> {
        Ok(Kafka {
            consumer: Self::config(brokers).create()?,
            brokers: brokers.to_owned(),
        })
    }

    fn config(brokers: &str) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", brokers)
            .set("group.id", format!("ordercast-bench-{}", Uuid::now_v7()))
            .set("enable.auto.commit", "false");
        config
    }

    /// Debezium's topics: the `ordercast.` ones and its heartbeats.
    fn cdc_topics(&self) -> Result<Vec<String>> {
        let metadata = self.consumer.fetch_metadata(None, Duration::from_secs(10))?;
        Ok(metadata
            .topics()
            .iter()
            .map(|t| t.name().to_owned())
            .filter(|name| name.starts_with("ordercast.") || name == HEARTBEATS)
            .collect())
    }

    fn ends(&self, topics: &[String]) -> Result<Ends> {
        let mut ends = HashMap::new();
        for topic in topics {
            let metadata = self.consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
            for partition in metadata.topics()[0].partitions() {
                let (_, high) = self
                    .consumer
                    .fetch_watermarks(topic, partition.id(), Duration::from_secs(10))?;
                ends.insert((topic.clone(), partition.id()), high);
            }
        }
        Ok(ends)
    }

    /// Waits until no CDC topic but the heartbeats grew for two seconds.
    async fn settle(&self, topics: &[String]) -> Result<()> {
        let changes: Vec<String> = topics.iter().filter(|t| *t != HEARTBEATS).cloned().collect();
        let mut last = self.ends(&changes)?;
        let mut quiet_since = Instant::now();
        let deadline = Instant::now() + Duration::from_secs(120);
        while quiet_since.elapsed() < Duration::from_secs(2) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = self.ends(&changes)?;
            if now != last {
                last = now;
                quiet_since = Instant::now();
            }
        }
        Ok(())
    }

    /// Records and key+value bytes of `topic` between two sets of end offsets.
    fn read_between(&self, topic: &str, before: &Ends, after: &Ends) -> Result<(u64, u64)> {
        let consumer: BaseConsumer = Self::config(&self.brokers).create()?;
        let mut assignment = TopicPartitionList::new();
        let mut remaining = 0_i64;
        for ((t, partition), end) in after.iter().filter(|((t, _), _)| t == topic) {
            let start = before.get(&(t.clone(), *partition)).copied().unwrap_or(0);
            if *end > start {
                assignment.add_partition_offset(t, *partition, Offset::Offset(start))?;
                remaining += end - start;
            }
        }
        if remaining == 0 {
            return Ok((0, 0));
        }
        consumer.assign(&assignment)?;
        let (mut records, mut bytes) = (0_u64, 0_u64);
        let deadline = Instant::now() + Duration::from_secs(60);
        while remaining > 0 && Instant::now() < deadline {
            let Some(message) = consumer.poll(Duration::from_millis(500)) else {
                continue;
            };
            let message = message?;
            let end = after[&(topic.to_owned(), message.partition())];
            if message.offset() < end {
                records += 1;
                remaining -= 1;
                bytes += (message.key().map_or(0, <[u8]>::len) + message.payload().map_or(0, <[u8]>::len)) as u64;
            }
        }
        Ok((records, bytes))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    Postgres,
    Connect,
    Kafka,
}

/// CPU ticks (user + system) of every process of the stack, by pid.
fn cpu_by_process() -> HashMap<u32, (Service, u64)> {
    let mut cpu = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return cpu;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        let service = if head.ends_with("(postgres") {
            Service::Postgres
        } else if cmdline.contains("-Dordercast.stack=") && cmdline.contains("ConnectStandalone") {
            Service::Connect
        } else if cmdline.contains("-Dordercast.stack=") && cmdline.contains("kafka.Kafka") {
            Service::Kafka
        } else {
            continue;
        };
        // Fields after the command: state is field 3, utime 14 and stime 15 (1-based).
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = fields.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
            + fields.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        cpu.insert(pid, (service, ticks));
    }
    cpu
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}
