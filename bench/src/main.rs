//! `ordercast-bench`: measures ordercast on the real stack (Postgres, Debezium, Kafka).
//!
//! The tool starts the ordercast instances it measures (`ordercast serve`) and always stops
//! them (also on error and Ctrl-C). Scenarios: `latency`, `writes`, `fanout`, `connections`
//! (see BENCHMARKS.md). Each writes `<out-dir>/<scenario>.json` and adds rows to the table
//! printed at the end.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::builder::BoolishValueParser;
use clap::{ArgAction, Parser};
use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use sqlx::Connection;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use uuid::Uuid;

type Ws = WebSocketStream<TcpStream>;

#[derive(Parser, Debug, Clone)]
#[command(about = "Benchmarks ordercast instances it starts itself against the running stack")]
struct Args {
    /// Run every scenario for a few seconds only (smoke check).
    #[arg(long, env = "ORDERCAST_BENCH_QUICK", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    quick: bool,
    /// Scenarios to run, in order.
    #[arg(long, value_delimiter = ',', default_value = "latency,writes,fanout,connections")]
    scenarios: Vec<String>,
    /// The ordercast binary to start.
    #[arg(long, default_value = "target/release/ordercast")]
    server_bin: PathBuf,
    #[arg(long, default_value = "target/bench")]
    out_dir: PathBuf,
    /// Instances listen on base-port, base-port+1, base-port+2.
    #[arg(long, default_value_t = 18180)]
    base_port: u16,
    #[arg(long, default_value = "alice@example.com")]
    customer: String,
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://ordercast:ordercast@127.0.0.1:55432/ordercast"
    )]
    database_url: String,
    /// Seconds each timed run lasts (quick: 3).
    #[arg(long, default_value_t = 15)]
    duration_secs: u64,
    /// Seconds of untimed writes before the first scenario, so that freshly started JVMs (Kafka,
    /// Connect) have compiled their hot paths and Postgres has its pages cached (quick: 0).
    #[arg(long, default_value_t = 20)]
    warmup_secs: u64,
    /// latency: mutations per second, open loop.
    #[arg(long, value_delimiter = ',', default_value = "50,500,2000")]
    rates: Vec<u64>,
    /// latency: orders the mutations are spread over, one subscriber (connection) each.
    #[arg(long, default_value_t = 200)]
    orders: usize,
    /// writes: concurrent writers.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    concurrency: Vec<usize>,
    /// fanout: cases `SUBSCRIBERSxORDERS` (one WebSocket connection per subscriber, spread evenly
    /// over the orders); each change touches every order once.
    #[arg(long, value_delimiter = ',', default_value = "1000x1,10000x1,10000x1000", value_parser = parse_fanout_case)]
    fanout: Vec<FanoutCase>,
    /// fanout: changes per run (each waits for every subscriber).
    #[arg(long, default_value_t = 5)]
    fanout_rounds: usize,
    /// connections: idle authenticated subscriptions to open.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// WebSocket handshakes in flight at once while opening connections.
    #[arg(long, default_value_t = 64)]
    connect_parallel: usize,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let nofile = raise_nofile();
    eprintln!("[bench] RLIMIT_NOFILE = {nofile}");
    std::fs::create_dir_all(&args.out_dir)?;
    tokio::select! {
        result = run(args) => result,
        _ = tokio::signal::ctrl_c() => {
            // Dropping `run` drops the servers, whose children are killed on drop.
            eprintln!("[bench] interrupted; servers stopped");
            std::process::exit(130);
        }
    }
}

/// Raises the open-file limit as far as the kernel allows; children inherit it.
fn raise_nofile() -> u64 {
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        let want = 200_000;
        if lim.rlim_max < want {
            let raised = libc::rlimit {
                rlim_cur: want,
                rlim_max: want,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return want;
            }
        }
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        lim.rlim_cur
    }
}

struct Ctx {
    args: Args,
    token: String,
    customer_id: Uuid,
    products: Vec<Uuid>,
    http: reqwest::Client,
    rows: Vec<String>,
}

