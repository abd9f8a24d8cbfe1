//! A subscriber that stops reading never delays the others; when it reads again it is resynced.

use std::time::Duration;

use tokio::time::Instant;

use crate::common::spawn_app;
use crate::common::ws::{ConnectOptions, WsClient};
use crate::support::*;

/// Quick changes made while one subscriber reads nothing. Enough to overflow the server's
/// per-subscriber queue plus what the socket buffers on both ends absorb (measured; see the test).
const CHANGES: i64 = 300;
/// Lines in the order: about 2 KB per copy of the order.
const LINES: i64 = 12;
/// Extra copies of the order in each message of the subscriber that stops reading (~35 KB per
/// message): the socket buffers (at most a few MB on Linux) then hold only ~100 of its messages.
const BULK: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_never_reads_does_not_delay_the_others() {
    let app = spawn_app().await;
    let token = app.token(app.new_customer().await);
    let (order, _) = create_order(&app, &token).await;
    let mut products = Vec::new();
    for i in 0..LINES {
        let product = app.new_product(100 + i, true).await.to_string();
        add_item(&app, &token, &order, &product, 1).await;
        products.push(product);
    }
    let hot = products[0].clone();

    // S: a small receive buffer, reads its snapshot and then nothing.
    let mut slow = WsClient::connect_with(
        &app,
        &token,
        ConnectOptions {
            recv_buffer: Some(4096),
            ..ConnectOptions::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    slow.subscribe("s", &order_updates_bulky(BULK), serde_json::json!({ "o": order }))
        .await;
    let start = next_update(&mut slow, "s", Duration::from_secs(10)).await;
    assert_eq!(start.change, "SNAPSHOT", "{start:?}");
    // F: an ordinary subscriber on the same instance, reading all the time.
    let mut fast = WsClient::connect(&app, &token).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(subscribe_snapshot(&mut fast, "f", &order).await.version, start.version);
    let first = start.version + 1;
    let last = start.version + CHANGES;

    let reader = tokio::spawn(async move {
        let mut got: Vec<(Update, Instant)> = Vec::new();
        while got.last().is_none_or(|(update, _)| update.version < last) {
            let update = next_update(&mut fast, "f", Duration::from_secs(10)).await;
            got.push((update, Instant::now()));
        }
        fast.expect_silence("f", Duration::from_millis(300)).await;
        (fast, got)
    });

    let writes_started = Instant::now();
    let mut committed_at = Vec::new();
    for i in 0..CHANGES {
        let version = set_quantity(&app, &token, &order, &hot, 2 + i % 2).await;
        assert_eq!(version, first + i);
        committed_at.push(Instant::now());
    }
    let writes_took = writes_started.elapsed();

    let (fast, got) = match tokio::time::timeout(Duration::from_secs(30), reader).await {
        Err(_) => panic!("F did not receive all {CHANGES} changes within 30 s of the writes"),
        Ok(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Ok(Err(e)) => panic!("F's reader: {e}"),
        Ok(Ok(done)) => done,
    };
    let updates: Vec<Update> = got.iter().map(|(update, _)| update.clone()).collect();
    let expected: Vec<(i64, &str)> = (first..=last).map(|v| (v, "ITEM_CHANGED")).collect();
    assert_sequence("F, the subscriber that reads", &updates, &expected);
    for update in &updates {
        assert_eq!(
            update.quantity_of(&hot),
            Some(2 + (update.version - first) % 2),
            "{update:?}"
        );
        assert_eq!(update.items().len(), LINES as usize);
    }
    let lags: Vec<Duration> = got
        .iter()
        .zip(&committed_at)
        .map(|((_, received), committed)| received.saturating_duration_since(*committed))
        .collect();
    let max_lag = lags.iter().max().copied().unwrap_or_default();
    let mut sorted = lags.clone();
    sorted.sort();
    eprintln!(
        "{CHANGES} writes took {writes_took:?}; F's lag behind each write: median {:?}, max {max_lag:?}",
        sorted[sorted.len() / 2]
    );
    assert!(
        max_lag < Duration::from_secs(5),
        "F was delayed: it got a change {max_lag:?} after its write"
    );

    // Now S reads again: maybe some queued in-order states, then a resync, then (when the resync
    // came early) the remaining changes in order.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seen: Vec<Update> = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let update = next_update(&mut slow, "s", left.max(Duration::from_millis(1))).await;
        let previous = seen.last().map_or(start.version, |u| u.version);
        if update.resync {
            assert!(
                update.version >= previous,
                "a resync never goes back: {update:?} after v{previous}"
            );
        } else {
            assert_eq!(
                update.version,
                previous + 1,
                "S: without a resync, states come in order with no gap; got {} after v{previous}",
                update.brief()
            );
        }
        let done = update.version == last;
        seen.push(update);
        if done {
            break;
        }
    }
    let in_order = seen.iter().take_while(|u| !u.resync).count();
    eprintln!(
        "S got {in_order} queued in-order states, then {:?}",
        seen.iter().skip(in_order).map(Update::brief).collect::<Vec<_>>()
    );
    assert!(
        in_order < seen.len(),
        "S got all {CHANGES} changes in order without a resync: nothing overflowed (raise CHANGES?)"
    );
    // The resync may come before the last writes were consumed (when the socket drained a
    // little while S's queue was overflowing); what follows it is then live and in order.
    let newest = seen.last().unwrap();
    assert_eq!(newest.version, last);
    assert_eq!(newest.state(), db_state(&app, &order).await);
    slow.expect_silence("s", Duration::from_millis(500)).await;
    slow.close().await;
    fast.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_my_orders_subscriber_still_learns_the_final_state_of_every_order() {
    let app = spawn_app().await;
    let token = app.token(app.new_customer().await);
    let (busy, _) = create_order(&app, &token).await;
    let (quiet, _) = create_order(&app, &token).await;
    let mut products = Vec::new();
    for i in 0..LINES {
        let product = app.new_product(100 + i, true).await.to_string();
        add_item(&app, &token, &busy, &product, 1).await;
        products.push(product);
    }
    let hot = products[0].clone();
    add_item(&app, &token, &quiet, &hot, 1).await;

    let mut slow = WsClient::connect_with(
        &app,
        &token,
        ConnectOptions {
            recv_buffer: Some(4096),
            ..ConnectOptions::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    slow.subscribe("mine", &my_order_updates_bulky(BULK), serde_json::json!({}))
        .await;
    let mut latest = std::collections::HashMap::new();
    for _ in 0..2 {
        let snapshot = next_update(&mut slow, "mine", Duration::from_secs(10)).await;
        assert_eq!(snapshot.change, "SNAPSHOT", "{snapshot:?}");
        latest.insert(snapshot.order_id().to_owned(), snapshot);
    }
    assert!(latest.contains_key(&busy) && latest.contains_key(&quiet), "{latest:?}");
    let start = latest[&busy].version;

    // A reader on the same instance tells when every change has arrived there.
    let mut marker = WsClient::connect(&app, &token).await.unwrap_or_else(|e| panic!("{e}"));
    subscribe_snapshot(&mut marker, "busy", &busy).await;
    let last = start + CHANGES + 1;
    let reader = tokio::spawn(async move {
        loop {
            let update = next_update(&mut marker, "busy", Duration::from_secs(10)).await;
            if update.version >= last {
                return marker;
            }
        }
    });
    for i in 0..CHANGES {
        set_quantity(&app, &token, &busy, &hot, 2 + i % 2).await;
    }
    assert_eq!(cancel(&app, &token, &busy).await, last);
    let marker = match tokio::time::timeout(Duration::from_secs(30), reader).await {
        Err(_) => panic!("the reading subscriber did not get v{last} within 30 s"),
        Ok(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Ok(Err(e)) => panic!("{e}"),
        Ok(Ok(marker)) => marker,
    };

    // The slow one reads again. Whatever it skipped, its last state of the busy order must be the
    // committed one: cancelled, at the final version (even though cancelled orders get no first snapshot).
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seen = Vec::new();
    let mut resynced = false;
    while latest[&busy].version < last {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(event) = slow.try_next_event("mine", left).await else {
            panic!(
                "the lagging myOrderUpdates subscriber never got the busy order's final state v{last} (CANCELLED); \
                 its latest is {}; received {} updates, the last ones: {:?}",
                latest[&busy].brief(),
                seen.len(),
                &seen[seen.len().saturating_sub(4)..]
            );
        };
        let payload = match event {
            crate::common::ws::Event::Next(payload) => payload,
            other => panic!("expected an update, got {other:?}"),
        };
        let update = Update::from_data(&payload["data"]);
        resynced |= update.resync;
        seen.push(format!("{} {}", &update.order_id()[..8], update.brief()));
        let previous = latest.get(update.order_id()).map_or(0, |u: &Update| u.version);
        assert!(
            update.version > previous || (update.resync && update.version >= previous),
            "never backwards: {} after v{previous}",
            update.brief()
        );
        latest.insert(update.order_id().to_owned(), update);
    }
    assert!(
        resynced,
        "the subscriber never lagged (raise CHANGES?); got {} updates in order",
        seen.len()
    );
    assert_eq!(latest[&busy].status(), "CANCELLED");
    assert_eq!(latest[&busy].state(), db_state(&app, &busy).await);
    assert_eq!(latest[&quiet].state(), db_state(&app, &quiet).await);
    slow.close().await;
    marker.close().await;
}
