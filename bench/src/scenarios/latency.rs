//! Scenario 1: live-update latency. Open-loop mutations through instance 1 at fixed rates; each
//! order has one subscriber on instance 2, and the time from sending a mutation to its frame
//! arriving (A→B) is compared with the HTTP response time and the server's stage histograms.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::client::{collect, create_orders, gql, open_many};
use crate::server::Server;
use crate::stats::{hist, server_breakdown, short, summary};
use crate::Ctx;

pub(crate) async fn latency(ctx: &mut Ctx, s1: &Server, s2: &Server) -> Result<Value> {
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
        // Requests the instance shed at once (UNAVAILABLE with Retry-After), and how fast.
        let mut refused = hist();
        for t in tasks {
            let (o, version, t0, t1) = t.await?;
            match version {
                Ok(v) => sent.push((o, v, t0, t1)),
                Err(e) if format!("{e:#}").contains("UNAVAILABLE") => {
                    refused.record(t1.duration_since(t0).as_micros().max(1) as u64)?;
                }
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
            "[latency] {rate}/s: achieved {achieved:.0}/s, {} refused, {errors} errors, {missing} missing, A→B {}",
            refused.len(),
            short(&e2e_s)
        );
        ctx.rows.push(format!(
            "| latency | {rate}/s target, {achieved:.0}/s achieved, {n} orders, subscribers over {} | A→B {}; HTTP {}; server p50/p99 ≤ ms: commit→Kafka {}/{}, →consumed {}/{}, →pushed {}/{}; refused {} (p99 {} ms); errors {errors}, missing {missing} |",
            ctx.args.transport.name(),
            short(&e2e_s),
            short(&summary(&http_h)),
            server["commit_to_kafka"]["p50_le_ms"],
            server["commit_to_kafka"]["p99_le_ms"],
            server["commit_to_consume"]["p50_le_ms"],
            server["commit_to_consume"]["p99_le_ms"],
            server["commit_to_push"]["p50_le_ms"],
            server["commit_to_push"]["p99_le_ms"],
            refused.len(),
            summary(&refused)["p99_ms"],
        ));
        results.push(json!({
            "target_rate": rate, "orders": n, "duration_s": secs, "transport": ctx.args.transport.name(),
            "planned": total, "ok": sent.len(), "errors": errors, "first_error": first_error,
            "achieved_rate": achieved, "issue_elapsed_s": send_elapsed,
            "missing_frames": missing, "frames_before_http_response": before_response,
            "a_to_b": e2e_s, "http_response": summary(&http_h), "refused": summary(&refused), "server_stages": server,
        }));
    }
    Ok(json!(results))
}

/// One run of one rate, as the spread reports it.
struct RunSummary {
    p50_ms: f64,
    p99_ms: f64,
    achieved: f64,
}

/// One row per rate: the A→B p50 and p99 of every run, sorted, with their spread.
pub(crate) fn latency_spread(runs: &[Value]) -> Vec<String> {
    let mut by_rate: Vec<(u64, Vec<RunSummary>)> = Vec::new();
    for case in runs.iter().filter_map(Value::as_array).flatten() {
        let rate = case["target_rate"].as_u64().unwrap_or_default();
        let ms = |q: &str| case["a_to_b"][q].as_f64().unwrap_or(f64::NAN);
        let run = RunSummary {
            p50_ms: ms("p50_ms"),
            p99_ms: ms("p99_ms"),
            achieved: case["achieved_rate"].as_f64().unwrap_or_default(),
        };
        match by_rate.iter_mut().find(|(r, _)| *r == rate) {
            Some((_, cases)) => cases.push(run),
            None => by_rate.push((rate, vec![run])),
        }
    }
    by_rate
        .into_iter()
        .map(|(rate, cases)| {
            let sorted = |pick: fn(&RunSummary) -> f64| {
                let mut values: Vec<f64> = cases.iter().map(pick).collect();
                values.sort_by(f64::total_cmp);
                values
            };
            let (p50, p99) = (sorted(|c| c.p50_ms), sorted(|c| c.p99_ms));
            let list = |values: &[f64]| values.iter().map(|v| format!("{v:.1}")).collect::<Vec<_>>().join(", ");
            let min_achieved = sorted(|c| c.achieved)[0];
            format!(
                "| latency spread | {rate}/s, {} runs (lowest achieved rate {min_achieved:.0}/s) | A→B p50 ms: median {:.1}, range {:.1}–{:.1} ({}); p99 ms: median {:.1}, range {:.1}–{:.1} ({}) |",
                cases.len(),
                p50[p50.len() / 2],
                p50[0],
                p50[p50.len() - 1],
                list(&p50),
                p99[p99.len() / 2],
                p99[0],
                p99[p99.len() - 1],
                list(&p99),
            )
        })
        .collect()
}
