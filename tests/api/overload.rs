//! Hostile load: every limit of the listener and the request path answers at
//! once with its typed error, and what it refused changed nothing.

use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{error_code, serve_config, spawn_app_with, TestApp};

const ME: &str = "{ me { id } }";

async fn post(app: &TestApp, token: &str, query: &str, variables: Value) -> reqwest::Response {
    app.http
        .post(format!("{}/graphql", app.base_url))
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .expect("ordercast answers")
}

async fn refused(response: reqwest::Response) -> (Value, Option<String>) {
    assert_eq!(response.status(), 503);
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|value| value.to_str().unwrap().to_owned());
    (response.json().await.unwrap(), retry_after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_concurrency_limit_requests_are_refused_at_once_and_a_stuck_one_times_out() {
    let mut config = serve_config();
    config.http.http_max_concurrent_requests = Some(1);
    config.http.http_request_timeout = Duration::from_secs(2);
    let app = spawn_app_with(config).await;
    let token = app.token(app.new_customer().await);
    let order = app.new_order(&token).await;
    // Another session holds the order's row lock: a cancel waits for it inside its transaction.
    let holder = app.db.begin().await.unwrap();
    let lock = "SELECT 1 FROM orders WHERE id = $1::uuid FOR UPDATE";
    holder
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            lock,
            [order.clone().into()],
        ))
        .await
        .unwrap();
    let stuck = tokio::spawn({
        let (http, url, token) = (app.http.clone(), format!("{}/graphql", app.base_url), token.clone());
        let body = json!({ "query": "mutation($o: ID!) { cancelOrder(orderId: $o) { version } }", "variables": { "o": order } });
        async move { http.post(url).bearer_auth(token).json(&body).send().await.unwrap() }
    });
    let waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%orders%'";
    while app.scalar_i64(waiting, vec![]).await == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let started = Instant::now();
    let (body, retry_after) = refused(post(&app, &token, ME, json!({})).await).await;
    let waited = started.elapsed();
    assert_eq!(error_code(&body), Some("UNAVAILABLE"), "{body}");
    assert_eq!(body["errors"][0]["extensions"]["mayHaveApplied"], false, "{body}");
    assert!(
        body["errors"][0]["message"].as_str().unwrap().contains("1 requests"),
        "{body}"
    );
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert!(
        waited < Duration::from_secs(1),
        "refused at once, not after a wait: {waited:?}"
    );

    let (body, retry_after) = refused(stuck.await.unwrap()).await;
    assert_eq!(error_code(&body), Some("UNAVAILABLE"), "{body}");
    assert_eq!(body["errors"][0]["extensions"]["mayHaveApplied"], true, "{body}");
    assert!(
        body["errors"][0]["message"].as_str().unwrap().contains("within 2s"),
        "{body}"
    );
    assert_eq!(retry_after.as_deref(), Some("1"));
    holder.rollback().await.unwrap();

    // The slot came back, and the cut-short cancel never committed.
    let data = app
        .ok(
            &token,
            "query($o: ID!) { order(id: $o) { status version } }",
            json!({ "o": order }),
        )
        .await;
    assert_eq!(data["order"], json!({ "status": "OPEN", "version": 1 }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_answered_503_and_slots_come_back() {
    let mut config = serve_config();
    config.http.http_max_connections = 2;
    config.http.http_header_read_timeout = Duration::from_secs(30);
    let app = spawn_app_with(config).await;
    let address = app.base_url.trim_start_matches("http://").to_owned();
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(TcpStream::connect(&address).await.unwrap());
    }
    let fresh = || reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    // The held connections take their slots once accepted; until then a request may get through.
    let deadline = Instant::now() + Duration::from_secs(5);
    let response = loop {
        let response = fresh().get(format!("{}/healthz", app.base_url)).send().await.unwrap();
        if response.status() == 503 || Instant::now() > deadline {
            break response;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (body, retry_after) = refused(response).await;
    assert_eq!(error_code(&body), Some("UNAVAILABLE"), "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("2 open connections"),
        "{body}"
    );
    assert_eq!(retry_after.as_deref(), Some("1"));

    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let response = fresh().get(format!("{}/healthz", app.base_url)).send().await.unwrap();
        if response.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "closed connections give their slots back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_client_that_sends_its_headers_too_slowly_is_cut_off() {
    let mut config = serve_config();
    config.http.http_header_read_timeout = Duration::from_secs(1);
    let app = spawn_app_with(config).await;
    let address = app.base_url.trim_start_matches("http://").to_owned();
    let mut slow = TcpStream::connect(&address).await.unwrap();
    slow.write_all(b"POST /graphql HTTP/1.1\r\nHost: ordercast\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the connection was closed within the header-read timeout");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[tokio::test]
async fn a_customer_beyond_its_order_budget_is_refused_and_nobody_else_is() {
    let mut config = serve_config();
    config.rates.create_order_per_minute = 2;
    let app = spawn_app_with(config).await;
    let greedy = app.new_customer().await;
    let token = app.token(greedy);
    app.new_order(&token).await;
    app.new_order(&token).await;
    let response = app
        .graphql(Some(&token), "mutation { createOrder { id } }", json!({}))
        .await;
    assert_eq!(error_code(&response), Some("LIMIT_EXCEEDED"), "{response}");
    let seconds = response["errors"][0]["extensions"]["retryAfterSeconds"]
        .as_u64()
        .unwrap();
    assert!((1..=30).contains(&seconds), "{response}");
    let message = response["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("at most 2 new orders a minute"), "{message}");
    let orders = app
        .scalar_i64(
            "SELECT count(*) FROM orders WHERE customer_id = $1",
            vec![greedy.into()],
        )
        .await;
    assert_eq!(orders, 2, "the refused write wrote nothing");

    let other = app.token(app.new_customer().await);
    app.new_order(&other).await;
}
