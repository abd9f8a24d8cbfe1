//! What one write costs the CDC pipeline: Kafka records and bytes per addItem (by topic), WAL
//! bytes per addItem, and the CPU that Postgres, Kafka Connect and Kafka spend per 1,000 of them.
//! It measures whatever the stack captures, so the same command compares capture settings.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::{Context, Result};
use futures::StreamExt;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::client::{create_orders, gql, ADD_ITEM};
use crate::server::Server;
use crate::stack::{cpu_by_process, cpu_seconds_between, Ends, Kafka, Service, HEARTBEATS};
use crate::Ctx;

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
    let cpu = |service: Service| cpu_seconds_between(&cpu_before, &cpu_after, service) * 1_000.0 / ok * 1_000.0;
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
