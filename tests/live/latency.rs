//! Not a pass/fail check: prints how long a committed change takes from one
//! device's request to another device's frame, across two instances.
//! Run: `cargo test --release --test live latency -- --ignored --nocapture`

use std::time::{Duration, Instant};

use crate::common::spawn_app;
use crate::common::ws::WsClient;
use crate::support::*;

const CHANGES: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run on demand"]
async fn latency_request_to_other_device() {
    let one = spawn_app().await;
    let two = spawn_app().await;
    let token = one.token(one.new_customer().await);
    let product = one.new_product(100, true).await.to_string();
    let (order, _) = create_order(&one, &token).await;
    add_item(&one, &token, &order, &product, 1).await;
    let mut device_b = WsClient::connect(&two, &token).await.expect("device B connects");
    subscribe_snapshot(&mut device_b, "b", &order).await;

    let mut samples = Vec::with_capacity(CHANGES);
    for i in 0..CHANGES {
        let sent = Instant::now();
        let version = set_quantity(&one, &token, &order, &product, (i % 900) as i64 + 2).await;
        let update = next_update(&mut device_b, "b", Duration::from_secs(10)).await;
        assert_eq!(update.version, version, "B sees each change, in order");
        samples.push(sent.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    samples.sort();
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
    eprintln!(
        "request (instance 1) to frame (instance 2), {CHANGES} sequential changes: p50 {:?}, p90 {:?}, p99 {:?}, max {:?}",
        at(0.5),
        at(0.9),
        at(0.99),
        samples[samples.len() - 1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_expose_the_live_path() {
    let app = spawn_app().await;
    let token = app.token(app.new_customer().await);
    let product = app.new_product(100, true).await.to_string();
    let (order, _) = create_order(&app, &token).await;
    let mut device = WsClient::connect(&app, &token).await.expect("device connects");
    subscribe_snapshot(&mut device, "d", &order).await;
    let version = add_item(&app, &token, &order, &product, 1).await;
    assert_eq!(
        next_update(&mut device, "d", Duration::from_secs(10)).await.version,
        version
    );

    let metrics = app.metrics().await;
    for name in [
        "ordercast_cdc_events_total{topic=\"ordercast.public.order_versions\"}",
        "ordercast_live_subscriptions",
        "ordercast_live_commit_to_push_seconds_bucket",
    ] {
        assert!(metrics.contains(name), "/metrics lacks {name}:\n{metrics}");
    }
    let ready = app.http.get(format!("{}/readyz", app.base_url)).send().await.unwrap();
    assert_eq!(ready.status(), 200, "{}", ready.text().await.unwrap());
}
