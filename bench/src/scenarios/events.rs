//! Commit-to-event latency on the public topic `ordercast.order-events`: open-loop
//! setItemQuantity mutations at a fixed rate through instance 1, and a consumer at the
//! topic's end that measures, for each event of the bench's orders, the time from its
//! `occurred_at` (the commit-time trigger's clock) to the moment it is read. Both clocks
//! are this machine's.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use rdkafka::Message;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::client::{create_orders, gql, SET_QUANTITY};
use crate::server::Server;
use crate::stack::consumer_at_end;
use crate::stats::{hist, short, summary};
use crate::Ctx;

const TOPIC: &str = "ordercast.order-events";
/// Writes per second, as the issue asks: the steady load of a busy store.
const RATE: u64 = 200;

pub(crate) async fn events(ctx: &mut Ctx, s1: &Server) -> Result<Value> {
    let secs = if ctx.args.quick { 3 } else { ctx.args.duration_secs };
    let orders = create_orders(ctx, s1, 50, true).await?;
    let ours: HashSet<String> = orders.iter().map(Uuid::to_string).collect();
    let consumer = consumer_at_end(&ctx.args.kafka_brokers, TOPIC)?;

    let period = Duration::from_secs_f64(1.0 / RATE as f64);
    let total = (RATE * secs) as usize;
    eprintln!("[events] {RATE} writes/s for {secs} s, reading {TOPIC}");
    let started = Instant::now();
    let writer = {
        let (http, base, token, products) = (
            ctx.http.clone(),
            s1.base.clone(),
            ctx.token.clone(),
            ctx.products.clone(),
        );
        let orders = orders.clone();
        tokio::spawn(async move {
            let mut tasks = Vec::with_capacity(total);
            for k in 0..total {
                tokio::time::sleep_until((started + period * k as u32).into()).await;
                let vars = json!({ "o": orders[k % orders.len()], "p": products[0], "q": 2 + k % 900 });
                let (http, base, token) = (http.clone(), base.clone(), token.clone());
                tasks.push(tokio::spawn(async move {
                    gql(&http, &base, &token, SET_QUANTITY, vars).await
                }));
            }
            let mut ok = 0usize;
            for task in tasks {
                ok += usize::from(matches!(task.await, Ok(Ok(_))));
            }
            ok
        })
    };

    let mut latency = hist();
    let deadline = started + Duration::from_secs(secs + 30);
    let mut seen = 0usize;
    while Instant::now() < deadline {
        if writer.is_finished() && seen >= total {
            break;
        }
        let message = match tokio::time::timeout(Duration::from_millis(500), consumer.recv()).await {
            Ok(message) => message.context("reading order events")?,
            Err(_) => continue,
        };
        let read_at = Utc::now();
        let Some(event) = message.payload().and_then(|p| serde_json::from_slice::<Value>(p).ok()) else {
            continue;
        };
        if !event["order_id"].as_str().is_some_and(|o| ours.contains(o)) || event["type"] != "ItemChanged" {
            continue;
        }
        let Some(occurred) = event["occurred_at"]
            .as_str()
            .and_then(|t| t.parse::<DateTime<Utc>>().ok())
        else {
            continue;
        };
        let micros = (read_at - occurred).num_microseconds().unwrap_or(0).max(1) as u64;
        latency.record(micros.min(600_000_000))?;
        seen += 1;
    }
    let written = writer.await?;
    let summary = summary(&latency);
    ctx.rows.push(format!(
        "| events | {RATE}/s for {secs} s, {seen} of {written} events | commit to event read: {} |",
        short(&summary)
    ));
    Ok(json!({ "rate": RATE, "seconds": secs, "written": written, "events": seen, "commit_to_event": summary }))
}
