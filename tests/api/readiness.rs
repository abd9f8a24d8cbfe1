//! `/readyz` says whether an instance can serve requests, `/readyz/cdc` whether live updates are
//! healthy; on shutdown readiness fails at once, requests are still served during the drain
//! delay, then WebSockets close with 1001.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

use crate::common::ws::WsClient;
use crate::common::{serve_config, spawn_app_with, TestApp};

async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    let response = app.http.get(format!("{}{path}", app.base_url)).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_at_once_on_shutdown_then_sockets_close_with_1001() {
    let mut config = serve_config();
    config.drain.shutdown_delay_ms = 1_500;
    let mut app = spawn_app_with(config).await;
    let (status, body) = get(&app, "/readyz").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ready")), "{body}");
    assert_eq!(
        (body["postgres"].as_str(), body["cdc"].as_str()),
        (Some("up"), Some("up"))
    );
    let (status, body) = get(&app, "/readyz/cdc").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("up")), "{body}");
    assert!(body["last_event_age_seconds"].is_number(), "{body}");

    let token = app.token(app.new_customer().await);
    let mut socket = WsClient::connect(&app, &token).await.unwrap_or_else(|e| panic!("{e}"));
    let asked = Instant::now();
    app.shut_down();
    let body = loop {
        let (status, body) = get(&app, "/readyz").await;
        if status == 503 {
            break body;
        }
        assert!(
            asked.elapsed() < Duration::from_millis(500),
            "/readyz still {status} after the shutdown began"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(body["status"], "draining");
    // Still serving while load balancers take the instance out of rotation.
    let me = app.graphql(Some(&token), "{ me { id } }", json!({})).await;
    assert!(me["data"]["me"]["id"].is_string(), "{me}");
    assert!(
        asked.elapsed() < Duration::from_millis(1_500),
        "that was within the drain delay"
    );

    let closed = socket
        .wait_closed(Duration::from_secs(15))
        .await
        .expect("the server closes the socket");
    assert!(closed.contains("code 1001"), "{closed}");
    assert!(
        asked.elapsed() >= Duration::from_millis(1_500),
        "not before the drain delay: {:?}",
        asked.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_never_reached_kafka_is_not_ready() {
    let mut config = serve_config();
    config.kafka.kafka_brokers = "127.0.0.1:9".to_owned(); // nothing listens on the discard port
    let app = ordercast::app::Application::build(config).await.unwrap();
    let base_url = format!("http://{}", app.local_addr());
    tokio::spawn(app.run_until(std::future::pending()));
    let http = reqwest::Client::new();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let readyz = http.get(format!("{base_url}/readyz")).send().await.unwrap();
    assert_eq!(
        readyz.status().as_u16(),
        503,
        "cold: no CDC partitions were ever assigned"
    );
    let body: Value = readyz.json().await.unwrap();
    assert_eq!(body["status"], "starting", "{body}");
    let cdc = http.get(format!("{base_url}/readyz/cdc")).send().await.unwrap();
    assert_eq!(cdc.status().as_u16(), 503);
    let body: Value = cdc.json().await.unwrap();
    assert!(body["reason"].as_str().is_some_and(|r| !r.is_empty()), "{body}");
    let healthz = http.get(format!("{base_url}/healthz")).send().await.unwrap();
    assert_eq!(healthz.status().as_u16(), 200, "alive all the same");
}
