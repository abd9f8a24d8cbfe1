//! A device that comes back after its versions were pruned gets a resync
//! snapshot, then live changes as usual.

use std::time::Duration;

use ordercast::db::{HistoryPruner, LockWait, PassOutcome};

use crate::common::spawn_app;
use crate::common::ws::{WsClient, WAIT};
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_from_before_the_retained_history_gives_a_resync_snapshot() {
    let app = spawn_app().await;
    let token = app.token(app.new_customer().await);
    let milk = app.new_product(129, true).await.to_string();
    let (order, _) = create_order(&app, &token).await;
    assert_eq!(add_item(&app, &token, &order, &milk, 1).await, 2);
    assert_eq!(set_quantity(&app, &token, &order, &milk, 2).await, 3);
    assert_eq!(set_quantity(&app, &token, &order, &milk, 3).await, 4);

    // The device held version 1; versions 1 to 3 then age out of the retention.
    let order_id: uuid::Uuid = order.parse().unwrap();
    execute_sql(
        &app,
        "UPDATE order_versions SET committed_at = committed_at - interval '2 hours' WHERE order_id = $1",
        vec![order_id.into()],
    )
    .await;
    let mut pruner = HistoryPruner::new(crate::common::serve_config().database, 100);
    let outcome = pruner
        .pass(Duration::from_secs(3600), LockWait::Wait(Duration::from_secs(60)))
        .await
        .unwrap();
    assert!(matches!(outcome, PassOutcome::Pruned(_)), "{outcome:?}");

    let mut phone = WsClient::connect(&app, &token).await.unwrap_or_else(|e| panic!("{e}"));
    subscribe_order(&mut phone, "1", &order, Some(1)).await;
    let first = next_update(&mut phone, "1", WAIT).await;
    assert!(first.resync, "what the device missed is gone: {}", first.brief());
    assert_eq!(first.version, 4);
    assert_eq!(first.state(), db_state(&app, &order).await);

    // Resuming within the retained history still replays exactly.
    subscribe_order(&mut phone, "current", &order, Some(4)).await;
    phone.expect_silence("current", Duration::from_millis(500)).await;
    assert_eq!(set_quantity(&app, &token, &order, &milk, 5).await, 5);
    for id in ["1", "current"] {
        let live = next_update(&mut phone, id, WAIT).await;
        assert_sequence(id, std::slice::from_ref(&live), &[(5, "ITEM_CHANGED")]);
        assert!(!live.resync);
    }
    phone.close().await;
}
