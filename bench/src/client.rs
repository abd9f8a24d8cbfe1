//! The bench's side of the GraphQL API: queries and mutations over HTTP, and
//! subscriptions, one connection each: `graphql-transport-ws` here, multipart
//! HTTP and SSE in `streams`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use uuid::Uuid;

use crate::server::Server;
use crate::streams::{HttpSubscriber, Transport};
use crate::Ctx;

pub(crate) type Ws = WebSocketStream<TcpStream>;

// ---------------------------------------------------------------- GraphQL over HTTP

/// The change the warm-up and the fan-out make: one order's version goes up by one.
pub(crate) const SET_QUANTITY: &str =
    "mutation($o: ID!, $p: ID!, $q: Int!) { setItemQuantity(orderId: $o, productId: $p, quantity: $q) { version } }";

/// One more unit of a product in an order.
pub(crate) const ADD_ITEM: &str =
    "mutation($o: ID!, $p: ID!) { addItem(orderId: $o, productId: $p, quantity: 1) { version } }";

pub(crate) async fn gql(
    ctx_http: &reqwest::Client,
    base: &str,
    token: &str,
    query: &str,
    variables: Value,
) -> Result<Value> {
    let resp: Value = ctx_http
        .post(format!("{base}/graphql"))
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await?
        .json()
        .await?;
    if let Some(errors) = resp.get("errors") {
        bail!("GraphQL errors: {errors}");
    }
    resp.get("data").cloned().ok_or_else(|| anyhow!("no data in {resp}"))
}