async fn run(args: Args) -> Result<()> {
    let quick = args.quick;
    let token = mint_token(&args).await?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&args.database_url)
        .await
        .context("connecting to Postgres")?;
    let customer_id: Uuid = sqlx::query_scalar("SELECT id FROM customers WHERE email = $1")
        .bind(&args.customer)
        .fetch_one(&pool)
        .await
        .context("the customer (run `ordercast seed`)")?;
    let products: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM products WHERE available ORDER BY sku")
        .fetch_all(&pool)
        .await?;
    pool.close().await;
    if products.len() < 2 {
        bail!("need at least 2 available products (run `ordercast seed`)");
    }
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true)
        .build()?;
    let mut ctx = Ctx {
        args: args.clone(),
        token,
        customer_id,
        products,
        http,
        rows: Vec::new(),
    };
    let s1 = Server::start(&ctx, args.base_port, "instance1").await?;
    let s2 = Server::start(&ctx, args.base_port + 1, "instance2").await?;
    eprintln!(
        "[bench] instance 1 on {} (pid {}), instance 2 on {} (pid {})",
        s1.port, s1.pid, s2.port, s2.pid
    );
    if !quick && args.warmup_secs > 0 {
        warm_up(&ctx, &s1, &s2, args.warmup_secs).await?;
    }
    for scenario in &args.scenarios {
        let started = Instant::now();
        let report = match scenario.as_str() {
            "latency" => latency(&mut ctx, &s1, &s2).await?,
            "writes" => writes(&mut ctx, &s1).await?,
            "fanout" => fanout(&mut ctx, &s1, &s2).await?,
            "connections" => connections(&mut ctx, &s1).await?,
            other => bail!("unknown scenario {other}"),
        };
        let report = json!({
            "scenario": scenario, "quick": quick, "machine": machine(),
            "elapsed_s": started.elapsed().as_secs_f64(), "results": report,
        });
        let path = args.out_dir.join(format!("{scenario}.json"));
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
        eprintln!("[bench] wrote {}", path.display());
    }
    s1.stop().await;
    s2.stop().await;
    println!();
    println!("| scenario | case | result |");
    println!("| --- | --- | --- |");
    for row in &ctx.rows {
        println!("{row}");
    }
    Ok(())
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = meminfo.lines().next().map(str::to_owned);
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": model, "memory": mem,
    })
}

