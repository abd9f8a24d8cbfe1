//! Capacity of the capture path: the order versions per second one Debezium connector turns into
//! Kafka records. A Postgres connector reads one replication slot and runs exactly one task, so
//! this bounds the change rate of everything behind one database. The connector is paused while
//! the bench commits the versions straight in SQL (transactions that touch `ORDERS` orders
//! each), then resumed; the versions topic's end offsets are sampled every 100 ms until every
//! version is there. The rate is taken between 20 % and 90 % of the backlog, past what Debezium
//! read ahead into its queue while paused; CPU is Connect's, Kafka's and Postgres's over the
//! whole catch-up.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::client::create_orders;
use crate::server::Server;
use crate::stack::{cpu_by_process, cpu_seconds_between, Kafka, Service};
use crate::Ctx;

const VERSIONS_TOPIC: &str = "ordercast.public.order_versions";
const CONNECTOR: &str = "ordercast-postgres";
/// Orders touched by each transaction of the backlog (one version each).
const ORDERS: usize = 1_000;

pub(crate) async fn capture(ctx: &mut Ctx, s1: &Server) -> Result<Value> {
    let wanted = if ctx.args.quick {
        5_000
    } else {
        ctx.args.capture_versions
    };
    let orders = create_orders(ctx, s1, ORDERS, false).await?;
    let transactions = wanted.div_ceil(ORDERS);
    let versions = transactions * ORDERS;
    let kafka = Kafka::connect(&ctx.args.kafka_brokers)?;
    let topics = kafka.cdc_topics()?;
    kafka.settle(&topics).await?;
    let versions_topic = [VERSIONS_TOPIC.to_owned()];
    let end = |kafka: &Kafka| -> Result<i64> { Ok(kafka.ends(&versions_topic)?.values().sum()) };

    set_connector_state(ctx, "pause", "PAUSED").await?;
    let outcome = backlog_and_catch_up(ctx, &kafka, &orders, transactions, versions, end).await;
    // Whatever happened, the stack is left capturing.
    let resumed = set_connector_state(ctx, "resume", "RUNNING").await;
    let (written_s, samples, cpu) = outcome?;
    resumed?;

    let caught_up_s = samples.last().map_or(0.0, |(t, _)| *t);
    let captured = samples.last().map_or(0, |(_, n)| *n);
    if captured < versions as i64 {
        bail!("only {captured} of {versions} versions reached {VERSIONS_TOPIC} within the deadline");
    }
    let at = |share: f64| {
        samples
            .iter()
            .find(|(_, n)| *n as f64 >= share * versions as f64)
            .copied()
            .unwrap_or((caught_up_s, captured))
    };
    let ((t20, n20), (t90, n90)) = (at(0.2), at(0.9));
    let steady = (n90 - n20) as f64 / (t90 - t20).max(0.001);
    let per_version_us = |seconds: f64| seconds / versions as f64 * 1e6;
    eprintln!(
        "[capture] {versions} versions written in {written_s:.1} s; captured in {caught_up_s:.1} s after resuming, {steady:.0}/s between 20 and 90 %"
    );
    ctx.rows.push(format!(
        "| capture | {versions} order versions committed while the connector was paused ({transactions} transactions of {ORDERS} orders), then resumed | {steady:.0} versions/s through Debezium into Kafka (all in {caught_up_s:.1} s; Postgres committed them at {:.0}/s); CPU per version: Connect {:.0} µs, Kafka {:.0} µs, Postgres {:.0} µs |",
        versions as f64 / written_s,
        per_version_us(cpu.connect),
        per_version_us(cpu.kafka),
        per_version_us(cpu.postgres),
    ));
    Ok(json!({
        "versions": versions, "transactions": transactions, "orders_per_transaction": ORDERS,
        "written_s": written_s, "written_per_s": versions as f64 / written_s,
        "caught_up_s": caught_up_s, "versions_per_s_20_to_90_percent": steady,
        "versions_per_s_overall": versions as f64 / caught_up_s,
        "cpu_us_per_version": {
            "connect": per_version_us(cpu.connect), "kafka": per_version_us(cpu.kafka),
            "postgres": per_version_us(cpu.postgres),
        },
        "samples_s_and_versions": samples,
    }))
}

/// CPU seconds the stack spent on the catch-up.
struct CpuSpent {
    connect: f64,
    kafka: f64,
    postgres: f64,
}

/// Commits the backlog with the connector paused, resumes it and samples the topic's growth.
async fn backlog_and_catch_up(
    ctx: &Ctx,
    kafka: &Kafka,
    orders: &[Uuid],
    transactions: usize,
    versions: usize,
    end: impl Fn(&Kafka) -> Result<i64>,
) -> Result<(f64, Vec<(f64, i64)>, CpuSpent)> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&ctx.args.database_url)
        .await
        .context("connecting to Postgres")?;
    let before = end(kafka)?;
    eprintln!("[capture] connector paused; committing {versions} versions");
    let started = Instant::now();
    for _ in 0..transactions {
        sqlx::query("UPDATE orders SET updated_at = now() WHERE id = ANY($1)")
            .bind(orders)
            .execute(&pool)
            .await?;
    }
    let written_s = started.elapsed().as_secs_f64();
    pool.close().await;

    let cpu_before = cpu_by_process();
    connector_request(ctx, "resume").await?;
    let resumed = Instant::now();
    let mut samples = Vec::new();
    let deadline = resumed + Duration::from_secs(600);
    loop {
        let captured = end(kafka)? - before;
        samples.push((resumed.elapsed().as_secs_f64(), captured));
        if captured >= versions as i64 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cpu_after = cpu_by_process();
    let spent = |service| cpu_seconds_between(&cpu_before, &cpu_after, service);
    let cpu = CpuSpent {
        connect: spent(Service::Connect),
        kafka: spent(Service::Kafka),
        postgres: spent(Service::Postgres),
    };
    Ok((written_s, samples, cpu))
}

async fn connector_request(ctx: &Ctx, action: &str) -> Result<()> {
    let url = format!("{}/connectors/{CONNECTOR}/{action}", ctx.args.connect_url);
    let response = ctx.http.put(&url).send().await.with_context(|| format!("PUT {url}"))?;
    if !response.status().is_success() {
        bail!("PUT {url}: {}", response.status());
    }
    Ok(())
}

/// Asks Connect to pause or resume the connector and waits until its task reports `state`.
async fn set_connector_state(ctx: &Ctx, action: &str, state: &str) -> Result<()> {
    connector_request(ctx, action).await?;
    let url = format!("{}/connectors/{CONNECTOR}/status", ctx.args.connect_url);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let status: Value = ctx.http.get(&url).send().await?.json().await?;
        if status["tasks"][0]["state"] == state {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the connector's task did not reach {state} within 30 s")
}
