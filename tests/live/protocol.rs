//! graphql-transport-ws, strictly: each protocol violation closes the socket
//! with its code, read here from raw frames.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::common::ws::{ws_url, WsClient, WAIT};
use crate::common::{serve_config, spawn_app_with, TestApp};
use crate::support::{cancel, next_update, subscribe_snapshot};

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn app() -> TestApp {
    let mut config = serve_config();
    config.websocket.ws_init_timeout_ms = 500;
    spawn_app_with(config).await
}

async fn open(app: &TestApp, protocol: &str) -> Socket {
    let mut request = ws_url(app).into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
    tokio_tungstenite::connect_async(request).await.expect("upgrade").0
}

async fn send(socket: &mut Socket, message: Value) {
    socket.send(Message::Text(message.to_string().into())).await.unwrap();
}

/// The next text message as JSON, or the close code.
async fn next(socket: &mut Socket) -> Result<Value, Option<u16>> {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("the server answers within 5 s");
        match message {
            Some(Ok(Message::Text(text))) => return Ok(serde_json::from_str(&text).unwrap()),
            Some(Ok(Message::Close(frame))) => return Err(frame.map(|f| u16::from(f.code))),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Err(None),
        }
    }
}

async fn close_code(socket: &mut Socket) -> Option<u16> {
    loop {
        match next(socket).await {
            Ok(message) if message["type"] == "ping" => continue,
            Ok(message) => panic!("expected a close, got {message}"),
            Err(code) => return code,
        }
    }
}

async fn acked(app: &TestApp) -> Socket {
    acked_as(app, &app.token(app.new_customer().await)).await
}

async fn acked_as(app: &TestApp, token: &str) -> Socket {
    let mut socket = open(app, "graphql-transport-ws").await;
    send(
        &mut socket,
        json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {token}") } }),
    )
    .await;
    assert_eq!(next(&mut socket).await.unwrap()["type"], "connection_ack");
    socket
}

#[tokio::test]
async fn every_violation_closes_with_its_code() {
    let app = app().await;

    let mut silent = open(&app, "graphql-transport-ws").await;
    assert_eq!(close_code(&mut silent).await, Some(4408), "no connection_init in time");

    let mut early = open(&app, "graphql-transport-ws").await;
    send(
        &mut early,
        json!({ "type": "subscribe", "id": "1", "payload": { "query": "{ me { id } }" } }),
    )
    .await;
    assert_eq!(close_code(&mut early).await, Some(4401), "subscribe before ack");

    let mut forged = open(&app, "graphql-transport-ws").await;
    send(
        &mut forged,
        json!({ "type": "connection_init", "payload": { "authorization": "Bearer nope" } }),
    )
    .await;
    assert_eq!(close_code(&mut forged).await, Some(4403), "rejected credentials");

    let mut twice = acked(&app).await;
    send(&mut twice, json!({ "type": "connection_init" })).await;
    assert_eq!(close_code(&mut twice).await, Some(4429), "a second connection_init");

    for invalid in [
        json!({ "type": "subscribe", "payload": {} }),
        json!({ "type": "launch" }),
        json!([1, 2]),
    ] {
        let mut socket = acked(&app).await;
        send(&mut socket, invalid.clone()).await;
        assert_eq!(close_code(&mut socket).await, Some(4400), "invalid message {invalid}");
    }

    let mut duplicate = acked(&app).await;
    let subscription = json!({ "type": "subscribe", "id": "same", "payload": { "query": "subscription { myOrderUpdates { version } }" } });
    send(&mut duplicate, subscription.clone()).await;
    send(&mut duplicate, subscription).await;
    assert_eq!(close_code(&mut duplicate).await, Some(4409), "a duplicate operation id");

    // An unsupported subprotocol: the upgrade names none, which strict clients
    // refuse; a lenient one gets 4406 right after.
    let mut request = ws_url(&app).into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Err(error) => assert!(error.to_string().contains("SubProtocol"), "{error}"),
        Ok((mut socket, _)) => assert_eq!(close_code(&mut socket).await, Some(4406), "an unsupported subprotocol"),
    }
}

