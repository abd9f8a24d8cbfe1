//! The topic the app depends on: committed versions of `order_versions`, keyed
//! by order id, in commit order; and nothing else leaves Postgres.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait};
use serde_json::Value;
use uuid::Uuid;

use crate::common::kafka::{consumer_at_end, read_until, topics_with_prefix, Record};
use crate::common::{execute, new_customer, new_product, serve_config, unique};

const VERSIONS_TOPIC: &str = "ordercast.public.order_versions";
/// The public order events (`tests/events/`): one per version, from the same commits.
const EVENTS_TOPIC: &str = "ordercast.order-events";

fn percentile(sorted: &[i64], p: f64) -> i64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn migrated_db() -> DatabaseConnection {
    let config = serve_config();
    ordercast::db::migrate(&config.database)
        .await
        .expect("migrations apply");
    ordercast::db::connect(&config.database).await.expect("postgres")
}

fn versions_of(records: &[Record], order: Uuid) -> Vec<&Record> {
    records
        .iter()
        .filter(|r| r.topic == VERSIONS_TOPIC && r.key["order_id"] == order.to_string())
        .collect()
}

#[tokio::test]
async fn committed_versions_arrive_keyed_by_order_in_commit_order() {
    let db = migrated_db().await;
    let consumer = consumer_at_end(&[VERSIONS_TOPIC]).await;

    let customer = new_customer(&db).await;
    let product = new_product(&db, 199, true).await;
    let order = Uuid::now_v7();
    execute(
        &db,
        "INSERT INTO orders (id, customer_id) VALUES ($1, $2)",
        vec![order.into(), customer.into()],
    )
    .await;
    let txn = db.begin().await.unwrap();
    execute(
        &txn,
        "INSERT INTO order_items (order_id, product_id, quantity) VALUES ($1, $2, 3)",
        vec![order.into(), product.into()],
    )
    .await;
    txn.commit().await.unwrap();
    execute(&db, "DELETE FROM order_items WHERE order_id = $1", vec![order.into()]).await;
    execute(
        &db,
        "UPDATE orders SET status = 'cancelled', cancel_reason = 'test' WHERE id = $1",
        vec![order.into()],
    )
    .await;

    let records = read_until(&consumer, Duration::from_secs(60), |records| {
        versions_of(records, order).len() >= 4
    })
    .await;
    let ours = versions_of(&records, order);
    let values: Vec<&Value> = ours.iter().map(|r| r.value.as_ref().expect("no tombstones")).collect();
    let summary: Vec<(&str, i64, &str)> = values
        .iter()
        .map(|v| {
            (
                v["op"].as_str().unwrap(),
                v["after"]["version"].as_i64().unwrap(),
                v["after"]["change"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("c", 1, "CREATED"),
            ("c", 2, "ITEM_ADDED"),
            ("c", 3, "ITEM_REMOVED"),
            ("c", 4, "CANCELLED")
        ],
        "one insert per committed version, in commit order"
    );
    assert!(
        ours.iter().all(|r| r.partition == ours[0].partition),
        "keyed by order id: one order, one partition"
    );
    assert_eq!(values[0]["source"]["table"], "order_versions");
    let state: Value = serde_json::from_str(values[1]["after"]["state"].as_str().expect("jsonb as text")).unwrap();
    assert_eq!(state["items"][0]["quantity"], 3, "each version carries its whole state");
    assert_eq!(state["items"][0]["unit_price_cents"], 199);

    let lsns: Vec<i64> = values.iter().map(|v| v["source"]["lsn"].as_i64().unwrap()).collect();
    assert!(
        lsns.windows(2).all(|w| w[0] < w[1]),
        "source.lsn grows with commit order: {lsns:?}"
    );

    let mut latencies: Vec<i64> = values
        .iter()
        .map(|v| v["ts_ms"].as_i64().unwrap() - v["source"]["ts_ms"].as_i64().unwrap())
        .collect();
    latencies.sort_unstable();
    let kafka: Vec<i64> = ours
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

#[tokio::test]
async fn only_what_a_consumer_reads_is_captured() {
    let db = migrated_db().await;

    let publication: Vec<(String, bool, bool, bool, bool)> = db
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT t.tablename::text, p.pubinsert, p.pubupdate, p.pubdelete, p.pubtruncate
               FROM pg_publication p JOIN pg_publication_tables t USING (pubname)
              WHERE p.pubname = 'ordercast_cdc' ORDER BY 1",
        ))
        .await
        .unwrap()
        .iter()
        .map(|row| {
            (
                row.try_get_by_index(0).unwrap(),
                row.try_get_by_index(1).unwrap(),
                row.try_get_by_index(2).unwrap(),
                row.try_get_by_index(3).unwrap(),
                row.try_get_by_index(4).unwrap(),
            )
        })
        .collect();
    assert_eq!(
        publication,
        [
            ("cdc_gaps".to_owned(), true, false, false, false),
            ("order_events".to_owned(), true, false, false, false),
            ("order_versions".to_owned(), true, false, false, false)
        ],
        "the publication covers what consumers read, inserts only"
    );
    let identities: Vec<(String, String)> = db
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT relname::text, relreplident::text FROM pg_class
              WHERE relname IN ('orders', 'order_items', 'order_versions') AND relkind = 'r' ORDER BY 1",
        ))
        .await
        .unwrap()
        .iter()
        .map(|row| (row.try_get_by_index(0).unwrap(), row.try_get_by_index(1).unwrap()))
        .collect();
    assert!(
        identities.iter().all(|(_, identity)| identity == "d"),
        "no table logs its whole old row: {identities:?}"
    );

    // Every topic of the connector, however old the stack: nothing new may land anywhere but
    // the versions topic and the public events, and no customer data at all.
    let mut topics = topics_with_prefix("ordercast.");
    if !topics.iter().any(|t| t == VERSIONS_TOPIC) {
        topics.push(VERSIONS_TOPIC.to_owned());
    }
    let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    let consumer = consumer_at_end(&topic_refs).await;

    let email = format!("{}@example.com", unique("private"));
    let customer = new_customer(&db).await;
    execute(
        &db,
        "UPDATE customers SET email = $2, display_name = 'Private Person' WHERE id = $1",
        vec![customer.into(), email.clone().into()],
    )
    .await;
    let product = new_product(&db, 250, true).await;
    execute(
        &db,
        "UPDATE products SET price_cents = 260 WHERE id = $1",
        vec![product.into()],
    )
    .await;
    let deleted = Uuid::now_v7();
    execute(
        &db,
        "INSERT INTO orders (id, customer_id) VALUES ($1, $2)",
        vec![deleted.into(), customer.into()],
    )
    .await;
    execute(
        &db,
        "INSERT INTO order_items (order_id, product_id, quantity) VALUES ($1, $2, 1)",
        vec![deleted.into(), product.into()],
    )
    .await;
    execute(&db, "DELETE FROM order_items WHERE order_id = $1", vec![deleted.into()]).await;
    // Deleting the order deletes its versions (ON DELETE CASCADE): no event may say so.
    execute(&db, "DELETE FROM orders WHERE id = $1", vec![deleted.into()]).await;
    // Kafka orders records per partition only: the end of what this test wrote is a commit
    // whose record shares a partition with the deleted order's (a delete would come before it).
    let mut records = read_until(&consumer, Duration::from_secs(60), |records| {
        versions_of(records, deleted).len() >= 3
    })
    .await;
    let partition_of_deleted = versions_of(&records, deleted)[0].partition;
    loop {
        let marker = Uuid::now_v7();
        execute(
            &db,
            "INSERT INTO orders (id, customer_id) VALUES ($1, $2)",
            vec![marker.into(), customer.into()],
        )
        .await;
        let batch = read_until(&consumer, Duration::from_secs(60), |records| {
            !versions_of(records, marker).is_empty()
        })
        .await;
        let done = versions_of(&batch, marker)[0].partition == partition_of_deleted;
        records.extend(batch);
        if done {
            break;
        }
    }
    let elsewhere: Vec<&Record> = records
        .iter()
        .filter(|r| r.topic != VERSIONS_TOPIC && r.topic != EVENTS_TOPIC)
        .collect();
    assert!(
        elsewhere.is_empty(),
        "records outside the versions and events topics: {elsewhere:#?}"
    );
    let deleted_versions: Vec<&Value> = versions_of(&records, deleted)
        .iter()
        .map(|r| r.value.as_ref().expect("no tombstones"))
        .collect();
    let ops: Vec<&str> = deleted_versions.iter().map(|v| v["op"].as_str().unwrap()).collect();
    assert_eq!(
        ops,
        ["c", "c", "c"],
        "inserts only: no delete or tombstone for the versions removed with their order"
    );
    for record in &records {
        let text = record.value.as_ref().map(Value::to_string).unwrap_or_default();
        assert!(!text.contains(&email), "customer data reached Kafka: {text}");
        assert!(!text.contains("Private Person"), "customer data reached Kafka: {text}");
    }
}
