//! Subscriptions over multipart HTTP and SSE: the same contract as on a WebSocket (snapshot,
//! every change exactly once, resume with afterVersion, the same errors), the login from the
//! `Authorization` header, heartbeats, the token's expiry and the instance's shutdown.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::common::http_stream::{HttpStream, StreamEvent, StreamFormat};
use crate::common::ws::WAIT;
use crate::common::{serve_config, spawn_app, spawn_app_with, TestApp};
use crate::support::*;

const FORMATS: [StreamFormat; 2] = [StreamFormat::Multipart, StreamFormat::EventStream];

async fn next_update(stream: &mut HttpStream) -> Update {
    Update::from_data(&stream.next_data(WAIT).await)
}

async fn subscribe(app: &TestApp, format: StreamFormat, token: &str, order: &str, after: Option<i64>) -> HttpStream {
    HttpStream::open(
        app,
        format,
        Some(token),
        &order_updates(),
        json!({ "o": order, "after": after }),
    )
    .await
    .unwrap_or_else(|refused| panic!("{format:?}: the subscription was refused: {refused:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_formats_deliver_the_snapshot_every_change_and_resume() {
    let app = spawn_app().await;
    let token = app.token(app.new_customer().await);
    let product = app.new_product(250, true).await.to_string();
    for format in FORMATS {
        let (order, _) = create_order(&app, &token).await;
        let mut stream = subscribe(&app, format, &token, &order, None).await;
        let snapshot = next_update(&mut stream).await;
        assert_eq!(
            (snapshot.version, snapshot.change.as_str()),
            (1, "SNAPSHOT"),
            "{format:?}"
        );

        add_item(&app, &token, &order, &product, 2).await;
        cancel(&app, &token, &order).await;
        let updates = vec![next_update(&mut stream).await, next_update(&mut stream).await];
        assert_sequence(&format!("{format:?}"), &updates, &[(2, "ITEM_ADDED"), (3, "CANCELLED")]);
        assert_eq!(updates[0].quantity_of(&product), Some(2));

        // A client that reconnects resumes after the last version it saw, by GET this time.
        let mut resumed = HttpStream::open_get(
            &app,
            format,
            Some(&token),
            &order_updates(),
            json!({ "o": order, "after": 1 }),
        )
        .await
        .unwrap_or_else(|refused| panic!("{format:?}: GET was refused: {refused:?}"));
        let missed = vec![next_update(&mut resumed).await, next_update(&mut resumed).await];
        assert_sequence(
            &format!("{format:?} resumed"),
            &missed,
            &[(2, "ITEM_ADDED"), (3, "CANCELLED")],
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_carry_the_same_errors_as_the_websocket() {
    let app = spawn_app().await;
    let alice = app.token(app.new_customer().await);
    let bob = app.token(app.new_customer().await);
    let (order, _) = create_order(&app, &alice).await;
    let variables = json!({ "o": order });
    for format in FORMATS {
        for (who, token, code) in [
            ("no token", None, "UNAUTHENTICATED"),
            ("a bad token", Some("not-a-token"), "UNAUTHENTICATED"),
            ("another customer", Some(bob.as_str()), "NOT_FOUND"),
        ] {
            let mut stream = HttpStream::open(&app, format, token, &order_updates(), variables.clone())
                .await
                .unwrap_or_else(|refused| panic!("{format:?} {who}: {refused:?}"));
            let event = stream.next(WAIT).await;
            assert_eq!(event.error_code(), Some(code), "{format:?} {who}: {event:?}");
            assert_eq!(stream.next(WAIT).await, StreamEvent::Complete, "{format:?} {who}");
        }
    }

    // A document that does not parse is the stream's only result, as on a WebSocket.
    let mut invalid = HttpStream::open(
        &app,
        StreamFormat::EventStream,
        Some(&alice),
        "subscription {",
        json!({}),
    )
    .await
    .unwrap_or_else(|refused| panic!("{refused:?}"));
    assert_eq!(invalid.next(WAIT).await.error_code(), Some("BAD_USER_INPUT"));
    assert_eq!(invalid.next(WAIT).await, StreamEvent::Complete);

    // Without a streaming Accept a subscription cannot be answered.
    let response = app
        .http
        .post(format!("{}/graphql", app.base_url))
        .bearer_auth(&alice)
        .json(&json!({ "query": order_updates(), "variables": variables }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 406);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT", "{body}");

    // GET never runs a mutation, streamed or not.
    let mutation = HttpStream::open_get(
        &app,
        StreamFormat::EventStream,
        Some(&alice),
        "mutation($o: ID!) { cancelOrder(orderId: $o) { id } }",
        variables.clone(),
    )
    .await;
    assert!(
        matches!(&mutation, Err(refused) if refused.status == 405),
        "{:?}",
        mutation.err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_streams_get_heartbeats() {
    let mut config = serve_config();
    config.http.http_stream_heartbeat = Duration::from_millis(200);
    let app = spawn_app_with(config).await;
    let token = app.token(app.new_customer().await);
    let (order, _) = create_order(&app, &token).await;
    for format in FORMATS {
        let mut stream = subscribe(&app, format, &token, &order, None).await;
        next_update(&mut stream).await;
        for _ in 0..2 {
            assert_eq!(
                stream.next_event(Duration::from_secs(5)).await,
                StreamEvent::Heartbeat,
                "{format:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_ends_with_unauthenticated_when_its_token_expires() {
    let app = spawn_app().await;
    let customer = app.new_customer().await;
    let (order, _) = create_order(&app, &app.token(customer)).await;
    for format in FORMATS {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let short = app.keys.mint_with_times(customer, now, now + 2);
        let mut stream = subscribe(&app, format, &short, &order, None).await;
        next_update(&mut stream).await;
        // The token's 2 s plus the 5 s leeway; nothing changes the order meanwhile.
        let event = stream.next(Duration::from_secs(12)).await;
        assert_eq!(event.error_code(), Some("UNAUTHENTICATED"), "{format:?}: {event:?}");
        assert_eq!(stream.next(WAIT).await, StreamEvent::Complete, "{format:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_end_when_the_instance_stops_so_the_drain_does_not_wait_for_them() {
    let mut app = spawn_app().await;
    let token = app.token(app.new_customer().await);
    let (order, _) = create_order(&app, &token).await;
    let mut multipart = subscribe(&app, StreamFormat::Multipart, &token, &order, None).await;
    let mut sse = subscribe(&app, StreamFormat::EventStream, &token, &order, None).await;
    next_update(&mut multipart).await;
    next_update(&mut sse).await;

    app.shut_down();
    let event = multipart.next(WAIT).await;
    assert_eq!(event.error_code(), Some("UNAVAILABLE"), "{event:?}");
    assert!(matches!(event, StreamEvent::TransportError(_)), "{event:?}");
    assert_eq!(multipart.next(WAIT).await, StreamEvent::Complete);
    // No `complete`: graphql-sse clients take a closed stream as a dropped connection and retry.
    assert_eq!(sse.next(WAIT).await, StreamEvent::Closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_its_stream_is_dropped_after_the_write_timeout() {
    use tokio::io::AsyncWriteExt;

    let mut config = serve_config();
    config.http.http_write_timeout = Duration::from_secs(1);
    let app = spawn_app_with(config).await;
    let token = app.token(app.new_customer().await);
    let (order, _) = create_order(&app, &token).await;
    let mut products = Vec::new();
    for _ in 0..10 {
        products.push(app.new_product(100, true).await.to_string());
    }

    // A raw client with a small receive buffer that sends its request and never reads.
    let addr: std::net::SocketAddr = app.base_url.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut tcp = socket.connect(addr).await.unwrap();
    let body = json!({ "query": order_updates_bulky(100), "variables": { "o": order } }).to_string();
    let request = format!(
        "POST /graphql HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Accept: text/event-stream\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    // Peeking reads nothing: the stream is live and carries updates.
    let head = tokio::time::timeout(WAIT, async {
        let mut head = vec![0; 4096];
        loop {
            let peeked = tcp.peek(&mut head).await.unwrap();
            let text = String::from_utf8_lossy(&head[..peeked]).into_owned();
            if text.contains("orderUpdates") {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the stream's first update");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    // Change the order until the server gives up on this client. Each update carries 100
    // copies of a ten-item order (~140 KB), so however the kernel sizes its buffers (the send
    // buffer grows up to 4 MiB) and however many updates a lagging stream folds into one
    // resync, the server's writes soon wait on the client. Once the server has closed its
    // socket, the bytes this client sends are answered with a reset (RFC 1122), which the
    // socket reports without reading what the buffers hold.
    for product in &products {
        add_item(&app, &token, &order, product, 1).await;
    }
    let mut dropped = false;
    for round in 1..=2_000 {
        set_quantity(&app, &token, &order, &products[0], 2 + round % 998).await;
        if round % 10 == 0 {
            let probe = tcp.write_all(b"\r\n").await;
            if probe.is_err() || tcp.take_error().unwrap().is_some() {
                dropped = true;
                break;
            }
        }
    }
    assert!(
        dropped,
        "the server still held the stream of a client that read nothing through 2,000 changes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_or_mutation_over_a_stream_is_one_result_then_complete() {
    let app = spawn_app().await;
    let token = app.token(app.new_customer().await);
    for format in FORMATS {
        let mut created = HttpStream::open(&app, format, Some(&token), "mutation { createOrder { id } }", json!({}))
            .await
            .unwrap_or_else(|refused| panic!("{format:?}: {refused:?}"));
        let order = created.next_data(WAIT).await["createOrder"]["id"].clone();
        assert_eq!(created.next(WAIT).await, StreamEvent::Complete, "{format:?}");

        let mut read = HttpStream::open(
            &app,
            format,
            Some(&token),
            "query($o: ID!) { order(id: $o) { id status } }",
            json!({ "o": order }),
        )
        .await
        .unwrap_or_else(|refused| panic!("{format:?}: {refused:?}"));
        assert_eq!(read.next_data(WAIT).await["order"]["status"], "OPEN", "{format:?}");
        assert_eq!(read.next(WAIT).await, StreamEvent::Complete, "{format:?}");
    }
}
