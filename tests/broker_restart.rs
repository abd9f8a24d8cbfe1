//! The Kafka broker goes away and comes back while devices are subscribed: afterwards every
//! device's last state equals what Postgres committed.
//!
//! This test stops the stack's Kafka broker, so it is its own test binary (cargo runs test
//! binaries one after another; never run it beside other tests against the same stack).
//! A drop guard runs `stack/stack.sh up` if the test fails half-way.

mod common;
#[path = "live/support.rs"]
mod support;

use std::time::Duration;

use tokio::time::Instant;

use common::stack::{stack_up, stop, RestartStackOnDrop, Service};
use common::ws::{WsClient, WAIT};
use common::{spawn_app, TestApp};
use support::*;

/// Stops the stack's Kafka broker gracefully (SIGTERM) and waits until it is gone.
async fn stop_kafka() {
    let pid = Service::Kafka.pid();
    let started = Instant::now();
    stop(pid, "-TERM", Duration::from_secs(60)).await;
    eprintln!("Kafka (pid {pid}) stopped in {:?}", started.elapsed());
}

/// Reads `device`'s messages until its state reaches the database's version, then a little more;
/// checks the stream's rules (no gap without a resync, never backwards) and returns its last update.
async fn settle(who: &str, app: &TestApp, device: &mut WsClient, id: &str, order: &str, from: i64) -> Update {
    let target = db_state(app, order).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut previous = from;
    let mut seen = Vec::new();
    let mut last: Option<Update> = None;
    loop {
        let wait = if last.as_ref().is_some_and(|u| u.version == target.version) {
            // Caught up: anything still on its way must not move the state away from the database.
            Duration::from_secs(2)
        } else {
            deadline.saturating_duration_since(Instant::now())
        };
        if wait.is_zero() {
            panic!(
                "{who}: did not reach the database's version {} within 60 s; got {seen:?}",
                target.version
            );
        }
        let Some(event) = device.try_next_event(id, wait).await else {
            if last.as_ref().is_some_and(|u| u.version == target.version) {
                break;
            }
            continue;
        };
        let data = match event {
            common::ws::Event::Next(payload) if payload.get("errors").is_none() => payload["data"].clone(),
            other => panic!("{who}: expected an update, got {other:?} after {seen:?}"),
        };
        let update = Update::from_data(&data);
        if update.resync {
            assert!(
                update.version >= previous,
                "{who}: a resync went back: {update:?} after v{previous}"
            );
        } else {
            assert_eq!(
                update.version,
                previous + 1,
                "{who}: a gap (or a repeat) without resync: {} after v{previous}; so far {seen:?}",
                update.brief()
            );
        }
        previous = update.version;
        seen.push(update.brief());
        last = Some(update);
    }
    eprintln!("{who} received {seen:?}");
    let last = last.unwrap();
    assert_eq!(last.state(), target, "{who}: the last state equals the database");
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_converge_to_the_database_after_kafka_restarts() {
    let one = spawn_app().await;
    let two = spawn_app().await;
    let token = one.token(one.new_customer().await);
    let mut products = Vec::new();
    for price in [110, 220, 330, 440] {
        products.push(one.new_product(price, true).await.to_string());
    }
    let (order, _) = create_order(&one, &token).await;
    assert_eq!(add_item(&one, &token, &order, &products[0], 1).await, 2);

    let mut device_a = WsClient::connect(&one, &token).await.unwrap_or_else(|e| panic!("{e}"));
    let mut device_b = WsClient::connect(&two, &token).await.unwrap_or_else(|e| panic!("{e}"));
    for (client, id) in [(&mut device_a, "a"), (&mut device_b, "b")] {
        assert_eq!(subscribe_snapshot(client, id, &order).await.version, 2);
    }
    assert_eq!(add_item(&two, &token, &order, &products[1], 1).await, 3);
    for (who, client, id) in [("A", &mut device_a, "a"), ("B", &mut device_b, "b")] {
        let update = next_update(client, id, WAIT).await;
        assert_sequence(who, &[update], &[(3, "ITEM_ADDED")]);
    }

    let mut guard = RestartStackOnDrop { armed: true };
    stop_kafka().await;

    // Postgres still takes writes; their change events wait in the WAL for Debezium and Kafka.
    assert_eq!(add_item(&one, &token, &order, &products[2], 2).await, 4);
    assert_eq!(set_quantity(&two, &token, &order, &products[0], 5).await, 5);
    assert_eq!(remove_item(&one, &token, &order, &products[1]).await, 6);

    let started = Instant::now();
    let up = tokio::task::spawn_blocking(stack_up).await.expect("stack_up runs");
    assert!(up, "stack/stack.sh up brings Kafka back");
    guard.armed = false;
    eprintln!("the stack was back in {:?}", started.elapsed());

    assert_eq!(add_item(&two, &token, &order, &products[3], 1).await, 7);

    let a = settle("device A (instance 1)", &one, &mut device_a, "a", &order, 3).await;
    let b = settle("device B (instance 2)", &two, &mut device_b, "b", &order, 3).await;
    assert_eq!(a.version, 7);
    assert_eq!(a.state(), b.state());
    assert_eq!(a.status(), "OPEN");
    device_a.close().await;
    device_b.close().await;
}
