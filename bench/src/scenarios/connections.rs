//! Scenario 4: idle connections. Opens many idle authenticated subscriptions on a fresh instance
//! and reports its RSS growth per subscription and the handshake rate.

use std::time::Duration;

use anyhow::Result;
use serde_json::{json, Value};

use crate::client::{create_orders, open_many};
use crate::server::Server;
use crate::Ctx;

pub(crate) async fn connections(ctx: &mut Ctx, s1: &Server) -> Result<Value> {
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
            "| connections | {opened} idle subscriptions ({} connection each) | {:.1} KB server RSS per subscription ({rss0} → {rss1} KiB); {cps:.0} subscriptions/s ({} handshakes in flight) |",
            ctx.args.transport.name(),
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
