//! Statistics: client-side latency histograms (microseconds) and their summaries, and the
//! server's own stage histograms, read from two scrapes of its Prometheus `/metrics`.

use hdrhistogram::Histogram;
use serde_json::{json, Value};

pub(crate) fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds")
}

/// Percentiles of a microsecond histogram, in milliseconds.
pub(crate) fn summary(h: &Histogram<u64>) -> Value {
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

pub(crate) fn short(s: &Value) -> String {
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
pub(crate) fn server_breakdown(before: &str, after: &str) -> Value {
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
