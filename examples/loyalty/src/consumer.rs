//! The consumer group member: reads events in partition order, applies each,
//! and stores its offset only once the points transaction has committed (the
//! stored offsets are committed to Kafka in the background). A crash between
//! the two redelivers the event, which the version check then skips.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::signal::unix::{signal, SignalKind};

use crate::config::{Config, ReplayFrom};
use crate::points::{Applied, OrderEvent, PointsStore, SCHEMA_VERSION};

/// Logs each assignment, so operators (and tests) see how replicas split the partitions.
struct GroupLog;

impl ClientContext for GroupLog {}

impl ConsumerContext for GroupLog {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                let mut assigned: Vec<i32> = partitions.elements().iter().map(|p| p.partition()).collect();
                assigned.sort_unstable();
                tracing::info!(?assigned, "assigned partitions");
            }
            Rebalance::Revoke(_) => tracing::info!("partitions revoked"),
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance failed"),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(error) = result {
            tracing::warn!(%error, "committing offsets failed; they are committed again with the next ones");
        }
    }
}

fn client_config(config: &Config) -> ClientConfig {
    let mut client = ClientConfig::new();
    for (name, value) in &config.kafka_options {
        client.set(name, value);
    }
    client
        .set("bootstrap.servers", &config.kafka_brokers)
        .set("group.id", &config.group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false");
    client
}

/// Consumes until the process is stopped; returns only on an error that a
/// retry cannot fix (an event this version of the service cannot read).
pub async fn run(config: &Config, store: PointsStore) -> anyhow::Result<()> {
    let consumer: StreamConsumer<GroupLog> = client_config(config).create_with_context(GroupLog)?;
    wait_for_topic(&consumer, &config.topic).await?;
    if let Some(from) = config.replay_from() {
        rewind(&consumer, &config.topic, from).await?;
    }
    consumer.subscribe(&[&config.topic])?;
    tracing::info!(topic = %config.topic, group = %config.group, "consuming order events");
    // Registered once: a fresh signal listener per message would be set up on every turn.
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    loop {
        let message = tokio::select! {
            message = consumer.recv() => message,
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
        };
        let message = match message {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(%error, "Kafka error; the client retries by itself");
                continue;
            }
        };
        if let Some(payload) = message.payload() {
            let event: OrderEvent = serde_json::from_slice(payload).map_err(|error| {
                anyhow::anyhow!(
                    "partition {} offset {}: not an order event ({error}); stopping without skipping it",
                    message.partition(),
                    message.offset()
                )
            })?;
            anyhow::ensure!(
                event.schema_version == SCHEMA_VERSION,
                "event {} has schema_version {}, this service reads {SCHEMA_VERSION}: upgrade it",
                event.event_id,
                event.schema_version
            );
            apply_until_done(&store, &event).await;
        }
        consumer.store_offset_from_message(&message)?;
    }
    // Stored offsets are committed, then dropping the consumer leaves the group at once.
    consumer.commit_consumer_state(CommitMode::Sync).ok();
    tracing::info!("stopped");
    Ok(())
}

/// Debezium creates the topic with the first event; a group subscribed before
/// that would only notice it at the next metadata refresh (minutes later).
async fn wait_for_topic(consumer: &StreamConsumer<GroupLog>, topic: &str) -> anyhow::Result<()> {
    let mut said = false;
    loop {
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        if metadata
            .topics()
            .iter()
            .any(|t| t.name() == topic && !t.partitions().is_empty())
        {
            return Ok(());
        }
        if !said {
            tracing::info!(
                topic,
                "waiting for the topic: Debezium creates it with the first order event"
            );
            said = true;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A database failure is retried until it succeeds: skipping the event would lose points.
async fn apply_until_done(store: &PointsStore, event: &OrderEvent) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match store.apply(event).await {
            Ok(Applied::Changed(delta)) => {
                tracing::debug!(event = %event.event_id, kind = %event.event_type, delta, "applied");
                return;
            }
            Ok(Applied::Duplicate) => {
                tracing::debug!(event = %event.event_id, "already applied; skipped");
                return;
            }
            Err(error) => {
                tracing::warn!(%error, event = %event.event_id, "cannot apply the event yet; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Moves the group's committed offsets back, for a replay: to the start of every
/// partition, or to each partition's first event at or after a time (its end if
/// there is none). Kafka accepts it only once the group has no member: a replica
/// that crashed stays a member until its session times out, so this waits for that.
async fn rewind(consumer: &StreamConsumer<GroupLog>, topic: &str, from: ReplayFrom) -> anyhow::Result<()> {
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions())
        .map(|p| p.id())
        .collect();
    // One lookup for every partition's first event at or after the time.
    let found = match from {
        ReplayFrom::Beginning => None,
        ReplayFrom::Time(since) => {
            let mut query = TopicPartitionList::new();
            for &partition in &partitions {
                query.add_partition_offset(topic, partition, Offset::Offset(since.timestamp_millis()))?;
            }
            Some(consumer.offsets_for_times(query, Duration::from_secs(10))?)
        }
    };
    let mut offsets = TopicPartitionList::new();
    for &partition in &partitions {
        let (low, high) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(10))?;
        let start = match &found {
            None => low,
            Some(found) => match found.find_partition(topic, partition).map(|p| p.offset()) {
                Some(Offset::Offset(at)) => at,
                _ => high,
            },
        };
        offsets.add_partition_offset(topic, partition, Offset::Offset(start))?;
    }
    let mut waited = Duration::ZERO;
    loop {
        match consumer.commit(&offsets, CommitMode::Sync) {
            Ok(()) => break,
            Err(error) if waited < Duration::from_secs(120) => {
                tracing::info!(%error, "the group still has members (stop every replica first); waiting");
                tokio::time::sleep(Duration::from_secs(2)).await;
                waited += Duration::from_secs(2);
            }
            Err(error) => anyhow::bail!("cannot rewind the group: {error}; stop every replica first"),
        }
    }
    tracing::info!(partitions = offsets.count(), ?from, "rewound the group");
    Ok(())
}
