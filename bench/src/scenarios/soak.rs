//! Scenario `soak` (not a test): hostile load against one instance while a normal client keeps
//! querying it. Four attacks in turn: 10,000 subscribe attempts on one socket, 2,000 connections
//! that never finish their headers, a subscriber that never reads, 5,000 concurrent requests.
//! Prints the normal client's latency during each, what the instance refused and how fast, and
//! its memory before, at the peak and after.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{create_orders, subscribe, Ws};
use crate::server::Server;
use crate::stats::{hist, short, summary};
use crate::Ctx;

const ME: &str = "{ me { id } }";

/// The normal client: one query every 20 ms; its latencies land in the current phase's histogram.
struct Bystander {
    current: Arc<Mutex<Histogram<u64>>>,
    stop: Arc<AtomicBool>,
    failures: Arc<std::sync::atomic::AtomicU64>,
}

impl Bystander {
    fn start(ctx: &Ctx, server: &Server) -> Bystander {
        let current = Arc::new(Mutex::new(hist()));
        let stop = Arc::new(AtomicBool::new(false));
        let failures = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (http, url, token) = (ctx.http.clone(), format!("{}/graphql", server.base), ctx.token.clone());
        let (into, stopped, failed) = (current.clone(), stop.clone(), failures.clone());
        tokio::spawn(async move {
            while !stopped.load(Ordering::Relaxed) {
                let started = Instant::now();
                let answer = http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({ "query": ME }))
                    .send()
                    .await;
                match answer {
                    Ok(response) if response.status().is_success() => {
                        let micros = started.elapsed().as_micros().max(1) as u64;
                        let _ = into.lock().expect("not poisoned").record(micros);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        Bystander {
            current,
            stop,
            failures,
        }
    }

    /// The latencies since the last phase, and a fresh histogram for the next.
    fn phase(&self) -> Value {
        let taken = std::mem::replace(&mut *self.current.lock().expect("not poisoned"), hist());
        let mut report = summary(&taken);
        report["failures"] = self.failures.swap(0, Ordering::Relaxed).into();
        report
    }
}

impl Drop for Bystander {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

pub(crate) async fn soak(ctx: &mut Ctx, server: &Server) -> Result<Value> {
    let order = create_orders(ctx, server, 1, true).await?[0];
    let bystander = Bystander::start(ctx, server);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let baseline = footprint(server).await;
    let quiet = bystander.phase();
    eprintln!("[soak] baseline {baseline}; normal client {}", short(&quiet));
    // Two rounds: the first also grows what an instance keeps for later (the pool's connections,
    // buffers the allocator keeps); a leak would show as the second round ending higher.
    let mut rounds = Vec::new();
    for round in 1..=2 {
        rounds.push(attack_round(ctx, server, order, &bystander, round).await?);
    }
    drop(bystander);
    ctx.rows.push(format!(
        "| soak | normal client p99 in round 2 (10k subscribes / 2k slow headers / non-reader / 5k burst), quiet {} ms | {} / {} / {} / {} ms; RSS MiB: baseline {}, after round 1 {}, after round 2 {} |",
        quiet["p99_ms"],
        rounds[1]["normal_client"]["subscribes"]["p99_ms"],
        rounds[1]["normal_client"]["slow_headers"]["p99_ms"],
        rounds[1]["normal_client"]["non_reader"]["p99_ms"],
        rounds[1]["normal_client"]["burst"]["p99_ms"],
        baseline["rss_kib"].as_u64().unwrap_or(0) / 1024,
        rounds[0]["after"]["rss_kib"].as_u64().unwrap_or(0) / 1024,
        rounds[1]["after"]["rss_kib"].as_u64().unwrap_or(0) / 1024,
    ));
    Ok(json!({ "baseline": baseline, "quiet": quiet, "rounds": rounds }))
}

/// Every attack once, then 10 s of quiet; what the instance did and held, and the normal client.
async fn attack_round(
    ctx: &Ctx,
    server: &Server,
    order: uuid::Uuid,
    bystander: &Bystander,
    round: usize,
) -> Result<Value> {
    let mut peak_kib = server.rss_kib();
    let subscribes = many_subscribes(ctx, server, order, 10_000).await?;
    peak_kib = peak_kib.max(server.rss_kib());
    let during_subscribes = bystander.phase();
    eprintln!(
        "[soak {round}] 10,000 subscribes on one socket: {subscribes}; normal client {}",
        short(&during_subscribes)
    );

    let (slow, slow_peak) = slow_headers(server, 2_000).await?;
    peak_kib = peak_kib.max(slow_peak);
    let during_slow = bystander.phase();
    eprintln!(
        "[soak {round}] 2,000 slow-header connections: {slow}; normal client {}",
        short(&during_slow)
    );

    let non_reader = never_reads(ctx, server, order).await?;
    peak_kib = peak_kib.max(server.rss_kib());
    let during_non_reader = bystander.phase();
    eprintln!(
        "[soak {round}] a client that never reads: {non_reader}; normal client {}",
        short(&during_non_reader)
    );

    let (burst, burst_peak) = concurrent_requests(ctx, server, 5_000).await?;
    peak_kib = peak_kib.max(burst_peak);
    let during_burst = bystander.phase();
    eprintln!(
        "[soak {round}] 5,000 concurrent requests: {burst}; normal client {}",
        short(&during_burst)
    );

    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = footprint(server).await;
    let quiet_after = bystander.phase();
    eprintln!("[soak {round}] peak RSS {peak_kib} KiB; 10 s later {after}");
    Ok(json!({
        "normal_client": { "subscribes": during_subscribes, "slow_headers": during_slow,
                           "non_reader": during_non_reader, "burst": during_burst, "quiet_after": quiet_after },
        "subscribes": subscribes, "slow_headers": slow, "non_reader": non_reader, "burst": burst,
        "peak_rss_kib": peak_kib, "after": after,
    }))
}

/// The instance's RSS and what it holds for its clients (gauges from `/metrics`).
async fn footprint(server: &Server) -> Value {
    let metrics = server.metrics().await;
    let gauge = |name: &str| {
        metrics
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_whitespace().last())
            .and_then(|value| value.parse::<f64>().ok())
    };
    json!({
        "rss_kib": server.rss_kib(),
        "connections": gauge("ordercast_http_open_connections"),
        "subscriptions": gauge("ordercast_live_subscriptions"),
    })
}

/// `attempts` subscribes on one socket: all but the operation limit are refused with `error`.
async fn many_subscribes(ctx: &Ctx, server: &Server, order: uuid::Uuid, attempts: usize) -> Result<Value> {
    let mut ws: Ws = subscribe(server.addr(), None, &ctx.token, order).await?;
    let started = Instant::now();
    let query = "subscription($o: ID!) { orderUpdates(orderId: $o) { version } }";
    for id in 0..attempts {
        let message = json!({ "id": format!("s{id}"), "type": "subscribe", "payload": { "query": query, "variables": { "o": order } } });
        ws.feed(Message::text(message.to_string())).await?;
    }
    ws.flush().await?;
    let (mut admitted, mut refused) = (0usize, 0usize);
    while admitted + refused < attempts {
        let Some(message) = tokio::time::timeout(Duration::from_secs(30), ws.next()).await? else {
            break;
        };
        let Message::Text(text) = message? else { continue };
        let frame: Value = serde_json::from_str(&text)?;
        match frame["type"].as_str() {
            Some("next") => admitted += 1,
            Some("error") => refused += 1,
            _ => {}
        }
    }
    let elapsed = started.elapsed();
    let _ = ws.close(None).await;
    Ok(json!({ "attempts": attempts, "admitted": admitted, "refused": refused, "answered_in_ms": elapsed.as_millis() }))
}

/// `n` connections that send half a request head and wait; counts those the server closed
/// within its header-read timeout (+1 s).
async fn slow_headers(server: &Server, n: usize) -> Result<(Value, u64)> {
    let started = Instant::now();
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let mut tcp = TcpStream::connect(server.addr()).await?;
        tcp.write_all(b"POST /graphql HTTP/1.1\r\nHost: ordercast\r\n").await?;
        held.push(tcp);
    }
    let peak = server.rss_kib();
    let waits = held.into_iter().map(|mut tcp| {
        tokio::spawn(async move {
            let mut buffer = [0u8; 256];
            let closed = tokio::time::timeout(Duration::from_secs(8), async {
                loop {
                    match tcp.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
            })
            .await;
            closed.is_ok()
        })
    });
    let closed = futures::future::join_all(waits)
        .await
        .into_iter()
        .filter(|r| matches!(r, Ok(true)))
        .count();
    let report = json!({ "connections": n, "closed_by_the_server": closed, "all_closed_after_s": started.elapsed().as_secs_f64() });
    Ok((report, peak))
}

/// A subscriber that floods pings and reads nothing: how long until the server drops it.
async fn never_reads(ctx: &Ctx, server: &Server, order: uuid::Uuid) -> Result<Value> {
    let ws = subscribe(server.addr(), None, &ctx.token, order).await?;
    let (mut sink, unread) = ws.split();
    let ping = json!({ "type": "ping", "payload": { "pad": "x".repeat(60 * 1024) } }).to_string();
    let started = Instant::now();
    let mut sent = 0usize;
    let dropped = tokio::time::timeout(Duration::from_secs(60), async {
        while sink.send(Message::text(ping.clone())).await.is_ok() {
            sent += 1;
        }
    })
    .await
    .is_ok();
    drop(unread);
    Ok(json!({ "pings_sent": sent, "dropped_by_the_server": dropped, "after_s": started.elapsed().as_secs_f64() }))
}

/// `n` queries at once, each on its own connection: admitted ones are answered, the rest are
/// refused at once with 503.
async fn concurrent_requests(ctx: &Ctx, server: &Server, n: usize) -> Result<(Value, u64)> {
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build()?;
    let url = format!("{}/graphql", server.base);
    let gate = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (http, url, token, gate) = (http.clone(), url.clone(), ctx.token.clone(), gate.clone());
            tokio::spawn(async move {
                gate.wait().await;
                let started = Instant::now();
                let status = http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({ "query": ME }))
                    .send()
                    .await
                    .map(|r| r.status().as_u16());
                (status, started.elapsed())
            })
        })
        .collect();
    let peak_probe = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        server.rss_kib()
    };
    let (results, peak) = tokio::join!(futures::future::join_all(tasks), peak_probe);
    let (mut ok, mut refused, mut failed) = (hist(), hist(), 0usize);
    for result in results {
        match result? {
            (Ok(200), took) => ok.record(took.as_micros().max(1) as u64)?,
            (Ok(503), took) => refused.record(took.as_micros().max(1) as u64)?,
            _ => failed += 1,
        }
    }
    let report = json!({ "requests": n, "answered": summary(&ok), "refused": summary(&refused), "failed": failed });
    Ok((report, peak))
}
