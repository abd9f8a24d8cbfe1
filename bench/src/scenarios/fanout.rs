//! Scenario 3: fan-out. Many subscribers on instance 2 (spread over one or more orders) and one
//! change per order per round; measures when the first and the last subscriber get it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::client::{collect, create_orders, gql, open_many, SET_QUANTITY};
use crate::server::Server;
use crate::stack::process_cpu_seconds;
use crate::stats::{hist, server_breakdown, short, summary};
use crate::Ctx;

pub(crate) async fn fanout(ctx: &mut Ctx, s1: &Server, s2: &Server) -> Result<Value> {
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
        let cpu_before = (s2.cpu_seconds(), process_cpu_seconds(std::process::id()));
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
                // The instance admits as many requests at once as it has database connections (16).
                .buffer_unordered(16)
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
        let deliveries = (opened * rounds).max(1) as f64;
        let instance_us = (s2.cpu_seconds() - cpu_before.0) / deliveries * 1e6;
        let bench_us = (process_cpu_seconds(std::process::id()) - cpu_before.1) / deliveries * 1e6;
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
        eprintln!(
            "[fanout] {n}: last subscriber after {lasts:?} ms; {}; CPU per delivery: instance {instance_us:.1} us, bench client {bench_us:.1} us",
            short(&s)
        );
        ctx.rows.push(format!(
            "| fanout | {opened} subscribers ({} connection each), {order_count} order(s), {rounds} changes | last one: median {median_last:.1} ms (all rounds {lasts:?}); across subscribers {}; up to {rate:.0} msgs/s; CPU per delivery {instance_us:.1} µs instance, {bench_us:.1} µs bench client; subscribed at {:.0}/s |",
            ctx.args.transport.name(),
            short(&s),
            opened as f64 / connect_s
        ));
        results.push(json!({
            "subscribers": n, "orders": order_count, "opened": opened, "connect_s": connect_s,
            "subscribe_per_s": opened as f64 / connect_s,
            "server_rss_kib_before": rss_before, "server_rss_kib_after": rss_after,
            "rounds": round_reports, "last_subscriber_ms": lasts, "across_all_rounds": s,
            "instance_cpu_us_per_delivery": instance_us, "bench_cpu_us_per_delivery": bench_us,
            "server_stages": server_breakdown(&metrics_before, &metrics_after),
        }));
        // Let instance 2 drop the closed subscriptions before the next run.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Ok(json!(results))
}

/// A fan-out case: `subscribers` connections spread evenly over `orders` orders.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FanoutCase {
    subscribers: usize,
    orders: usize,
}

pub(crate) fn parse_fanout_case(text: &str) -> Result<FanoutCase, String> {
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
