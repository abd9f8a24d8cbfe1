//! I2 under concurrency: add-vs-cancel races across two instances with separate pools.

use futures::stream::{self, StreamExt};
use serde_json::Value;

use crate::common::{error_code, spawn_app, TestApp};
use crate::orders::{add_item, cancel};

const PAIRS: usize = 240;
const IN_FLIGHT: usize = 24;

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    AddedBeforeCancel,
    RefusedAfterCancel,
}

async fn race_one(first: &TestApp, second: &TestApp, token: &str, product: &str) -> (String, Value, Value) {
    let order = first.new_order(token).await;
    let (added, cancelled) = tokio::join!(
        add_item(first, token, &order, product, 1),
        cancel(second, token, &order)
    );
    (order, added, cancelled)
}

async fn check(app: &TestApp, order: &str, product: &str, added: &Value, cancelled: &Value) -> Outcome {
    assert_eq!(
        cancelled["data"]["cancelOrder"]["status"], "CANCELLED",
        "the cancel always wins eventually: {cancelled}"
    );
    let items = app
        .scalar_i64(
            "SELECT count(*) FROM order_items WHERE order_id = $1::uuid AND product_id = $2::uuid",
            vec![order.into(), product.into()],
        )
        .await;
    let status = app
        .scalar_i64(
            "SELECT count(*) FROM orders WHERE id = $1::uuid AND status = 'cancelled'",
            vec![order.into()],
        )
        .await;
    assert_eq!(status, 1);
    if added.get("errors").is_none() {
        assert_eq!(items, 1, "a successful add left its item in the order: {order}");
        let version_at_add = added["data"]["addItem"]["version"].as_i64().unwrap();
        let version_at_cancel = cancelled["data"]["cancelOrder"]["version"].as_i64().unwrap();
        assert!(
            version_at_add < version_at_cancel,
            "the add committed before the cancel: {order}"
        );
        assert_eq!(cancelled["data"]["cancelOrder"]["items"].as_array().unwrap().len(), 1);
        Outcome::AddedBeforeCancel
    } else {
        assert_eq!(
            error_code(added),
            Some("ORDER_CANCELLED"),
            "the only allowed failure: {added}"
        );
        assert_eq!(items, 0, "a refused add left nothing behind: {order}");
        Outcome::RefusedAfterCancel
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn add_and_cancel_racing_on_two_instances_never_add_after_cancel() {
    let first = spawn_app().await;
    let second = spawn_app().await;
    let token = first.token(first.new_customer().await);
    let product = first.new_product(100, true).await.to_string();

    let results: Vec<_> = stream::iter(0..PAIRS)
        .map(|i| {
            let (a, b) = if i % 2 == 0 {
                (&first, &second)
            } else {
                (&second, &first)
            };
            race_one(a, b, &token, &product)
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;

    let mut added = 0;
    let mut refused = 0;
    for (order, add, cancelled) in &results {
        match check(&first, order, &product, add, cancelled).await {
            Outcome::AddedBeforeCancel => added += 1,
            Outcome::RefusedAfterCancel => refused += 1,
        }
    }
    eprintln!("{PAIRS} add-vs-cancel races: {added} adds committed first, {refused} refused with ORDER_CANCELLED");
    assert_eq!(added + refused, PAIRS);
}

/// How one raw add-vs-cancel race ended.
#[derive(Debug, Default)]
struct RawOutcomes {
    added_before_cancel: usize,
    refused_after_cancel: usize,
    deadlocks_resolved: usize,
}

/// The SQLSTATE and constraint of a failed raw statement.
fn sqlstate(error: &sea_orm::sqlx::Error) -> (String, String) {
    match error {
        sea_orm::sqlx::Error::Database(db) => (
            db.code().map(|c| c.into_owned()).unwrap_or_default(),
            db.constraint().unwrap_or_default().to_owned(),
        ),
        other => panic!("not a Postgres error: {other}"),
    }
}

/// I2 is Postgres's, not ordercast's: two plain connections, no ordercast and no `FOR UPDATE`
/// of ours, race an INSERT of an item against the UPDATE that cancels its order, 1,000 times.
/// Either the insert commits first and the cancelled order contains the item, or it fails with
/// `order_items_order_not_cancelled`. Postgres's deadlock detector may abort one side; the
/// aborted statement is repeated, and the rule must still hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_sql_add_and_cancel_race_never_adds_after_cancel() {
    use sea_orm::sqlx::{Connection, PgConnection};

    const RAW_PAIRS: usize = 1_000;
    let app = spawn_app().await;
    let customer = app.new_customer().await;
    let product = app.new_product(250, true).await;
    let url = crate::common::database_url();
    let mut adder = PgConnection::connect(&url).await.unwrap();
    let mut canceller = PgConnection::connect(&url).await.unwrap();
    let add = "INSERT INTO order_items (order_id, product_id, quantity) VALUES ($1, $2, 1)";
    let cancel = "UPDATE orders SET status = 'cancelled' WHERE id = $1";

    let mut outcomes = RawOutcomes::default();
    for _ in 0..RAW_PAIRS {
        let (order,): (uuid::Uuid,) =
            sea_orm::sqlx::query_as("INSERT INTO orders (customer_id) VALUES ($1) RETURNING id")
                .bind(customer)
                .fetch_one(&mut adder)
                .await
                .unwrap();
        let (mut added, mut cancelled) = tokio::join!(
            sea_orm::sqlx::query(add).bind(order).bind(product).execute(&mut adder),
            sea_orm::sqlx::query(cancel).bind(order).execute(&mut canceller),
        );
        if let Err(error) = &cancelled {
            assert_eq!(
                sqlstate(error).0,
                "40P01",
                "a cancel fails only as a deadlock victim: {error}"
            );
            outcomes.deadlocks_resolved += 1;
            cancelled = sea_orm::sqlx::query(cancel).bind(order).execute(&mut canceller).await;
        }
        cancelled.expect("the cancel commits");
        if let Err(error) = &added {
            if sqlstate(error).0 == "40P01" {
                outcomes.deadlocks_resolved += 1;
                added = sea_orm::sqlx::query(add)
                    .bind(order)
                    .bind(product)
                    .execute(&mut adder)
                    .await;
            }
        }
        let (items,): (i64,) = sea_orm::sqlx::query_as("SELECT count(*) FROM order_items WHERE order_id = $1")
            .bind(order)
            .fetch_one(&mut adder)
            .await
            .unwrap();
        let (cancelled_items,): (i32,) = sea_orm::sqlx::query_as(
            "SELECT jsonb_array_length(state->'items') FROM order_versions WHERE order_id = $1 AND change = 'CANCELLED'",
        )
        .bind(order)
        .fetch_one(&mut adder)
        .await
        .unwrap();
        match added {
            Ok(_) => {
                assert_eq!(
                    (items, cancelled_items),
                    (1, 1),
                    "the add came first: the cancelled state has the item ({order})"
                );
                outcomes.added_before_cancel += 1;
            }
            Err(error) => {
                assert_eq!(
                    sqlstate(&error),
                    ("23514".to_owned(), "order_items_order_not_cancelled".to_owned()),
                    "the only refusal of an add: {error}"
                );
                assert_eq!((items, cancelled_items), (0, 0), "a refused add left nothing ({order})");
                outcomes.refused_after_cancel += 1;
            }
        }
    }
    eprintln!("{RAW_PAIRS} raw SQL add-vs-cancel races: {outcomes:?}");
    assert_eq!(outcomes.added_before_cancel + outcomes.refused_after_cancel, RAW_PAIRS);
}