#[tokio::test]
async fn ping_pong_operations_errors_and_complete() {
    let app = app().await;
    let token = app.token(app.new_customer().await);
    let mut socket = acked_as(&app, &token).await;
    send(&mut socket, json!({ "type": "ping", "payload": { "n": 1 } })).await;
    assert_eq!(
        next(&mut socket).await.unwrap(),
        json!({ "type": "pong", "payload": { "n": 1 } })
    );

    send(
        &mut socket,
        json!({ "type": "subscribe", "id": "q", "payload": { "query": "{ me { id } }" } }),
    )
    .await;
    let result = next(&mut socket).await.unwrap();
    assert_eq!(
        (result["type"].as_str(), result["id"].as_str()),
        (Some("next"), Some("q")),
        "{result}"
    );
    assert!(result["payload"]["data"]["me"]["id"].is_string());
    assert_eq!(
        next(&mut socket).await.unwrap(),
        json!({ "id": "q", "type": "complete" })
    );

    send(
        &mut socket,
        json!({ "type": "subscribe", "id": "bad", "payload": { "query": "subscription { nothing }" } }),
    )
    .await;
    let error = next(&mut socket).await.unwrap();
    assert_eq!(
        error["type"], "error",
        "an invalid operation is an error message: {error}"
    );
    assert_eq!(error["payload"][0]["extensions"]["code"], "BAD_USER_INPUT");

    // A completed subscription sends nothing more, even when its order changes.
    let order = app.new_order(&token).await;
    let subscription = json!({ "query": "subscription($o: ID!) { orderUpdates(orderId: $o) { version } }", "variables": { "o": order } });
    send(
        &mut socket,
        json!({ "type": "subscribe", "id": "live", "payload": subscription }),
    )
    .await;
    let snapshot = next(&mut socket).await.unwrap();
    assert_eq!(
        (snapshot["type"].as_str(), snapshot["id"].as_str()),
        (Some("next"), Some("live")),
        "{snapshot}"
    );
    send(&mut socket, json!({ "type": "complete", "id": "live" })).await;
    // A second subscriber of the order on the same instance shows when the change has arrived.
    let mut witness = WsClient::connect(&app, &token).await.unwrap_or_else(|e| panic!("{e}"));
    subscribe_snapshot(&mut witness, "w", &order).await;
    cancel(&app, &token, &order).await;
    assert_eq!(next_update(&mut witness, "w", WAIT).await.change, "CANCELLED");
    tokio::time::sleep(Duration::from_millis(200)).await;
    send(&mut socket, json!({ "type": "ping" })).await;
    assert_eq!(
        next(&mut socket).await.unwrap()["type"],
        "pong",
        "nothing from the completed operation, no echo"
    );
}

#[tokio::test]
async fn a_connection_runs_at_most_its_operation_limit_and_keeps_serving() {
    let mut config = serve_config();
    config.websocket.ws_max_operations = 3;
    let app = spawn_app_with(config).await;
    let token = app.token(app.new_customer().await);
    let order = app.new_order(&token).await;
    let mut socket = acked_as(&app, &token).await;
    let subscription = json!({ "query": "subscription($o: ID!) { orderUpdates(orderId: $o) { version } }", "variables": { "o": order } });
    for id in ["a", "b", "c"] {
        send(
            &mut socket,
            json!({ "type": "subscribe", "id": id, "payload": subscription }),
        )
        .await;
        let snapshot = next(&mut socket).await.unwrap();
        assert_eq!(
            (snapshot["type"].as_str(), snapshot["id"].as_str()),
            (Some("next"), Some(id)),
            "{snapshot}"
        );
    }
    send(
        &mut socket,
        json!({ "type": "subscribe", "id": "d", "payload": subscription }),
    )
    .await;
    let refused = next(&mut socket).await.unwrap();
    assert_eq!(
        (refused["type"].as_str(), refused["id"].as_str()),
        (Some("error"), Some("d")),
        "{refused}"
    );
    assert_eq!(refused["payload"][0]["extensions"]["code"], "LIMIT_EXCEEDED");

    // Completing one makes room; the socket was never closed.
    send(&mut socket, json!({ "type": "complete", "id": "a" })).await;
    send(
        &mut socket,
        json!({ "type": "subscribe", "id": "d", "payload": subscription }),
    )
    .await;
    let admitted = next(&mut socket).await.unwrap();
    assert_eq!(
        (admitted["type"].as_str(), admitted["id"].as_str()),
        (Some("next"), Some("d")),
        "{admitted}"
    );
    // Every running subscription still gets the change, exactly once.
    cancel(&app, &token, &order).await;
    let mut updated = Vec::new();
    for _ in 0..3 {
        let update = next(&mut socket).await.unwrap();
        assert_eq!(update["type"], "next", "{update}");
        updated.push(update["id"].as_str().unwrap().to_owned());
    }
    updated.sort();
    assert_eq!(updated, ["b", "c", "d"]);
}

