//! Reading Debezium's topics directly, as any consumer of them would.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;
use uuid::Uuid;

use super::kafka_brokers;

/// One record as read from Kafka: the key, the value (None for a tombstone), and the broker timestamp.
#[derive(Debug)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub key: Value,
    pub value: Option<Value>,
    pub kafka_ts_ms: Option<i64>,
    /// Key and value as sent, in bytes.
    pub bytes: usize,
}

fn client_config() -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", kafka_brokers())
        .set("group.id", format!("ordercast-test-{}", Uuid::now_v7()))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10");
    config
}

/// Every topic whose name starts with `prefix`.
pub fn topics_with_prefix(prefix: &str) -> Vec<String> {
    let consumer: StreamConsumer = client_config().create().expect("consumer");
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("cluster metadata");
    metadata
        .topics()
        .iter()
        .map(|t| t.name().to_owned())
        .filter(|name| name.starts_with(prefix))
        .collect()
}

/// Makes sure the topics exist (Debezium creates them on first use, but a test
/// must know their partitions before it writes) and returns a consumer
/// assigned to every partition at its current end.
pub async fn consumer_at_end(topics: &[&str]) -> StreamConsumer {
    let config = client_config();
    let admin: AdminClient<DefaultClientContext> = config.create().expect("admin client");
    let new_topics: Vec<NewTopic> = topics
        .iter()
        .map(|t| NewTopic::new(t, 3, TopicReplication::Fixed(1)))
        .collect();
    admin
        .create_topics(&new_topics, &AdminOptions::new())
        .await
        .expect("create topics request");

    let consumer: StreamConsumer = config.create().expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for topic in topics {
        for (partition, high) in ends_of(&consumer, topic).await {
            assignment
                .add_partition_offset(topic, partition, Offset::Offset(high))
                .unwrap();
        }
    }
    consumer.assign(&assignment).expect("assign");
    consumer
}

/// The end offset of every partition of `topic`. A topic created a moment ago may have no
/// leader yet: asks again for up to 30 s.
async fn ends_of(consumer: &StreamConsumer, topic: &str) -> Vec<(i32, i64)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ends: Result<Vec<(i32, i64)>, String> = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .map_err(|e| e.to_string())
            .and_then(|metadata| {
                let partitions = metadata.topics()[0].partitions();
                if partitions.is_empty() {
                    return Err("no partitions yet".to_owned());
                }
                partitions
                    .iter()
                    .map(|p| {
                        consumer
                            .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                            .map(|(_, high)| (p.id(), high))
                            .map_err(|e| e.to_string())
                    })
                    .collect()
            });
        match ends {
            Ok(ends) => return ends,
            Err(why) if Instant::now() < deadline => {
                eprintln!("{topic}: {why}; asking again");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(why) => panic!("{topic}: no end offsets within 30 s: {why}"),
        }
    }
}

/// Reads until `done` says enough, or fails after `timeout`.
pub async fn read_until(consumer: &StreamConsumer, timeout: Duration, done: impl Fn(&[Record]) -> bool) -> Vec<Record> {
    let deadline = Instant::now() + timeout;
    let mut records = Vec::new();
    while !done(&records) {
        let left = deadline
            .checked_duration_since(Instant::now())
            .unwrap_or_else(|| panic!("timed out waiting for change events; got {records:#?}"));
        let message = match tokio::time::timeout(left, consumer.recv()).await {
            Ok(message) => message.expect("kafka error"),
            Err(_) => continue,
        };
        let parse = |bytes: &[u8]| serde_json::from_slice::<Value>(bytes).expect("Debezium writes JSON");
        records.push(Record {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            key: message.key().map(parse).unwrap_or(Value::Null),
            value: message.payload().map(parse),
            kafka_ts_ms: message.timestamp().to_millis(),
            bytes: message.key().map_or(0, <[u8]>::len) + message.payload().map_or(0, <[u8]>::len),
        });
    }
    records
}