async fn mint_token(args: &Args) -> Result<String> {
    let out = tokio::process::Command::new(&args.server_bin)
        .args(["token", "--customer", &args.customer, "--ttl", "86400"])
        .output()
        .await
        .with_context(|| format!("running {}", args.server_bin.display()))?;
    if !out.status.success() {
        bail!("ordercast token failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

// ---------------------------------------------------------------- servers

struct Server {
    child: tokio::process::Child,
    port: u16,
    pid: u32,
    base: String,
    http: reqwest::Client,
}

impl Server {
    async fn start(ctx: &Ctx, port: u16, name: &str) -> Result<Server> {
        let log = std::fs::File::create(ctx.args.out_dir.join(format!("{name}.log")))?;
        let mut cmd = tokio::process::Command::new(&ctx.args.server_bin);
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "warn");
        }
        let mut child = cmd.spawn().context("starting ordercast serve")?;
        let pid = child.id().ok_or_else(|| anyhow!("no pid"))?;
        let server = Server {
            child: {
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    let ready = ctx.http.get(format!("http://127.0.0.1:{port}/readyz")).send().await;
                    if matches!(&ready, Ok(r) if r.status().is_success()) {
                        break;
                    }
                    if let Some(status) = child.try_wait()? {
                        bail!("ordercast on {port} exited: {status} (see {name}.log)");
                    }
                    if Instant::now() > deadline {
                        bail!("ordercast on {port} not ready after 60 s");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                child
            },
            port,
            pid,
            base: format!("http://127.0.0.1:{port}"),
            http: ctx.http.clone(),
        };
        Ok(server)
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Waits (at most 60 s) until this instance's CDC consumer has no lag, so that one run's
    /// backlog (Debezium, Kafka, consumers) does not load the machine during the next one.
    async fn settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        tokio::time::sleep(Duration::from_secs(2)).await;
        while Instant::now() < deadline {
            let text = self.metrics().await;
            let lag: f64 = text
                .lines()
                .filter(|l| l.starts_with("ordercast_cdc_consumer_lag_messages"))
                .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
                .sum();
            if lag <= 0.0 {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn metrics(&self) -> String {
        match self.http.get(format!("{}/metrics", self.base)).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// SIGTERM (graceful: WebSockets get 1001), then SIGKILL after 10 s.
    async fn stop(mut self) {
        // SAFETY: signalling our own child by its pid.
        unsafe {
            libc::kill(self.pid as i32, libc::SIGTERM);
        }
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

// ---------------------------------------------------------------- GraphQL over HTTP

/// The change the warm-up and the fan-out make: one order's version goes up by one.
const SET_QUANTITY: &str =
    "mutation($o: ID!, $p: ID!, $q: Int!) { setItemQuantity(orderId: $o, productId: $p, quantity: $q) { version } }";

async fn gql(ctx_http: &reqwest::Client, base: &str, token: &str, query: &str, variables: Value) -> Result<Value> {
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
async fn create_orders(ctx: &Ctx, server: &Server, n: usize, item: bool) -> Result<Vec<Uuid>> {
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

/// Untimed setItemQuantity mutations at 200/s over 50 orders for `secs` seconds, then waits
/// until instance 2 has consumed the backlog.
async fn warm_up(ctx: &Ctx, s1: &Server, s2: &Server, secs: u64) -> Result<()> {
    const RATE: u64 = 200;
    eprintln!("[bench] warming up the stack: {RATE} writes/s for {secs} s");
    let orders = create_orders(ctx, s1, 50, true).await?;
    let period = Duration::from_secs_f64(1.0 / RATE as f64);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..(RATE * secs) as usize {
        tokio::time::sleep_until((started + period * k as u32).into()).await;
        let (http, base, token) = (ctx.http.clone(), s1.base.clone(), ctx.token.clone());
        let vars = json!({ "o": orders[k % orders.len()], "p": ctx.products[0], "q": 1 + k % 999 });
        tasks.push(tokio::spawn(async move {
            gql(&http, &base, &token, SET_QUANTITY, vars).await
        }));
    }
    let failed = futures::future::join_all(tasks)
        .await
        .into_iter()
        .filter(|r| !matches!(r, Ok(Ok(_))))
        .count();
    if failed > 0 {
        eprintln!("[bench] warm-up: {failed} writes failed");
    }
    s2.settle().await;
    Ok(())
}

// ---------------------------------------------------------------- WebSocket subscriptions

/// Connects (from `source` if given), authenticates, subscribes to `order` and waits for its SNAPSHOT.
async fn subscribe(addr: SocketAddr, source: Option<IpAddr>, token: &str, order: Uuid) -> Result<Ws> {
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

async fn expect_frame(ws: &mut Ws, kind: &str) -> Result<Value> {
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

/// Reads `next` frames until `stop`, recording (version, arrival); answers protocol pings.
async fn collect(mut ws: Ws, mut stop: watch::Receiver<bool>, received: Arc<AtomicU64>) -> Vec<(i64, Instant)> {
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

/// Opens `orders.len()`-independent subscriptions: subscriber i watches `orders[i % len]`.
/// Returns the sockets and the seconds it took.
async fn open_many(ctx: &Ctx, addr: SocketAddr, n: usize, orders: &[Uuid]) -> Result<(Vec<(usize, Ws)>, f64)> {
    let started = Instant::now();
    let token = ctx.token.clone();
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
                    match subscribe(addr, source, &token, order).await {
                        Ok(ws) => return Ok((i, ws)),
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

// ---------------------------------------------------------------- statistics

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds")
}

/// Percentiles of a microsecond histogram, in milliseconds.
fn summary(h: &Histogram<u64>) -> Value {
    let ms = |v: u64| (v as f64 / 1000.0 * 100.0).round() / 100.0;
    if h.is_empty() {
        return json!({ "count": 0 });
    }
    json!({
        "count": h.len(),
        "p50_ms": ms(h.value_at_quantile(0.50)),
        "p90_ms": ms(h.value_at_quantile(0.90)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "max_ms": ms(h.max()),
    })
}

fn short(s: &Value) -> String {
    format!(
        "p50 {} / p90 {} / p99 {} / max {} ms",
        s["p50_ms"], s["p90_ms"], s["p99_ms"], s["max_ms"]
    )
}

/// Prometheus histogram `name`: cumulative bucket counts by upper bound, plus count and sum.
fn prom_histogram(text: &str, name: &str) -> (Vec<(f64, f64)>, f64, f64) {
    let mut buckets = Vec::new();
    let (mut count, mut sum) = (0.0, 0.0);
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(&format!("{name}_bucket{{le=\"")) {
            let mut parts = rest.splitn(2, "\"}");
            let le = parts.next().unwrap_or_default();
            let value = parts.next().unwrap_or_default().trim();
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap_or(f64::NAN)
            };
            buckets.push((le, value.parse().unwrap_or(0.0)));
        } else if let Some(v) = line.strip_prefix(&format!("{name}_count ")) {
            count = v.trim().parse().unwrap_or(0.0);
        } else if let Some(v) = line.strip_prefix(&format!("{name}_sum ")) {
            sum = v.trim().parse().unwrap_or(0.0);
        }
    }
    (buckets, count, sum)
}

/// The stages of a committed change, as the server's histograms measure them from `source.ts_ms`
/// (the Postgres commit, millisecond resolution).
const STAGES: [(&str, &str, &str); 3] = [
    (
        "commit_to_kafka",
        "ordercast_cdc_commit_to_kafka_seconds",
        "to the Kafka record timestamp: Debezium reading the WAL and Connect producing",
    ),
    (
        "commit_to_consume",
        "ordercast_cdc_commit_to_consume_seconds",
        "to this instance decoding the record: adds the broker and the consumer fetch",
    ),
    (
        "commit_to_push",
        "ordercast_live_commit_to_push_seconds",
        "to the subscription stream yielding it: adds the hub and the queue; before GraphQL resolution and the socket write",
    ),
];

/// Every stage's histogram between two scrapes of one instance.
fn server_breakdown(before: &str, after: &str) -> Value {
    STAGES
        .iter()
        .map(|(key, name, what)| {
            let mut stage = stage_histogram(before, after, name);
            stage["what"] = json!(format!("source.ts_ms {what}"));
            (key.to_string(), stage)
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// One server histogram between two scrapes: count, mean and bucket-bound quantiles.
fn stage_histogram(before: &str, after: &str, name: &str) -> Value {
    let (b0, c0, s0) = prom_histogram(before, name);
    let (b1, c1, s1) = prom_histogram(after, name);
    let count = c1 - c0;
    if count <= 0.0 {
        return json!({ "count": 0 });
    }
    let delta: Vec<(f64, f64)> = b1
        .iter()
        .map(|(le, v)| {
            let old = b0.iter().find(|(l, _)| l == le).map(|(_, v)| *v).unwrap_or(0.0);
            (*le, v - old)
        })
        .collect();
    let quantile = |q: f64| {
        delta
            .iter()
            .find(|(_, c)| *c >= q * count)
            .map(|(le, _)| {
                if le.is_finite() {
                    json!(le * 1000.0)
                } else {
                    json!("+Inf")
                }
            })
            .unwrap_or(Value::Null)
    };
    json!({
        "count": count,
        "mean_ms": ((s1 - s0) / count * 1000.0 * 100.0).round() / 100.0,
        "p50_le_ms": quantile(0.5), "p90_le_ms": quantile(0.9), "p99_le_ms": quantile(0.99),
        "buckets_ms": delta.iter().map(|(le, c)| json!([if le.is_finite() { json!(le * 1000.0) } else { json!("+Inf") }, c])).collect::<Vec<_>>(),
    })
}

// ---------------------------------------------------------------- scenario 1: latency

async fn latency(ctx: &mut Ctx, s1: &Server, s2: &Server) -> Result<Value> {
    let secs = if ctx.args.quick { 3 } else { ctx.args.duration_secs };
    let mut results = Vec::new();
    for &rate in &ctx.args.rates.clone() {
        let n = ctx.args.orders;
        eprintln!("[latency] {rate}/s for {secs} s over {n} orders: preparing");
        let orders = create_orders(ctx, s1, n, true).await?;
        s2.settle().await;
        let (sockets, _) = open_many(ctx, s2.addr(), n, &orders).await?;
        if sockets.len() != n {
            bail!("only {} of {n} subscriptions opened", sockets.len());
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        let received = Arc::new(AtomicU64::new(0));
        let collectors: Vec<_> = sockets
            .into_iter()
            .map(|(i, ws)| (i, tokio::spawn(collect(ws, stop_rx.clone(), received.clone()))))
            .collect();
        let metrics_before = s2.metrics().await;

        let total = (rate * secs) as usize;
        let period = Duration::from_secs_f64(1.0 / rate as f64);
        let started = Instant::now();
        let mut tasks = Vec::with_capacity(total);
        let mut per_order = vec![0usize; n];
        for k in 0..total {
            tokio::time::sleep_until((started + period * k as u32).into()).await;
            let o = k % n;
            let step = per_order[o];
            per_order[o] += 1;
            // The last mutation of each order cancels it; before that setItemQuantity and addItem alternate.
            let (op, query, vars) = if k + n >= total {
                (
                    "cancelOrder",
                    "mutation($o: ID!) { cancelOrder(orderId: $o, reason: \"bench\") { id version } }",
                    json!({ "o": orders[o] }),
                )
            } else if step % 2 == 0 {
                (
                    "setItemQuantity",
                    "mutation($o: ID!, $p: ID!, $q: Int!) { setItemQuantity(orderId: $o, productId: $p, quantity: $q) { id version } }",
                    json!({ "o": orders[o], "p": ctx.products[0], "q": 1 + (step / 2) % 999 }),
                )
            } else {
                let p = ctx.products[1 + (step / 2) % (ctx.products.len() - 1)];
                (
                    "addItem",
                    "mutation($o: ID!, $p: ID!) { addItem(orderId: $o, productId: $p, quantity: 1) { id version } }",
                    json!({ "o": orders[o], "p": p }),
                )
            };
            let (http, base, token) = (ctx.http.clone(), s1.base.clone(), ctx.token.clone());
            tasks.push(tokio::spawn(async move {
                let t0 = Instant::now();
                let result = gql(&http, &base, &token, query, vars).await;
                let t1 = Instant::now();
                let version =
                    result.and_then(|d| d[op]["version"].as_i64().ok_or_else(|| anyhow!("no version in {d}")));
                (o, version, t0, t1)
            }));
        }
        let send_elapsed = started.elapsed().as_secs_f64();
        let mut sent = Vec::with_capacity(total);
        let mut errors = 0usize;
        let mut first_error = None;
        for t in tasks {
            let (o, version, t0, t1) = t.await?;
            match version {
                Ok(v) => sent.push((o, v, t0, t1)),
                Err(e) => {
                    errors += 1;
                    first_error.get_or_insert(format!("{e:#}"));
                }
            }
        }
        let all_done = started.elapsed().as_secs_f64();
        // Wait (at most 10 s) for the last frames.
        let deadline = Instant::now() + Duration::from_secs(10);
        while received.load(Ordering::Relaxed) < sent.len() as u64 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let metrics_after = s2.metrics().await;
        stop_tx.send(true)?;
        let mut arrivals: HashMap<(usize, i64), Instant> = HashMap::new();
        for (i, c) in collectors {
            for (v, at) in c.await? {
                arrivals.entry((i, v)).or_insert(at);
            }
        }
        let mut e2e = hist();
        let mut http_h = hist();
        let mut missing = 0;
        let mut before_response = 0;
        for (o, v, t0, t1) in &sent {
            http_h.record(t1.duration_since(*t0).as_micros().max(1) as u64)?;
            match arrivals.get(&(*o, *v)) {
                Some(at) => {
                    e2e.record(at.saturating_duration_since(*t0).as_micros().max(1) as u64)?;
                    if at < t1 {
                        before_response += 1;
                    }
                }
                None => missing += 1,
            }
        }
        let e2e_s = summary(&e2e);
        let server = server_breakdown(&metrics_before, &metrics_after);
        let achieved = sent.len() as f64 / all_done;
        eprintln!(
            "[latency] {rate}/s: achieved {achieved:.0}/s, {errors} errors, {missing} missing, A→B {}",
            short(&e2e_s)
        );
        ctx.rows.push(format!(
            "| latency | {rate}/s target, {achieved:.0}/s achieved, {n} orders | A→B {}; HTTP {}; server p50/p99 ≤ ms: commit→Kafka {}/{}, →consumed {}/{}, →pushed {}/{}; errors {errors}, missing {missing} |",
            short(&e2e_s),
            short(&summary(&http_h)),
            server["commit_to_kafka"]["p50_le_ms"],
            server["commit_to_kafka"]["p99_le_ms"],
            server["commit_to_consume"]["p50_le_ms"],
            server["commit_to_consume"]["p99_le_ms"],
            server["commit_to_push"]["p50_le_ms"],
            server["commit_to_push"]["p99_le_ms"],
        ));
        results.push(json!({
            "target_rate": rate, "orders": n, "duration_s": secs,
            "planned": total, "ok": sent.len(), "errors": errors, "first_error": first_error,
            "achieved_rate": achieved, "issue_elapsed_s": send_elapsed,
            "missing_frames": missing, "frames_before_http_response": before_response,
            "a_to_b": e2e_s, "http_response": summary(&http_h), "server_stages": server,
        }));
    }
    Ok(json!(results))
}

// ---------------------------------------------------------------- scenario 2: writes

const ORDERS_PER_WRITER: usize = 4;

async fn writes(ctx: &mut Ctx, s1: &Server) -> Result<Value> {
    let secs = if ctx.args.quick { 3 } else { ctx.args.duration_secs };
    let mut results = Vec::new();
    for &c in &ctx.args.concurrency.clone() {
        eprintln!("[writes] concurrency {c}: GraphQL");
        let orders = create_orders(ctx, s1, c * ORDERS_PER_WRITER, false).await?;
        s1.settle().await;
        let gql_run = run_writers(c, secs, {
            let (http, base, token, products) =
                (ctx.http.clone(), s1.base.clone(), ctx.token.clone(), ctx.products.clone());
            move |w: usize, i: usize| {
                let (http, base, token) = (http.clone(), base.clone(), token.clone());
                let order = orders[w * ORDERS_PER_WRITER + i % ORDERS_PER_WRITER];
                let product = products[(i / ORDERS_PER_WRITER) % products.len()];
                async move {
                    gql(
                        &http,
                        &base,
                        &token,
                        "mutation($o: ID!, $p: ID!) { addItem(orderId: $o, productId: $p, quantity: 1) { id version totalCents items { quantity } } }",
                        json!({ "o": order, "p": product }),
                    )
                    .await
                    .map(|_| ())
                }
            }
        })
        .await?;

        eprintln!("[writes] concurrency {c}: raw SQL");
        let orders = create_orders(ctx, s1, c * ORDERS_PER_WRITER, false).await?;
        s1.settle().await;
        // One dedicated connection per writer, like pgbench's clients.
        let mut conns = Vec::with_capacity(c);
        for _ in 0..c {
            let conn = sqlx::PgConnection::connect(&ctx.args.database_url).await?;
            conns.push(Arc::new(tokio::sync::Mutex::new(conn)));
        }
        let raw_run = run_writers(c, secs, {
            let (conns, products, customer) = (conns.clone(), ctx.products.clone(), ctx.customer_id);
            move |w: usize, i: usize| {
                let conn = conns[w].clone();
                let order = orders[w * ORDERS_PER_WRITER + i % ORDERS_PER_WRITER];
                let product = products[(i / ORDERS_PER_WRITER) % products.len()];
                async move { raw_add_item(&mut *conn.lock().await, customer, order, product).await }
            }
        })
        .await?;
        drop(conns);

        let ratio = gql_run.rate / raw_run.rate;
        eprintln!(
            "[writes] c={c}: GraphQL {:.0}/s, raw {:.0}/s, ratio {:.2}",
            gql_run.rate, raw_run.rate, ratio
        );
        ctx.rows.push(format!(
            "| writes | addItem, concurrency {c} | GraphQL {:.0}/s (p99 {} ms), raw SQL {:.0}/s (p99 {} ms): {:.0}% of raw |",
            gql_run.rate,
            gql_run.latency["p99_ms"],
            raw_run.rate,
            raw_run.latency["p99_ms"],
            ratio * 100.0
        ));
        results.push(json!({
            "concurrency": c, "duration_s": secs,
            "graphql": gql_run.to_json(), "raw_sql": raw_run.to_json(), "ratio_graphql_over_raw": ratio,
        }));
    }
    Ok(json!(results))
}

/// The transaction `db::orders::add_item` runs, as plain SQL over one sqlx connection.
/// (sqlx caches the prepared statements per connection, as SeaORM's pool does.)
async fn raw_add_item(conn: &mut sqlx::PgConnection, customer: Uuid, order: Uuid, product: Uuid) -> Result<()> {
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT * FROM orders WHERE id = $1 AND customer_id = $2 FOR UPDATE")
        .bind(order)
        .bind(customer)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| anyhow!("order not found"))?;
    sqlx::query(
        "INSERT INTO order_items (id, order_id, product_id, quantity) VALUES ($1, $2, $3, 1) \
         ON CONFLICT (order_id, product_id) DO UPDATE SET quantity = order_items.quantity + EXCLUDED.quantity",
    )
    .bind(Uuid::now_v7())
    .bind(order)
    .bind(product)
    .execute(&mut *tx)
    .await?;
    sqlx::query("SELECT * FROM orders WHERE id = $1")
        .bind(order)
        .fetch_one(&mut *tx)
        .await?;
    sqlx::query(
        "SELECT i.*, p.* FROM order_items i LEFT JOIN products p ON i.product_id = p.id \
         WHERE i.order_id IN ($1) ORDER BY i.created_at, i.id",
    )
    .bind(order)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

struct WriteRun {
    rate: f64,
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    latency: Value,
}

impl WriteRun {
    fn to_json(&self) -> Value {
        json!({ "per_second": self.rate, "ok": self.ok, "errors": self.errors,
                "first_error": self.first_error, "latency": self.latency })
    }
}

/// `c` closed-loop writers for `secs` seconds; writer w's i-th call is `op(w, i)`.
async fn run_writers<F, Fut>(c: usize, secs: u64, op: F) -> Result<WriteRun>
where
    F: Fn(usize, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let workers: Vec<_> = (0..c)
        .map(|w| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut h = hist();
                let (mut ok, mut errors, mut first_error) = (0u64, 0u64, None);
                let mut i = 0;
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    match op(w, i).await {
                        Ok(()) => {
                            ok += 1;
                            let _ = h.record(t0.elapsed().as_micros().max(1) as u64);
                        }
                        Err(e) => {
                            errors += 1;
                            first_error.get_or_insert(format!("{e:#}"));
                        }
                    }
                    i += 1;
                }
                (h, ok, errors, first_error)
            })
        })
        .collect();
    let mut total = hist();
    let (mut ok, mut errors, mut first_error) = (0, 0, None);
    for w in workers {
        let (h, o, e, f) = w.await?;
        total.add(&h)?;
        ok += o;
        errors += e;
        if first_error.is_none() {
            first_error = f;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(WriteRun {
        rate: ok as f64 / elapsed,
        ok,
        errors,
        first_error,
        latency: summary(&total),
    })
}

// ---------------------------------------------------------------- scenario 3: fan-out

async fn fanout(ctx: &mut Ctx, s1: &Server, s2: &Server) -> Result<Value> {
    let mut results = Vec::new();
    let rounds = if ctx.args.quick { 2 } else { ctx.args.fanout_rounds };
    for case in ctx.args.fanout.clone() {
        let n = if ctx.args.quick {
            case.subscribers.min(1000)
        } else {
            case.subscribers
        };
        let order_count = case.orders.clamp(1, n);
        eprintln!("[fanout] {n} subscribers of {order_count} order(s) on instance 2: connecting");
        let orders = create_orders(ctx, s1, order_count, true).await?;
        let rss_before = s2.rss_kib();
        let (sockets, connect_s) = open_many(ctx, s2.addr(), n, &orders).await?;
        let opened = sockets.len();
        let rss_after = s2.rss_kib();
        eprintln!("[fanout] {opened} subscribed in {connect_s:.1} s");
        let (stop_tx, stop_rx) = watch::channel(false);
        let received = Arc::new(AtomicU64::new(0));
        let collectors: Vec<_> = sockets
            .into_iter()
            .map(|(_, ws)| tokio::spawn(collect(ws, stop_rx.clone(), received.clone())))
            .collect();
        let metrics_before = s2.metrics().await;
        let mut sends = Vec::new();
        for r in 0..rounds {
            // Every order went through the same mutations, so round r gives each the same version.
            let t0 = Instant::now();
            let versions = futures::stream::iter(orders.iter().copied())
                .map(|order| {
                    gql(
                        &ctx.http,
                        &s1.base,
                        &ctx.token,
                        SET_QUANTITY,
                        json!({ "o": order, "p": ctx.products[0], "q": 2 + r }),
                    )
                })
                .buffer_unordered(64)
                .map(|data| data.map(|d| d["setItemQuantity"]["version"].as_i64().unwrap_or_default()))
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect::<Result<Vec<_>>>()?;
            let version = versions[0];
            if versions.iter().any(|v| *v != version) {
                bail!("fan-out orders diverged: versions {versions:?}");
            }
            sends.push((version, t0));
            let want = (opened * (r + 1)) as u64;
            let deadline = Instant::now() + Duration::from_secs(30);
            while received.load(Ordering::Relaxed) < want && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let metrics_after = s2.metrics().await;
        stop_tx.send(true)?;
        let mut per_round: Vec<Vec<Instant>> = vec![Vec::new(); rounds];
        for c in collectors {
            for (v, at) in c.await? {
                if let Some(r) = sends.iter().position(|(sv, _)| *sv == v) {
                    per_round[r].push(at);
                }
            }
        }
        let mut round_reports = Vec::new();
        let mut all = hist();
        let mut lasts = Vec::new();
        for (r, arrivals) in per_round.iter().enumerate() {
            let t0 = sends[r].1;
            let mut h = hist();
            let mut first = None::<Duration>;
            for at in arrivals {
                let d = at.saturating_duration_since(t0);
                first = Some(first.map_or(d, |f| f.min(d)));
                h.record(d.as_micros().max(1) as u64)?;
            }
            all.add(&h)?;
            let last_ms = h.max() as f64 / 1000.0;
            let first_ms = first.map(|f| f.as_secs_f64() * 1000.0).unwrap_or(0.0);
            lasts.push(last_ms);
            let spread_s = (last_ms - first_ms).max(0.001) / 1000.0;
            round_reports.push(json!({
                "version": sends[r].0, "delivered": arrivals.len(), "missing": opened - arrivals.len(),
                "first_ms": first_ms, "last_ms": last_ms, "across_subscribers": summary(&h),
                "messages_per_s_first_to_last": arrivals.len() as f64 / spread_s,
                "messages_per_s_from_send": arrivals.len() as f64 / (last_ms / 1000.0),
            }));
        }
        lasts.sort_by(f64::total_cmp);
        let median_last = lasts[lasts.len() / 2];
        let s = summary(&all);
        let rate = round_reports
            .iter()
            .map(|r| r["messages_per_s_from_send"].as_f64().unwrap_or(0.0))
            .fold(0.0, f64::max);
        eprintln!("[fanout] {n}: last subscriber after {lasts:?} ms; {}", short(&s));
        ctx.rows.push(format!(
            "| fanout | {opened} subscribers (own connection each), {order_count} order(s), {rounds} changes | last one: median {median_last:.1} ms (all rounds {lasts:?}); across subscribers {}; up to {rate:.0} msgs/s; subscribed at {:.0}/s |",
            short(&s),
            opened as f64 / connect_s
        ));
        results.push(json!({
            "subscribers": n, "orders": order_count, "opened": opened, "connect_s": connect_s,
            "subscribe_per_s": opened as f64 / connect_s,
            "server_rss_kib_before": rss_before, "server_rss_kib_after": rss_after,
            "rounds": round_reports, "last_subscriber_ms": lasts, "across_all_rounds": s,
            "server_stages": server_breakdown(&metrics_before, &metrics_after),
        }));
        // Let instance 2 drop the closed subscriptions before the next run.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Ok(json!(results))
}

/// A fan-out case: `subscribers` connections spread evenly over `orders` orders.
#[derive(Debug, Clone, Copy)]
struct FanoutCase {
    subscribers: usize,
    orders: usize,
}

fn parse_fanout_case(text: &str) -> Result<FanoutCase, String> {
    let (subscribers, orders) = text.split_once('x').unwrap_or((text, "1"));
    let number = |s: &str| {
        s.trim()
            .parse::<usize>()
            .map_err(|e| format!("`{text}`: {e} (want SUBSCRIBERSxORDERS)"))
    };
    Ok(FanoutCase {
        subscribers: number(subscribers)?,
        orders: number(orders)?,
    })
}

// ---------------------------------------------------------------- scenario 4: idle connections

async fn connections(ctx: &mut Ctx, s1: &Server) -> Result<Value> {
    let n = if ctx.args.quick { 1000 } else { ctx.args.connections };
    // A fresh instance, so that its RSS growth is the subscriptions' alone.
    let s3 = Server::start(ctx, ctx.args.base_port + 2, "instance3").await?;
    let result = async {
        let orders = create_orders(ctx, s1, 100, true).await?;
        // Warm up allocator and pools with a few subscriptions, then measure from there.
        let (warm, _) = open_many(ctx, s3.addr(), 64, &orders).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss0 = s3.rss_kib();
        eprintln!("[connections] opening {n} idle subscriptions on a fresh instance (RSS {rss0} KiB)");
        let (sockets, connect_s) = open_many(ctx, s3.addr(), n, &orders).await?;
        let opened = sockets.len();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let rss1 = s3.rss_kib();
        let metrics = s3.metrics().await;
        let active = metrics
            .lines()
            .find(|l| l.starts_with("ordercast_live_subscriptions "))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok());
        let per_sub = (rss1.saturating_sub(rss0)) as f64 * 1024.0 / opened.max(1) as f64;
        let cps = opened as f64 / connect_s;
        eprintln!(
            "[connections] {opened} open in {connect_s:.1} s ({cps:.0}/s); RSS {rss0} → {rss1} KiB: {:.1} KB per subscription",
            per_sub / 1000.0
        );
        ctx.rows.push(format!(
            "| connections | {opened} idle subscriptions (own connection each) | {:.1} KB server RSS per subscription ({rss0} → {rss1} KiB); {cps:.0} subscriptions/s ({} handshakes in flight) |",
            per_sub / 1000.0,
            ctx.args.connect_parallel
        ));
        drop(warm);
        drop(sockets);
        Ok::<_, anyhow::Error>(json!({
            "requested": n, "opened": opened, "connect_s": connect_s, "subscriptions_per_s": cps,
            "connect_parallel": ctx.args.connect_parallel,
            "server_rss_kib_before": rss0, "server_rss_kib_after": rss1,
            "server_bytes_per_subscription": per_sub, "server_active_subscriptions_gauge": active,
        }))
    }
    .await;
    s3.stop().await;
    result
}