/// The next legacy-protocol message that is not a keep-alive.
async fn next_legacy(socket: &mut Socket) -> Result<Value, Option<u16>> {
    loop {
        let message = next(socket).await?;
        if message["type"] != "ka" {
            return Ok(message);
        }
    }
}

#[tokio::test]
async fn the_legacy_protocol_closes_a_socket_that_never_initialises() {
    let app = app().await;
    let mut socket = open(&app, "graphql-ws").await;
    assert_eq!(close_code(&mut socket).await, Some(4408));
}

#[tokio::test]
async fn the_legacy_protocol_runs_at_most_the_operation_limit_too() {
    let mut config = serve_config();
    config.websocket.ws_max_operations = 1;
    let app = spawn_app_with(config).await;
    let token = app.token(app.new_customer().await);
    let order = app.new_order(&token).await;
    let mut socket = open(&app, "graphql-ws").await;
    let init = json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {token}") } });
    send(&mut socket, init).await;
    assert_eq!(next_legacy(&mut socket).await.unwrap()["type"], "connection_ack");
    let subscription = json!({ "query": "subscription($o: ID!) { orderUpdates(orderId: $o) { version } }", "variables": { "o": order } });
    let start = |id: &str| json!({ "type": "start", "id": id, "payload": subscription });
    send(&mut socket, start("a")).await;
    let snapshot = next_legacy(&mut socket).await.unwrap();
    assert_eq!(
        (snapshot["type"].as_str(), snapshot["id"].as_str()),
        (Some("data"), Some("a")),
        "{snapshot}"
    );
    send(&mut socket, start("b")).await;
    let refused = next_legacy(&mut socket).await.unwrap();
    assert_eq!(
        (refused["type"].as_str(), refused["id"].as_str()),
        (Some("error"), Some("b")),
        "{refused}"
    );
    assert_eq!(refused["payload"][0]["extensions"]["code"], "LIMIT_EXCEEDED");

    send(&mut socket, json!({ "type": "stop", "id": "a" })).await;
    send(&mut socket, start("b")).await;
    let admitted = loop {
        let message = next_legacy(&mut socket).await.unwrap();
        if message["id"] == "b" {
            break message;
        }
    };
    assert_eq!(admitted["type"], "data", "{admitted}");
}

#[tokio::test]
async fn a_message_beyond_the_size_limit_closes_with_1009_on_both_protocols() {
    let mut config = serve_config();
    config.websocket.ws_max_message_bytes = 1024;
    let app = spawn_app_with(config).await;
    let oversized = json!({ "type": "ping", "payload": { "pad": "x".repeat(2048) } });
    let mut socket = acked(&app).await;
    send(&mut socket, oversized.clone()).await;
    assert_eq!(close_code(&mut socket).await, Some(1009));
    let mut legacy = open(&app, "graphql-ws").await;
    send(&mut legacy, oversized).await;
    assert_eq!(close_code(&mut legacy).await, Some(1009));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped_after_the_write_timeout() {
    let mut config = serve_config();
    config.websocket.ws_write_timeout = Duration::from_secs(1);
    let app = spawn_app_with(config).await;
    let socket = acked(&app).await;
    // Every ping is answered with a pong carrying its payload; this client reads none of them,
    // so the server's sends block once the socket buffers are full.
    let (mut sink, unread) = socket.split();
    let ping = json!({ "type": "ping", "payload": { "pad": "x".repeat(60 * 1024) } }).to_string();
    let flood = async {
        for sent in 0..2_000 {
            if sink.send(Message::Text(ping.clone().into())).await.is_err() {
                return sent;
            }
        }
        panic!("the server still took pings after 2,000 unanswered ones (120 MB)");
    };
    let sent = tokio::time::timeout(Duration::from_secs(30), flood)
        .await
        .expect("the server dropped the connection instead of waiting for the client forever");
    drop(unread);
    assert!(sent > 10, "the pings filled the buffers first ({sent})");
    let metrics = app.metrics().await;
    assert!(metrics.contains("ordercast_ws_dropped_total"), "{metrics}");
}
