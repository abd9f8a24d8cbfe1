//! `ordercast-bench`: measures ordercast on the real stack (Postgres, Debezium, Kafka).
//!
//! The tool starts the ordercast instances it measures (`ordercast serve`) and always stops
//! them (also on error and Ctrl-C). Scenarios: `latency`, `writes`, `fanout`, `connections`,
//! `footprint`, `events`, `soak`
//! (see BENCHMARKS.md). Each writes `<out-dir>/<scenario>.json` and adds rows to the table
//! printed at the end.

mod client;
mod scenarios;
mod server;
mod stack;
mod stats;
mod streams;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::builder::BoolishValueParser;
use clap::{ArgAction, Parser};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::scenarios::{
    capture, connections, consume, events, fanout, footprint, latency, latency_spread, parse_fanout_case, soak,
    warm_up, writes, writes_spread, FanoutCase,
};
use crate::server::{mint_token, Server};

#[derive(Parser, Debug, Clone)]
#[command(about = "Benchmarks ordercast instances it starts itself against the running stack")]
struct Args {
    /// Run every scenario for a few seconds only (smoke check).
    #[arg(long, env = "ORDERCAST_BENCH_QUICK", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    quick: bool,
    /// Scenarios to run, in order (also: footprint, the CDC cost of one write; events, the
    /// commit-to-event latency on ordercast.order-events at 200 writes/s; soak, hostile load;
    /// consume, the CDC records per second one instance consumes and discards; capture, the
    /// order versions per second one Debezium connector carries).
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
    /// The Kafka cluster whose CDC topics are measured (footprint, capture, consume).
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:19092")]
    kafka_brokers: String,
    /// capture: Kafka Connect's REST API, to pause and resume the Debezium connector.
    #[arg(long, env = "KAFKA_CONNECT_URL", default_value = "http://127.0.0.1:18083")]
    connect_url: String,
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
    /// Runs of the whole scenario list; with more than one, each report is `SCENARIO-RUN.json` and
    /// the spread of the latency and writes scenarios over the runs is printed at the end.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// capture: order versions committed while the Debezium connector is paused.
    #[arg(long, default_value_t = 50_000)]
    capture_versions: usize,
    /// consume: CDC records produced for a fresh instance to consume and discard.
    #[arg(long, default_value_t = 200_000)]
    consume_records: usize,
    /// consume: products in the order whose record is copied (the record's size grows with it).
    #[arg(long, default_value_t = 1)]
    consume_items: usize,
    /// connections: idle authenticated subscriptions to open.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// latency, fanout, connections: how subscribers receive updates (one connection each).
    #[arg(long, value_enum, default_value = "ws")]
    transport: streams::Transport,
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

/// What the scenarios share: the arguments, the seeded data, one HTTP client, and the rows of
/// the table printed at the end.
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
    let (mut latency_runs, mut writes_runs) = (Vec::new(), Vec::new());
    for (run, scenario) in (1..=args.repeat).flat_map(|run| args.scenarios.iter().map(move |s| (run, s))) {
        let started = Instant::now();
        let report = match scenario.as_str() {
            "latency" => latency(&mut ctx, &s1, &s2).await?,
            "writes" => writes(&mut ctx, &s1).await?,
            "fanout" => fanout(&mut ctx, &s1, &s2).await?,
            "connections" => connections(&mut ctx, &s1).await?,
            "consume" => consume(&mut ctx, &s1).await?,
            "capture" => capture(&mut ctx, &s1).await?,
            "footprint" => footprint(&mut ctx, &s1).await?,
            "events" => events(&mut ctx, &s1).await?,
            "soak" => soak(&mut ctx, &s1).await?,
            other => bail!("unknown scenario {other}"),
        };
        match scenario.as_str() {
            "latency" => latency_runs.push(report.clone()),
            "writes" => writes_runs.push(report.clone()),
            _ => {}
        }
        let report = json!({
            "scenario": scenario, "run": run, "quick": quick, "machine": machine(),
            "elapsed_s": started.elapsed().as_secs_f64(), "results": report,
        });
        let name = match args.repeat {
            1 => format!("{scenario}.json"),
            _ => format!("{scenario}-{run}.json"),
        };
        let path = args.out_dir.join(name);
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
        eprintln!("[bench] wrote {}", path.display());
    }
    if args.repeat > 1 {
        ctx.rows.extend(latency_spread(&latency_runs));
        ctx.rows.extend(writes_spread(&writes_runs));
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
