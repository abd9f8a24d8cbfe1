//! The scenarios (see BENCHMARKS.md), one module each, and the untimed warm-up that runs before
//! them. Each scenario returns its JSON results and adds rows to `Ctx::rows`.

mod capture;
mod connections;
mod consume;
mod events;
mod fanout;
mod footprint;
mod latency;
mod soak;
mod writes;

use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::json;

use crate::client::{create_orders, gql, SET_QUANTITY};
use crate::server::Server;
use crate::Ctx;

pub(crate) use capture::capture;
pub(crate) use connections::connections;
pub(crate) use consume::consume;
pub(crate) use events::events;
pub(crate) use fanout::{fanout, parse_fanout_case, FanoutCase};
pub(crate) use footprint::footprint;
pub(crate) use latency::{latency, latency_spread};
pub(crate) use soak::soak;
pub(crate) use writes::{writes, writes_spread};

/// Untimed setItemQuantity mutations at 200/s over 50 orders for `secs` seconds, then waits
/// until instance 2 has consumed the backlog.
pub(crate) async fn warm_up(ctx: &Ctx, s1: &Server, s2: &Server, secs: u64) -> Result<()> {
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
