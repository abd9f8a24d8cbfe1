//! Committed rows reach Kafka as Debezium change events, in commit order.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};
use serde_json::Value;
use uuid::Uuid;

use crate::common::{database_url, kafka_brokers, new_customer, new_product, serve_config};

const ORDERS_TOPIC: &str = "ordercast.public.orders";
const ITEMS_TOPIC: &str = "ordercast.public.order_items";

/// One record as read from Kafka: the key, the value (None for a tombstone), and the broker timestamp.
#[derive(Debug)]
struct Record {
    topic: String,
    key: Value,
    value: Option<Value>,
    kafka_ts_ms: Option<i64>,
}

/// Makes sure the topics exist (Debezium creates them on first use, but a test
/// must know their partitions before it writes) and returns a consumer
/// assigned to every partition at its current end.
async fn consumer_at_end(topics: &[&str]) -> StreamConsumer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", kafka_brokers())
        .set("group.id", format!("ordercast-test-{}", Uuid::now_v7()))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10");
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
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("topic metadata");
        for partition in metadata.topics()[0].partitions() {
            let (_, high) = consumer
                .fetch_watermarks(topic, partition.id(), Duration::from_secs(10))
                .expect("watermarks");
            assignment
                .add_partition_offset(topic, partition.id(), Offset::Offset(high))
                .unwrap();
        }
    }
    consumer.assign(&assignment).expect("assign");
    consumer
}

/// Reads until `done` says enough, or fails after `timeout`.
async fn read_until(consumer: &StreamConsumer, timeout: Duration, done: impl Fn(&[Record]) -> bool) -> Vec<Record> {
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
            key: message.key().map(parse).unwrap_or(Value::Null),
            value: message.payload().map(parse),
            kafka_ts_ms: message.timestamp().to_millis(),
        });
    }
    records
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test]
async fn committed_rows_arrive_as_debezium_events_in_commit_order() {
    let config = serve_config();
    ordercast::db::migrate(&config.database)
        .await
        .expect("migrations apply");
    let db = ordercast::db::connect(&config.database).await.expect("postgres");
    assert_eq!(config.database.database_url, database_url());
    let consumer = consumer_at_end(&[ORDERS_TOPIC, ITEMS_TOPIC]).await;

    let customer = new_customer(&db).await;
    let product = new_product(&db, 199, true).await;
    let order = Uuid::now_v7();
    let exec = |sql: &'static str, values: Vec<sea_orm::Value>| {
        Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
    };

    db.execute_raw(exec(
        "INSERT INTO orders (id, customer_id) VALUES ($1, $2)",
        vec![order.into(), customer.into()],
    ))
    .await
    .unwrap();
    let txn = db.begin().await.unwrap();
    txn.execute_raw(exec(
        "INSERT INTO order_items (order_id, product_id, quantity) VALUES ($1, $2, 3)",
        vec![order.into(), product.into()],
    ))
    .await
    .unwrap();
    txn.commit().await.unwrap();
    db.execute_raw(exec("DELETE FROM order_items WHERE order_id = $1", vec![order.into()]))
        .await
        .unwrap();
    db.execute_raw(exec(
        "UPDATE orders SET status = 'cancelled', cancel_reason = 'test' WHERE id = $1",
        vec![order.into()],
    ))
    .await
    .unwrap();
    db.execute_raw(exec("DELETE FROM orders WHERE id = $1", vec![order.into()]))
        .await
        .unwrap();

    let ours = |r: &Record| {
        r.key["id"] == order.to_string()
            || r.value.as_ref().is_some_and(|v| {
                v["after"]["order_id"] == order.to_string() || v["before"]["order_id"] == order.to_string()
            })
    };
    let records = read_until(&consumer, Duration::from_secs(60), |records| {
        // orders: c, u (item added), u (item removed), u (cancel), d, tombstone;
        // items: c, d (their tombstone is keyed by the item id alone)
        records.iter().filter(|r| r.topic == ORDERS_TOPIC && ours(r)).count() >= 6
            && records.iter().filter(|r| r.topic == ITEMS_TOPIC && ours(r)).count() >= 2
    })
    .await;
    let orders: Vec<&Record> = records.iter().filter(|r| r.topic == ORDERS_TOPIC && ours(r)).collect();
    let items: Vec<&Record> = records.iter().filter(|r| r.topic == ITEMS_TOPIC && ours(r)).collect();

    let ops: Vec<&str> = orders
        .iter()
        .map(|r| r.value.as_ref().map_or("tombstone", |v| v["op"].as_str().unwrap()))
        .collect();
    assert_eq!(
        ops,
        ["c", "u", "u", "u", "d", "tombstone"],
        "events of one row arrive in commit order"
    );
    let versions: Vec<i64> = orders[..4]
        .iter()
        .map(|r| r.value.as_ref().unwrap()["after"]["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, [1, 2, 3, 4]);
    let first = orders[0].value.as_ref().unwrap();
    assert_eq!(first["after"]["status"], "open");
    assert_eq!(first["after"]["customer_id"], customer.to_string());
    assert_eq!(first["source"]["table"], "orders");
    assert_eq!(orders[3].value.as_ref().unwrap()["after"]["status"], "cancelled");
    let deleted = orders[4].value.as_ref().unwrap();
    assert!(deleted["after"].is_null());
    assert_eq!(
        deleted["before"]["version"], 4,
        "REPLICA IDENTITY FULL: a delete carries the whole row"
    );
    assert_eq!(
        orders[5].key["id"],
        order.to_string(),
        "the tombstone carries the row's key"
    );

    let lsns: Vec<i64> = orders[..5]
        .iter()
        .map(|r| r.value.as_ref().unwrap()["source"]["lsn"].as_i64().unwrap())
        .collect();
    assert!(
        lsns.windows(2).all(|w| w[0] < w[1]),
        "source.lsn grows with commit order: {lsns:?}"
    );

    // The item insert and the version bump it caused were one transaction.
    let item_added = items
        .iter()
        .find_map(|r| r.value.as_ref().filter(|v| v["op"] == "c"))
        .expect("item insert event");
    assert_eq!(item_added["after"]["quantity"], 3);
    assert_eq!(item_added["after"]["unit_price_cents"], 199);
    assert_eq!(
        item_added["source"]["txId"],
        orders[1].value.as_ref().unwrap()["source"]["txId"]
    );
    let item_removed = items
        .iter()
        .find_map(|r| r.value.as_ref().filter(|v| v["op"] == "d"))
        .expect("item delete event");
    assert_eq!(item_removed["before"]["order_id"], order.to_string());

    let mut latencies: Vec<i64> = orders
        .iter()
        .chain(items.iter())
        .filter_map(|r| r.value.as_ref())
        .map(|v| v["ts_ms"].as_i64().unwrap() - v["source"]["ts_ms"].as_i64().unwrap())
        .collect();
    latencies.sort_unstable();
    let kafka: Vec<i64> = orders
        .iter()
        .filter_map(|r| Some(r.kafka_ts_ms? - r.value.as_ref()?["source"]["ts_ms"].as_i64()?))
        .collect();
    eprintln!(
        "commit-to-Debezium latency over {} events: median {} ms, max {} ms; commit-to-Kafka-timestamp: {:?} ms",
        latencies.len(),
        percentile(&latencies, 0.5),
        latencies[latencies.len() - 1],
        kafka
    );
}
