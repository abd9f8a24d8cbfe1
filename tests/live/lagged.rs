//! A `myOrderUpdates` subscriber that lagged (its queue overflowed) reloads every order that
//! changed while it lagged: however many there are, and however long ago their transactions began.

use std::collections::HashMap;
use std::time::Duration;

use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};
use tokio::time::Instant;
use uuid::Uuid;

use crate::common::ws::{WsClient, WAIT};
use crate::common::{serve_config, spawn_app_with, TestApp};
use crate::support::*;

/// A queue this short overflows in any burst of commits: the subscriber lags for certain.
async fn spawn_app_with_short_queues() -> TestApp {
    let mut config = serve_config();
    config.live.subscriber_queue = 2;
    spawn_app_with(config).await
}

/// `count` open orders of `customer`, made in one statement behind the API's back.
async fn open_orders(app: &TestApp, customer: Uuid, count: i64) {
    execute_sql(
        app,
        "INSERT INTO orders (customer_id) SELECT $1 FROM generate_series(1, $2)",
        vec![customer.into(), count.into()],
    )
    .await;
}

/// Subscribes to `myOrderUpdates` and reads its snapshots: one per open order.
async fn subscribe_all(app: &TestApp, token: &str, expected: usize) -> (WsClient, HashMap<String, Update>) {
    let mut client = WsClient::connect(app, token).await.unwrap_or_else(|e| panic!("{e}"));
    client
        .subscribe("all", &my_order_updates(), serde_json::json!({}))
        .await;
    let mut latest = HashMap::new();
    while latest.len() < expected {
        let update = match client.try_next_event("all", WAIT).await {
            Some(crate::common::ws::Event::Next(payload)) => Update::from_data(&payload["data"]),
            other => panic!("{} snapshots of {expected} open orders, then {other:?}", latest.len()),
        };
        assert_eq!(update.change, "SNAPSHOT", "{update:?}");
        latest.insert(update.order_id().to_owned(), update);
    }
    (client, latest)
}

/// Reads until every order of `latest` is cancelled, checking each order's sequence on the way:
/// contiguous versions, except a resync, which moves forward. Returns how many resyncs came.
async fn read_until_all_cancelled(client: &mut WsClient, latest: &mut HashMap<String, Update>) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut resyncs = 0;
    while latest.values().any(|update| update.status() != "CANCELLED") {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let missing = latest.values().filter(|u| u.status() != "CANCELLED").count();
            panic!(
                "{missing} of {} cancellations never reached the subscriber",
                latest.len()
            );
        }
        let update = next_update(client, "all", left).await;
        let previous = latest
            .get(update.order_id())
            .unwrap_or_else(|| panic!("an update of an order that is not the customer's: {update:?}"));
        if update.resync {
            resyncs += 1;
            assert!(update.version >= previous.version, "{update:?} after {previous:?}");
        } else {
            assert_eq!(update.version, previous.version + 1, "{update:?} after {previous:?}");
        }
        latest.insert(update.order_id().to_owned(), update);
    }
    resyncs
}

async fn assert_final_states(app: &TestApp, latest: &HashMap<String, Update>) {
    for (order, update) in latest {
        assert_eq!(update.state(), db_state(app, order).await, "order {order}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagged_customer_subscriber_reloads_every_changed_order_however_many() {
    const ORDERS: i64 = 300;
    let app = spawn_app_with_short_queues().await;
    let customer = app.new_customer().await;
    let token = app.token(customer);
    open_orders(&app, customer, ORDERS).await;
    let (mut client, mut latest) = subscribe_all(&app, &token, ORDERS as usize).await;

    // One commit, 300 versions: the queue of 2 overflows and the subscriber reloads.
    execute_sql(
        &app,
        "UPDATE orders SET status = 'cancelled' WHERE customer_id = $1",
        vec![customer.into()],
    )
    .await;
    let resyncs = read_until_all_cancelled(&mut client, &mut latest).await;
    assert!(
        resyncs > 0,
        "the burst made the subscriber lag, so some states came as resyncs"
    );
    assert_final_states(&app, &latest).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagged_customer_subscriber_reloads_changes_of_transactions_older_than_any_margin() {
    const ORDERS: i64 = 60;
    let app = spawn_app_with_short_queues().await;
    let customer = app.new_customer().await;
    let token = app.token(customer);
    open_orders(&app, customer, ORDERS).await;

    // A transaction that began long before the subscription (its rows get that start time as
    // `updated_at`) commits while the subscriber lags.
    let long = app.db.begin().await.unwrap();
    long.execute_unprepared("SELECT 1").await.unwrap();
    tokio::time::sleep(Duration::from_secs(61)).await;
    let (mut client, mut latest) = subscribe_all(&app, &token, ORDERS as usize).await;
    long.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "UPDATE orders SET status = 'cancelled' WHERE customer_id = $1",
        [customer.into()],
    ))
    .await
    .unwrap();
    long.commit().await.unwrap();

    let resyncs = read_until_all_cancelled(&mut client, &mut latest).await;
    assert!(
        resyncs > 0,
        "the burst made the subscriber lag, so some states came as resyncs"
    );
    assert_final_states(&app, &latest).await;
}
