//! What the bench observes of the stack itself: Debezium's topics and their end offsets in
//! Kafka, and the CPU time of the stack's processes (Postgres, Kafka, Kafka Connect) and of
//! ordercast instances, read from `/proc`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use uuid::Uuid;

/// Debezium's heartbeat topic for the `ordercast` prefix.
pub(crate) const HEARTBEATS: &str = "__debezium-heartbeat.ordercast";

pub(crate) type Ends = HashMap<(String, i32), i64>;

pub(crate) struct Kafka {
    consumer: BaseConsumer,
    brokers: String,
}

impl Kafka {
    pub(crate) fn connect(brokers: &str) -> Result<Kafka> {
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
    pub(crate) fn cdc_topics(&self) -> Result<Vec<String>> {
        let metadata = self.consumer.fetch_metadata(None, Duration::from_secs(10))?;
        Ok(metadata
            .topics()
            .iter()
            .map(|t| t.name().to_owned())
            .filter(|name| name.starts_with("ordercast.") || name == HEARTBEATS)
            .collect())
    }

    pub(crate) fn ends(&self, topics: &[String]) -> Result<Ends> {
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
    pub(crate) async fn settle(&self, topics: &[String]) -> Result<()> {
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
    pub(crate) fn read_between(&self, topic: &str, before: &Ends, after: &Ends) -> Result<(u64, u64)> {
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
pub(crate) enum Service {
    Postgres,
    Connect,
    Kafka,
}

/// CPU ticks (user + system) of every process of the stack, by pid.
pub(crate) fn cpu_by_process() -> HashMap<u32, (Service, u64)> {
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
        cpu.insert(pid, (service, cpu_ticks(rest)));
    }
    cpu
}

pub(crate) fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// CPU seconds `service` spent between two `cpu_by_process` samples.
pub(crate) fn cpu_seconds_between(
    before: &HashMap<u32, (Service, u64)>,
    after: &HashMap<u32, (Service, u64)>,
    service: Service,
) -> f64 {
    let ticks: u64 = after
        .iter()
        .filter(|(_, (owner, _))| *owner == service)
        .map(|(pid, (_, ticks))| ticks - before.get(pid).map_or(0, |(_, earlier)| *earlier))
        .sum();
    ticks as f64 / clock_ticks_per_second()
}

/// CPU time process `pid` has used so far (user + system), in seconds.
pub(crate) fn process_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name is in parentheses and may contain spaces.
    cpu_ticks(stat.rsplit(')').next().unwrap_or_default()) as f64 / clock_ticks_per_second()
}

/// User + system ticks from the fields of `/proc/<pid>/stat` after the command name (state is
/// field 3, utime 14 and stime 15, 1-based).
fn cpu_ticks(after_command: &str) -> u64 {
    let fields: Vec<&str> = after_command.split_whitespace().collect();
    [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<u64>().ok())
        .sum()
}

/// A consumer assigned to every partition of `topic` at its current end: it reads only what is
/// published from now on.
pub(crate) fn consumer_at_end(brokers: &str, topic: &str) -> Result<StreamConsumer> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("ordercast-bench-{}", Uuid::now_v7()))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "5")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut assignment = TopicPartitionList::new();
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        assignment.add_partition_offset(topic, partition.id(), Offset::End)?;
    }
    anyhow::ensure!(
        assignment.count() > 0,
        "{topic} has no partitions: is the connector running?"
    );
    consumer.assign(&assignment)?;
    Ok(consumer)
}