/// Creates `n` orders through `server`; with `item`, each gets one unit of the first product.
pub(crate) async fn create_orders(ctx: &Ctx, server: &Server, n: usize, item: bool) -> Result<Vec<Uuid>> {
    let http = ctx.http.clone();
    let token = ctx.token.clone();
    let base = server.base.clone();
    let product = ctx.products[0];
    let ids = futures::stream::iter(0..n)
        .map(|_| {
            let (http, token, base) = (http.clone(), token.clone(), base.clone());
            async move {
                let data = gql(&http, &base, &token, "mutation { createOrder { id } }", json!({})).await?;
                let id: Uuid = data["createOrder"]["id"].as_str().unwrap_or_default().parse()?;
                if item {
                    gql(
                        &http,
                        &base,
                        &token,
                        "mutation($o: ID!, $p: ID!) { addItem(orderId: $o, productId: $p, quantity: 1) { id } }",
                        json!({ "o": id, "p": product }),
                    )
                    .await?;
                }
                Ok::<_, anyhow::Error>(id)
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    ids.into_iter().collect()
}

// ---------------------------------------------------------------- WebSocket subscriptions

/// Connects (from `source` if given), authenticates, subscribes to `order` and waits for its SNAPSHOT.
pub(crate) async fn subscribe(addr: SocketAddr, source: Option<IpAddr>, token: &str, order: Uuid) -> Result<Ws> {
    let socket = TcpSocket::new_v4()?;
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut request = format!("ws://{addr}/graphql").into_client_request()?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    // Small client buffers: the bench process holds up to tens of thousands of these.
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await?;
    let init = json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {token}")}});
    ws.send(Message::text(init.to_string())).await?;
    expect_frame(&mut ws, "connection_ack").await?;
    let subscribe = json!({"id": "1", "type": "subscribe", "payload": {
        "query": "subscription($o: ID!) { orderUpdates(orderId: $o) { version change } }",
        "variables": {"o": order}}});
    ws.send(Message::text(subscribe.to_string())).await?;
    let snapshot = expect_frame(&mut ws, "next").await?;
    if snapshot["payload"]["data"]["orderUpdates"]["change"] != "SNAPSHOT" {
        bail!("first frame is not a SNAPSHOT: {snapshot}");
    }
    Ok(ws)
}

pub(crate) async fn expect_frame(ws: &mut Ws, kind: &str) -> Result<Value> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .map_err(|_| anyhow!("timed out waiting for {kind}"))?
            .ok_or_else(|| anyhow!("closed while waiting for {kind}"))??;
        match msg {
            Message::Text(text) => {
                let frame: Value = serde_json::from_str(&text)?;
                if frame["type"] == kind {
                    return Ok(frame);
                }
                if frame["type"] == "ping" {
                    ws.send(Message::text(r#"{"type":"pong"}"#)).await?;
                    continue;
                }
                bail!("expected {kind}, got {frame}");
            }
            Message::Close(frame) => bail!("closed while waiting for {kind}: {frame:?}"),
            _ => {}
        }
    }
}

/// One subscriber, over whichever transport the run measures.
pub(crate) enum Subscriber {
    Ws(Ws),
    Http(HttpSubscriber),
}

/// Reads updates until `stop`, recording (version, arrival).
pub(crate) async fn collect(
    subscriber: Subscriber,
    stop: watch::Receiver<bool>,
    received: Arc<AtomicU64>,
) -> Vec<(i64, Instant)> {
    match subscriber {
        Subscriber::Ws(ws) => collect_ws(ws, stop, received).await,
        Subscriber::Http(stream) => collect_http(stream, stop, received).await,
    }
}

async fn collect_http(
    mut stream: HttpSubscriber,
    mut stop: watch::Receiver<bool>,
    received: Arc<AtomicU64>,
) -> Vec<(i64, Instant)> {
    let mut seen = Vec::new();
    let stopped = stop.changed();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            update = stream.next_update() => {
                let now = Instant::now();
                let Ok(Some(update)) = update else { break };
                if let Some(v) = update["version"].as_i64() {
                    seen.push((v, now));
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
    seen
}

/// Reads `next` frames until `stop`, recording (version, arrival); answers protocol pings.
async fn collect_ws(mut ws: Ws, mut stop: watch::Receiver<bool>, received: Arc<AtomicU64>) -> Vec<(i64, Instant)> {
    let mut seen = Vec::new();
    // One `changed()` for the whole run: a new one per message would contend on the watch.
    let stopped = stop.changed();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            msg = ws.next() => {
                let now = Instant::now();
                let Some(Ok(msg)) = msg else { break };
                let Message::Text(text) = msg else { continue };
                let Ok(frame) = serde_json::from_str::<Value>(&text) else { continue };
                if frame["type"] == "next" {
                    if let Some(v) = frame["payload"]["data"]["orderUpdates"]["version"].as_i64() {
                        seen.push((v, now));
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                } else if frame["type"] == "ping" {
                    let _ = ws.send(Message::text(r#"{"type":"pong"}"#)).await;
                }
            }
        }
    }
    let _ = ws.close(None).await;
    seen
}

/// Opens `orders.len()`-independent subscriptions over `--transport`: subscriber i watches
/// `orders[i % len]`. Returns the subscribers and the seconds it took.
pub(crate) async fn open_many(
    ctx: &Ctx,
    addr: SocketAddr,
    n: usize,
    orders: &[Uuid],
) -> Result<(Vec<(usize, Subscriber)>, f64)> {
    let started = Instant::now();
    let token = ctx.token.clone();
    let transport = ctx.args.transport;
    let results = futures::stream::iter(0..n)
        .map(|i| {
            let token = token.clone();
            let order = orders[i % orders.len()];
            // Past 20,000 connections, bind 127.0.0.2, 127.0.0.3, ...: one ephemeral port range each.
            // (Not below: bind() before connect() picks a port unique across all destinations, which
            // is slow with thousands of TIME_WAIT sockets left by an earlier run.)
            let source = (i >= 20_000).then(|| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (i / 20_000) as u8)));
            async move {
                let mut last = None;
                for _ in 0..3 {
                    let subscribed = match transport {
                        Transport::Ws => subscribe(addr, source, &token, order).await.map(Subscriber::Ws),
                        http => HttpSubscriber::open(addr, http, &token, order)
                            .await
                            .map(Subscriber::Http),
                    };
                    match subscribed {
                        Ok(subscriber) => return Ok((i, subscriber)),
                        Err(e) => last = Some(e),
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(last.unwrap())
            }
        })
        .buffer_unordered(ctx.args.connect_parallel)
        .collect::<Vec<Result<_>>>()
        .await;
    let elapsed = started.elapsed().as_secs_f64();
    let mut sockets = Vec::with_capacity(n);
    let mut errors = 0;
    let mut first_error = None;
    for r in results {
        match r {
            Ok(s) => sockets.push(s),
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    if errors > 0 {
        eprintln!(
            "[bench] {errors} of {n} subscriptions failed; first: {:#}",
            first_error.unwrap()
        );
    }
    Ok((sockets, elapsed))
}
