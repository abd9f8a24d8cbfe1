//! The rdkafka consumer. It assigns partitions itself (no consumer group
//! membership, no offset commits), so every instance reads every partition
//! and no instance can take partitions away from another.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use uuid::Uuid;

use super::decode::{decode_version, Decoded};
use crate::live::Hub;
use crate::telemetry::metric;

/// Where the change events are and how patient to be with them.
#[derive(Debug, Clone)]
pub struct CdcConfig {
    pub brokers: String,
    /// Debezium's topic for the `order_versions` table.
    pub versions_topic: String,
    /// Debezium's heartbeat topic: proof of life while no order changes.
    pub heartbeat_topic: String,
    /// Silence after which the stream counts as stalled (heartbeats come every 2 s).
    pub stall_after: Duration,
}

impl CdcConfig {
    pub fn new(brokers: impl Into<String>) -> Self {
        CdcConfig {
            brokers: brokers.into(),
            versions_topic: "ordercast.public.order_versions".to_owned(),
            heartbeat_topic: "__debezium-heartbeat.ordercast".to_owned(),
            stall_after: Duration::from_secs(10),
        }
    }
}

/// What `/readyz` reports about the CDC stream. `assigned` means the start
/// offsets are fixed: every commit from then on will be consumed.
#[derive(Debug, Default)]
pub struct CdcStatus {
    assigned: AtomicBool,
    outage: AtomicBool,
}

impl CdcStatus {
    /// Start offsets fixed and no outage.
    pub fn is_ready(&self) -> bool {
        self.assigned.load(Ordering::Acquire) && !self.outage.load(Ordering::Acquire)
    }

    fn begin_outage(&self, why: &str) {
        if !self.outage.swap(true, Ordering::AcqRel) {
            metrics::counter!(metric::CDC_OUTAGES).increment(1);
            tracing::warn!(
                why,
                "CDC stream interrupted; subscribers will be resynced when it resumes"
            );
        }
    }
}

struct CdcContext {
    status: Arc<CdcStatus>,
}

impl ClientContext for CdcContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.status.begin_outage("all Kafka brokers are down");
        } else {
            tracing::debug!(%error, reason, "kafka client error");
        }
    }

    fn stats(&self, statistics: Statistics) {
        for topic in statistics.topics.values() {
            for partition in topic
                .partitions
                .values()
                .filter(|p| p.partition >= 0 && p.app_offset >= 0)
            {
                let lag = (partition.hi_offset - partition.app_offset).max(0);
                metrics::gauge!(metric::CDC_CONSUMER_LAG, "topic" => topic.topic.clone(), "partition" => partition.partition.to_string())
                    .set(lag as f64);
            }
        }
    }
}

impl ConsumerContext for CdcContext {}

type CdcConsumer = StreamConsumer<CdcContext>;

