//! `afterVersion`: a device that reconnects gets exactly what it missed, then live changes.

use std::time::Duration;

use crate::common::spawn_app;
use crate::common::ws::{WsClient, WAIT};
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_resumes_after_a_reconnect_on_another_instance() {
    let one = spawn_app().await;
    let two = spawn_app().await;
    let token = one.token(one.new_customer().await);
    let milk = one.new_product(129, true).await.to_string();
    let bread = one.new_product(450, true).await.to_string();
    let (order, _) = create_order(&one, &token).await;

    let mut phone = WsClient::connect(&one, &token).await.unwrap_or_else(|e| panic!("{e}"));
    let snapshot = subscribe_snapshot(&mut phone, "1", &order).await;
    assert_eq!(snapshot.version, 1);
    phone.close().await;

    // Missed while offline.
    assert_eq!(add_item(&one, &token, &order, &milk, 1).await, 2);
    assert_eq!(add_item(&one, &token, &order, &bread, 1).await, 3);
    assert_eq!(set_quantity(&one, &token, &order, &milk, 4).await, 4);

    // The phone comes back through the other instance.
    let mut phone = WsClient::connect(&two, &token).await.unwrap_or_else(|e| panic!("{e}"));
    subscribe_order(&mut phone, "1", &order, Some(1)).await;
    let mut missed = Vec::new();
    for _ in 0..3 {
        missed.push(next_update(&mut phone, "1", WAIT).await);
    }
    assert_sequence(
        "the resumed subscription",
        &missed,
        &[(2, "ITEM_ADDED"), (3, "ITEM_ADDED"), (4, "ITEM_CHANGED")],
    );
    // Each replayed message is the state committed at that version, not today's state.
    assert_eq!(missed[0].items().len(), 1);
    assert_eq!(missed[0].quantity_of(&milk), Some(1));
    assert_eq!(missed[1].items().len(), 2);
    assert_eq!(missed[1].quantity_of(&milk), Some(1));
    assert_eq!(missed[2].quantity_of(&milk), Some(4));
    assert_eq!(missed[2].state(), db_state(&one, &order).await);

    // Then live changes.
    assert_eq!(remove_item(&one, &token, &order, &bread).await, 5);
    let live = next_update(&mut phone, "1", WAIT).await;
    assert_sequence(
        "the resumed subscription, live",
        std::slice::from_ref(&live),
        &[(5, "ITEM_REMOVED")],
    );
    assert_eq!(live.items().len(), 1);

    // Resuming at the current version replays nothing, and then follows live changes.
    subscribe_order(&mut phone, "current", &order, Some(5)).await;
    phone.expect_silence("current", Duration::from_secs(1)).await;
    assert_eq!(schedule(&one, &token, &order).await, 6);
    assert_eq!(reopen(&two, &token, &order).await, 7);
    for id in ["1", "current"] {
        let updates = vec![
            next_update(&mut phone, id, WAIT).await,
            next_update(&mut phone, id, WAIT).await,
        ];
        assert_sequence(id, &updates, &[(6, "SCHEDULED"), (7, "REOPENED")]);
        assert_eq!(updates[0].status(), "SCHEDULED");
        assert_eq!(updates[1].status(), "OPEN");
    }
    phone.expect_silence("1", Duration::from_millis(300)).await;
    phone.close().await;
}
