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