/// Consumes forever, rebuilding the consumer after fatal errors.
pub async fn run(config: CdcConfig, hub: Arc<Hub>, status: Arc<CdcStatus>) {
    loop {
        if let Err(error) = consume(&config, &hub, &status).await {
            tracing::error!(%error, "CDC consumer failed; restarting it");
            status.assigned.store(false, Ordering::Release);
            status.begin_outage("consumer restart");
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
}

async fn consume(config: &CdcConfig, hub: &Hub, status: &Arc<CdcStatus>) -> Result<(), KafkaError> {
    let consumer: Arc<CdcConsumer> = Arc::new(
        ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            // Required by librdkafka, never joined: partitions are assigned by hand.
            .set("group.id", format!("ordercast-live-{}", Uuid::now_v7()))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "latest")
            .set("fetch.wait.max.ms", "5")
            .set("fetch.min.bytes", "1")
            .set("statistics.interval.ms", "5000")
            .create_with_context(CdcContext { status: status.clone() })?,
    );
    let mut assigned: HashSet<(String, i32)> = HashSet::new();
    let mut first_look = true;
    let mut last_record = Instant::now();
    let mut metadata_tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            message = consumer.recv() => match message {
                Ok(message) => {
                    last_record = Instant::now();
                    if status.outage.swap(false, Ordering::AcqRel) {
                        tracing::info!("CDC stream resumed; resyncing every subscriber");
                        hub.resync_all();
                    }
                    let topic = message.topic();
                    metrics::counter!(metric::CDC_EVENTS, "topic" => topic.to_owned()).increment(1);
                    if topic == config.versions_topic {
                        match decode_version(message.payload()) {
                            Ok(Decoded::Version(version)) => {
                                record_pipeline_latency(&version, message.timestamp().to_millis());
                                hub.publish(version);
                            }
                            Ok(Decoded::Ignored) => {}
                            Err(error) => {
                                metrics::counter!(metric::CDC_DECODE_ERRORS, "topic" => topic.to_owned()).increment(1);
                                tracing::warn!(topic, partition = message.partition(), offset = message.offset(), %error, "skipping a malformed change event");
                            }
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "error while consuming change events");
                    status.begin_outage("consume error");
                }
            },
            _ = metadata_tick.tick() => {
                if assign_new_partitions(&consumer, config, &mut assigned, first_look).await? {
                    first_look = false;
                    if !status.assigned.swap(true, Ordering::AcqRel) {
                        // Start offsets are fixed now. A subscription that read its
                        // state before this point may have missed a commit: reload it.
                        hub.resync_all();
                    }
                }
                let heartbeats_expected = assigned.iter().any(|(topic, _)| *topic == config.heartbeat_topic);
                if heartbeats_expected && last_record.elapsed() > config.stall_after {
                    status.begin_outage("no change event or heartbeat within the stall limit");
                }
            }
        }
    }
}

/// Assigns partitions not assigned yet; false when Kafka could not be asked.
/// On the first look, existing partitions start at their current end (concrete
/// offsets, so "from now" is well defined); a topic or partition that appears
/// later starts at its beginning, since all of it is newer than our start.
async fn assign_new_partitions(
    consumer: &Arc<CdcConsumer>,
    config: &CdcConfig,
    assigned: &mut HashSet<(String, i32)>,
    first_look: bool,
) -> Result<bool, KafkaError> {
    let mut additions = TopicPartitionList::new();
    for topic in [&config.versions_topic, &config.heartbeat_topic] {
        let lookup = consumer.clone();
        let name = topic.clone();
        let Some(partitions) = tokio::task::spawn_blocking(move || partitions_of(&lookup, &name))
            .await
            .map_err(|_| KafkaError::Canceled)?
        else {
            return Ok(false);
        };
        let fresh: Vec<i32> = partitions
            .into_iter()
            .filter(|p| !assigned.contains(&(topic.clone(), *p)))
            .collect();
        for partition in fresh {
            let offset = if first_look || *topic == config.heartbeat_topic {
                let lookup = consumer.clone();
                let name = topic.clone();
                let (_, high) = tokio::task::spawn_blocking(move || {
                    lookup.fetch_watermarks(&name, partition, Duration::from_secs(5))
                })
                .await
                .map_err(|_| KafkaError::Canceled)??;
                Offset::Offset(high)
            } else {
                Offset::Beginning
            };
            additions.add_partition_offset(topic, partition, offset)?;
            assigned.insert((topic.clone(), partition));
            tracing::info!(topic, partition, ?offset, "consuming change events");
        }
    }
    if additions.count() > 0 {
        consumer.incremental_assign(&additions)?;
    }
    Ok(true)
}

/// The partitions of a topic (none while it does not exist); `None` when Kafka is unreachable.
fn partitions_of(consumer: &CdcConsumer, topic: &str) -> Option<Vec<i32>> {
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(5)).ok()?;
    Some(
        metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect(),
    )
}

/// Splits commit-to-push latency into its stages: Debezium and Connect (commit to the Kafka
/// record timestamp), then Kafka to this instance (the rest, up to decoding here).
fn record_pipeline_latency(version: &crate::domain::OrderVersion, kafka_timestamp_ms: Option<i64>) {
    if let Some(seconds) = kafka_timestamp_ms.and_then(|ms| version.seconds_after_commit(ms)) {
        metrics::histogram!(metric::CDC_COMMIT_TO_KAFKA).record(seconds);
    }
    if let Some(seconds) = version.seconds_after_commit(chrono::Utc::now().timestamp_millis()) {
        metrics::histogram!(metric::CDC_COMMIT_TO_CONSUME).record(seconds);
    }
}
