//! Scenario 2: write throughput. Closed-loop `addItem` writers through GraphQL, compared with the
//! same transaction as raw SQL straight to Postgres, the two alternating in one-second slices.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use sqlx::Connection;
use uuid::Uuid;

use crate::client::{create_orders, gql};
use crate::server::Server;
use crate::stats::{hist, summary};
use crate::Ctx;

const ORDERS_PER_WRITER: usize = 4;

/// How long each side writes before the other takes over.
const SLICE: Duration = Duration::from_secs(1);

pub(crate) async fn writes(ctx: &mut Ctx, s1: &Server) -> Result<Value> {
    let secs = if ctx.args.quick { 3 } else { ctx.args.duration_secs };
    let mut results = Vec::new();
    for &c in &ctx.args.concurrency.clone() {
        eprintln!("[writes] concurrency {c}: GraphQL and raw SQL, alternating every {SLICE:?} for {secs} s each");
        let gql_orders = create_orders(ctx, s1, c * ORDERS_PER_WRITER, false).await?;
        let raw_orders = create_orders(ctx, s1, c * ORDERS_PER_WRITER, false).await?;
        s1.settle().await;
        let through_graphql = {
            let (http, base, token, products) = (
                ctx.http.clone(),
                s1.base.clone(),
                ctx.token.clone(),
                ctx.products.clone(),
            );
            move |w: usize, i: usize| {
                let (http, base, token) = (http.clone(), base.clone(), token.clone());
                let order = gql_orders[w * ORDERS_PER_WRITER + i % ORDERS_PER_WRITER];
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
        };
        // One dedicated connection per writer, like pgbench's clients.
        let mut conns = Vec::with_capacity(c);
        for _ in 0..c {
            let conn = sqlx::PgConnection::connect(&ctx.args.database_url).await?;
            conns.push(Arc::new(tokio::sync::Mutex::new(conn)));
        }
        let through_sql = {
            let (conns, products, customer) = (conns.clone(), ctx.products.clone(), ctx.customer_id);
            move |w: usize, i: usize| {
                let conn = conns[w].clone();
                let order = raw_orders[w * ORDERS_PER_WRITER + i % ORDERS_PER_WRITER];
                let product = products[(i / ORDERS_PER_WRITER) % products.len()];
                async move { raw_add_item(&mut *conn.lock().await, customer, order, product).await }
            }
        };
        // Postgres's commit time drifts on a shared box (the disk, checkpoints, the other
        // services): alternating short slices gives both sides the same conditions, where two
        // back-to-back phases would compare two different machines.
        let (mut gql_run, mut raw_run) = (Tally::default(), Tally::default());
        let slices = (Duration::from_secs(secs).as_millis() / SLICE.as_millis()).max(1) as usize;
        for slice in 0..slices {
            gql_run.absorb(run_writers(c, slice, through_graphql.clone()).await?)?;
            raw_run.absorb(run_writers(c, slice, through_sql.clone()).await?)?;
        }
        drop(conns);
        let (gql_run, raw_run) = (gql_run.finish(), raw_run.finish());

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
            "concurrency": c, "duration_s": secs, "slice_ms": SLICE.as_millis(),
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

/// What one side's writers did, summed over its slices.
struct Tally {
    latency: Histogram<u64>,
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    elapsed: Duration,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            latency: hist(),
            ok: 0,
            errors: 0,
            first_error: None,
            elapsed: Duration::ZERO,
        }
    }
}

impl Tally {
    fn absorb(&mut self, other: Tally) -> Result<()> {
        self.latency.add(&other.latency)?;
        self.ok += other.ok;
        self.errors += other.errors;
        self.elapsed += other.elapsed;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        Ok(())
    }

    fn finish(self) -> WriteRun {
        WriteRun {
            rate: self.ok as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON),
            ok: self.ok,
            errors: self.errors,
            first_error: self.first_error,
            latency: summary(&self.latency),
        }
    }
}

/// `c` closed-loop writers for one `SLICE`; writer w's i-th call is `op(w, i)`, with i
/// counted on from the previous slices so that the writes keep spreading over orders and products.
async fn run_writers<F, Fut>(c: usize, slice: usize, op: F) -> Result<Tally>
where
    F: Fn(usize, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    const CALLS_PER_SLICE: usize = 1_000_000;
    let started = Instant::now();
    let deadline = started + SLICE;
    let workers: Vec<_> = (0..c)
        .map(|w| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut tally = Tally::default();
                let mut i = slice * CALLS_PER_SLICE;
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    match op(w, i).await {
                        Ok(()) => {
                            tally.ok += 1;
                            let _ = tally.latency.record(t0.elapsed().as_micros().max(1) as u64);
                        }
                        Err(e) => {
                            tally.errors += 1;
                            tally.first_error.get_or_insert(format!("{e:#}"));
                        }
                    }
                    i += 1;
                }
                tally
            })
        })
        .collect();
    let mut total = Tally::default();
    for worker in workers {
        total.absorb(worker.await?)?;
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

/// One row per concurrency: GraphQL's share of raw SQL's rate in every run, sorted.
pub(crate) fn writes_spread(runs: &[Value]) -> Vec<String> {
    let mut by_concurrency: Vec<(u64, Vec<f64>)> = Vec::new();
    for case in runs.iter().filter_map(Value::as_array).flatten() {
        let concurrency = case["concurrency"].as_u64().unwrap_or_default();
        let ratio = case["ratio_graphql_over_raw"].as_f64().unwrap_or(f64::NAN);
        match by_concurrency.iter_mut().find(|(c, _)| *c == concurrency) {
            Some((_, ratios)) => ratios.push(ratio),
            None => by_concurrency.push((concurrency, vec![ratio])),
        }
    }
    by_concurrency
        .into_iter()
        .map(|(concurrency, mut ratios)| {
            ratios.sort_by(f64::total_cmp);
            let percent: Vec<String> = ratios.iter().map(|r| format!("{:.0}", r * 100.0)).collect();
            format!(
                "| writes spread | concurrency {concurrency}, {} runs | GraphQL / raw SQL: median {:.0} %, lowest {:.0} % ({} %) |",
                ratios.len(),
                ratios[ratios.len() / 2] * 100.0,
                ratios[0] * 100.0,
                percent.join(", "),
            )
        })
        .collect()
}
