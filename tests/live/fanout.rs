//! Every committed change reaches every subscriber, on every instance, exactly once and in order.

use std::time::Duration;

use serde_json::json;

use crate::common::ws::{Event, WsClient, WAIT};
use crate::common::{error_code, spawn_app};
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_devices_on_two_instances_see_the_same_committed_history() {
    let one = spawn_app().await;
    let two = spawn_app().await;
    let token = one.token(one.new_customer().await);
    let prices = [100, 250, 399];
    let mut products = Vec::new();
    for price in prices {
        products.push(one.new_product(price, true).await.to_string());
    }
    let (order, created) = create_order(&one, &token).await;
    assert_eq!(created, 1);

    let mut device_a = WsClient::connect(&one, &token)
        .await
        .unwrap_or_else(|e| panic!("device A connects to instance 1: {e}"));
    let mut device_b = WsClient::connect(&two, &token)
        .await
        .unwrap_or_else(|e| panic!("device B connects to instance 2: {e}"));
    for (who, client, id) in [("A", &mut device_a, "a"), ("B", &mut device_b, "b")] {
        let snapshot = subscribe_snapshot(client, id, &order).await;
        assert_eq!(snapshot.version, 1, "device {who}: {snapshot:?}");
        assert_eq!(snapshot.status(), "OPEN");
        assert!(snapshot.items().is_empty());
    }

    // Device A changes the order over HTTP on instance 1.
    for (i, product) in products.iter().enumerate() {
        let version = add_item(&one, &token, &order, product, i as i64 + 1).await;
        assert_eq!(version, i as i64 + 2);
    }
    assert_eq!(cancel(&one, &token, &order).await, 5);
    let committed = db_state(&one, &order).await;

    for (who, client, id) in [
        ("device B on instance 2", &mut device_b, "b"),
        ("device A on instance 1", &mut device_a, "a"),
    ] {
        let mut updates = Vec::new();
        for _ in 0..4 {
            updates.push(next_update(client, id, WAIT).await);
        }
        assert_sequence(
            who,
            &updates,
            &[
                (2, "ITEM_ADDED"),
                (3, "ITEM_ADDED"),
                (4, "ITEM_ADDED"),
                (5, "CANCELLED"),
            ],
        );
        for (i, update) in updates.iter().enumerate().take(3) {
            assert_eq!(
                update.items().len(),
                i + 1,
                "{who}: each add shows one more line: {update:?}"
            );
            assert_eq!(update.status(), "OPEN", "{who}: {update:?}");
            assert_eq!(
                update.quantity_of(&products[i]),
                Some(i as i64 + 1),
                "{who}: {update:?}"
            );
        }
        let last = &updates[3];
        assert_eq!(last.status(), "CANCELLED", "{who}: {last:?}");
        assert_eq!(
            last.items().len(),
            3,
            "{who}: the cancelled order keeps its items: {last:?}"
        );
        assert_eq!(last.order["cancelReason"], "changed my mind", "{who}");
        assert_eq!(last.order["totalCents"], 100 + 250 * 2 + 399 * 3, "{who}");
        assert_eq!(
            last.state(),
            committed,
            "{who}: the last state is what Postgres committed"
        );
    }

    // Device B, on instance 2, now tries to add: the order is cancelled.
    let refused = try_add_item(&two, &token, &order, &products[0], 1).await;
    assert_eq!(error_code(&refused), Some("ORDER_CANCELLED"), "{refused}");
    assert_eq!(
        db_state(&two, &order).await,
        committed,
        "a refused change writes nothing"
    );
    // Exactly once: nothing is delivered twice, and the refused add produced nothing.
    device_b.expect_silence("b", Duration::from_secs(1)).await;
    device_a.expect_silence("a", Duration::from_millis(300)).await;
    device_a.close().await;
    device_b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_made_by_raw_sql_reaches_subscribers() {
    let app = spawn_app().await;
    let token = app.token(app.new_customer().await);
    let product = app.new_product(120, true).await.to_string();
    let (order, _) = create_order(&app, &token).await;
    assert_eq!(add_item(&app, &token, &order, &product, 2).await, 2);

    let mut client = WsClient::connect(&app, &token).await.unwrap_or_else(|e| panic!("{e}"));
    let snapshot = subscribe_snapshot(&mut client, "1", &order).await;
    assert_eq!(snapshot.version, 2);
    assert_eq!(snapshot.quantity_of(&product), Some(2));

    // Another writer, behind ordercast's back.
    execute_sql(
        &app,
        "UPDATE order_items SET quantity = 7 WHERE order_id = $1::uuid",
        vec![order.as_str().into()],
    )
    .await;

    let update = next_update(&mut client, "1", WAIT).await;
    assert_eq!(update.change, "ITEM_CHANGED", "{update:?}");
    assert_eq!(
        update.version, 3,
        "the database bumps the version for any writer: {update:?}"
    );
    assert!(!update.resync);
    assert_eq!(update.quantity_of(&product), Some(7), "{update:?}");
    assert_eq!(update.order["totalCents"], 7 * 120);
    assert_eq!(update.state(), db_state(&app, &order).await);
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn my_order_updates_sees_an_order_created_on_another_instance() {
    let one = spawn_app().await;
    let two = spawn_app().await;
    let alice = one.token(one.new_customer().await);
    let bob = one.token(one.new_customer().await);
    let product = one.new_product(300, true).await.to_string();
    let (cancelled, _) = create_order(&one, &alice).await;
    cancel(&one, &alice, &cancelled).await;
    let (existing, _) = create_order(&one, &alice).await;
    // Let the change events of this set-up pass through Kafka before subscribing (the test below,
    // `my_order_updates_replays_nothing_from_before_its_snapshots`, covers the other case).
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let mut phone = WsClient::connect(&one, &alice).await.unwrap_or_else(|e| panic!("{e}"));
    phone.subscribe("mine", &my_order_updates(), json!({})).await;
    let snapshot = next_update(&mut phone, "mine", WAIT).await;
    assert_eq!(
        snapshot.change, "SNAPSHOT",
        "one snapshot per open or scheduled order: {snapshot:?}"
    );
    assert_eq!(
        snapshot.order_id(),
        existing,
        "the cancelled order gets no snapshot: {snapshot:?}"
    );
    assert_eq!(snapshot.version, 1);

    // Another device creates an order through instance 2.
    let (created, version) = create_order(&two, &alice).await;
    assert_eq!(version, 1);
    let update = next_update(&mut phone, "mine", WAIT).await;
    assert_eq!(update.change, "CREATED", "{update:?}");
    assert_eq!(update.version, 1);
    assert_eq!(update.order_id(), created);
    assert_eq!(update.status(), "OPEN");
    assert!(!update.resync);

    // Bob's orders are none of alice's business; her own changes keep coming.
    let (bobs, _) = create_order(&two, &bob).await;
    add_item(&two, &bob, &bobs, &product, 1).await;
    assert_eq!(add_item(&two, &alice, &created, &product, 2).await, 2);
    let update = next_update(&mut phone, "mine", WAIT).await;
    assert_eq!(
        (update.order_id(), update.version, update.change.as_str()),
        (created.as_str(), 2, "ITEM_ADDED"),
        "{update:?}"
    );
    assert_eq!(update.quantity_of(&product), Some(2));
    assert_eq!(add_item(&one, &alice, &existing, &product, 1).await, 2);
    let update = next_update(&mut phone, "mine", WAIT).await;
    assert_eq!(
        (update.order_id(), update.version, update.change.as_str()),
        (existing.as_str(), 2, "ITEM_ADDED"),
        "{update:?}"
    );
    phone.expect_silence("mine", Duration::from_millis(500)).await;
    phone.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn my_order_updates_replays_nothing_from_before_its_snapshots() {
    let app = spawn_app().await;
    let alice = app.token(app.new_customer().await);
    // Committed just before subscribing: their change events may still be on their way through
    // Debezium and Kafka when the subscription starts. They are older than its snapshots.
    let (cancelled, _) = create_order(&app, &alice).await;
    cancel(&app, &alice, &cancelled).await;
    let (open, _) = create_order(&app, &alice).await;

    let mut phone = WsClient::connect(&app, &alice).await.unwrap_or_else(|e| panic!("{e}"));
    phone.subscribe("mine", &my_order_updates(), json!({})).await;
    let snapshot = next_update(&mut phone, "mine", WAIT).await;
    assert_eq!(
        (snapshot.order_id(), snapshot.version, snapshot.change.as_str()),
        (open.as_str(), 1, "SNAPSHOT")
    );
    // A marker: the next thing the phone hears of must be this new order.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (marker, _) = create_order(&app, &alice).await;
    let mut before_marker = Vec::new();
    loop {
        let update = next_update(&mut phone, "mine", WAIT).await;
        if update.order_id() == marker {
            assert_eq!((update.version, update.change.as_str()), (1, "CREATED"));
            break;
        }
        let which = if update.order_id() == cancelled {
            "the order cancelled before subscribing"
        } else if update.order_id() == open {
            "the snapshotted open order"
        } else {
            "another order"
        };
        before_marker.push(format!("{which}: {}", update.brief()));
    }
    assert!(
        before_marker.is_empty(),
        "changes committed before the subscription's snapshots were delivered after them: {before_marker:?}"
    );
    phone.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_subscription_gets_nothing_more_and_the_socket_stays_usable() {
    let app = spawn_app().await;
    let token = app.token(app.new_customer().await);
    let product = app.new_product(100, true).await.to_string();
    let (order, _) = create_order(&app, &token).await;

    let mut client = WsClient::connect(&app, &token).await.unwrap_or_else(|e| panic!("{e}"));
    subscribe_snapshot(&mut client, "first", &order).await;
    subscribe_snapshot(&mut client, "second", &order).await;
    client.complete("first").await;
    add_item(&app, &token, &order, &product, 1).await;

    let update = next_update(&mut client, "second", WAIT).await;
    assert_eq!((update.version, update.change.as_str()), (2, "ITEM_ADDED"));
    // The client completed "first": the server may echo `complete`, and sends no more results.
    let mut after_complete = Vec::new();
    while let Some(event) = client.try_next_event("first", Duration::from_millis(500)).await {
        after_complete.push(event);
    }
    assert!(
        after_complete.is_empty() || after_complete == [Event::Complete],
        "a completed operation got {after_complete:?}"
    );
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_legacy_graphql_ws_protocol_works_too() {
    let app = spawn_app().await;
    let token = app.token(app.new_customer().await);
    let product = app.new_product(100, true).await.to_string();
    let (order, _) = create_order(&app, &token).await;

    let mut client = WsClient::connect_legacy(&app, &token)
        .await
        .unwrap_or_else(|e| panic!("graphql-ws (legacy) connects: {e}"));
    let snapshot = subscribe_snapshot(&mut client, "1", &order).await;
    assert_eq!(snapshot.version, 1);
    add_item(&app, &token, &order, &product, 3).await;
    let update = next_update(&mut client, "1", WAIT).await;
    assert_eq!((update.version, update.change.as_str()), (2, "ITEM_ADDED"));
    assert_eq!(update.quantity_of(&product), Some(3));
    client.complete("1").await;
    match client.try_next_event("1", Duration::from_secs(2)).await {
        None | Some(Event::Complete) => {}
        Some(other) => panic!("after `stop` the server answers `complete` or nothing, got {other:?}"),
    }
    client.close().await;
}
