//! Structured logs through `tracing`; `RUST_LOG` filters them.

use tracing_subscriber::{fmt, EnvFilter};

use crate::config::LogFormat;

/// Installs the global subscriber. Safe to call more than once (tests do).
/// Colours only on a terminal (and never with `NO_COLOR`), so logs piped to a
/// file or a collector stay plain text.
pub fn init(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,sea_orm=warn,rdkafka=warn"));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Metric names, in one place so dashboards and code agree.
pub mod metric {
    pub const CDC_EVENTS: &str = "ordercast_cdc_events_total";
    pub const CDC_DECODE_ERRORS: &str = "ordercast_cdc_decode_errors_total";
    pub const CDC_CONSUMER_LAG: &str = "ordercast_cdc_consumer_lag_messages";
    pub const CDC_OUTAGES: &str = "ordercast_cdc_outages_total";
    pub const CDC_COMMIT_TO_KAFKA: &str = "ordercast_cdc_commit_to_kafka_seconds";
    pub const CDC_COMMIT_TO_CONSUME: &str = "ordercast_cdc_commit_to_consume_seconds";
    pub const CDC_LAST_EVENT_AGE: &str = "ordercast_cdc_last_event_age_seconds";
    pub const LIVE_SUBSCRIPTIONS: &str = "ordercast_live_subscriptions";
    pub const LIVE_OVERFLOWS: &str = "ordercast_live_queue_overflows_total";
    pub const LIVE_RESYNCS: &str = "ordercast_live_resyncs_total";
    pub const LIVE_COMMIT_TO_PUSH: &str = "ordercast_live_commit_to_push_seconds";
    pub const LIVE_CATCH_UPS: &str = "ordercast_live_catch_ups_total";
    pub const LIVE_RECOVERIES: &str = "ordercast_live_recoveries_total";
    pub const LIVE_RECOVERY_QUERIES: &str = "ordercast_live_recovery_queries_total";
    pub const LIVE_RECOVERY_SECONDS: &str = "ordercast_live_recovery_seconds";
    pub const GRAPHQL_ERRORS: &str = "ordercast_graphql_errors_total";
    pub const HISTORY_PRUNED_VERSIONS: &str = "ordercast_history_pruned_versions_total";
    pub const HISTORY_LAST_PRUNE: &str = "ordercast_history_last_prune_timestamp_seconds";
    pub const CDC_GAPS: &str = "ordercast_cdc_gaps_total";
    pub const HTTP_REFUSED: &str = "ordercast_http_refused_total";
    pub const HTTP_OPEN_CONNECTIONS: &str = "ordercast_http_open_connections";
    pub const HTTP_OPEN_STREAMS: &str = "ordercast_http_open_streams";
    pub const WS_DROPPED: &str = "ordercast_ws_dropped_total";
    pub const RATE_LIMITED: &str = "ordercast_rate_limited_total";
}

static PROMETHEUS: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> = std::sync::OnceLock::new();

/// The process-wide Prometheus recorder, installed on first use.
pub fn prometheus() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    PROMETHEUS.get_or_init(|| {
        use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
        // Millisecond steps up to 10 ms (the commit timestamp, Debezium's `source.ts_ms`, has
        // millisecond resolution), then coarser: where a 5 ms goal is decided, a bucket is 1 ms.
        let latency_buckets = [
            0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.007, 0.008, 0.009, 0.010, 0.0125, 0.015, 0.0175, 0.02, 0.025,
            0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 10.0,
        ];
        let mut builder = PrometheusBuilder::new();
        for name in [
            metric::CDC_COMMIT_TO_KAFKA,
            metric::CDC_COMMIT_TO_CONSUME,
            metric::LIVE_COMMIT_TO_PUSH,
        ] {
            builder = builder
                .set_buckets_for_metric(Matcher::Full(name.to_owned()), &latency_buckets)
                .expect("static buckets are valid");
        }
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder may exist (tests embedding us); then ours only renders what it has.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        handle
    })
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(metric::CDC_EVENTS, "CDC records consumed, by topic");
    describe_counter!(
        metric::CDC_DECODE_ERRORS,
        "CDC records that could not be decoded, by topic"
    );
    describe_gauge!(
        metric::CDC_CONSUMER_LAG,
        "Records not yet consumed, by topic and partition"
    );
    describe_counter!(metric::CDC_OUTAGES, "Times the CDC stream stalled or lost the broker");
    describe_histogram!(
        metric::CDC_COMMIT_TO_KAFKA,
        Unit::Seconds,
        "Postgres commit to the Kafka record timestamp (Debezium and Connect's producer)"
    );
    describe_histogram!(
        metric::CDC_COMMIT_TO_CONSUME,
        Unit::Seconds,
        "Postgres commit to this instance decoding the change event"
    );
    describe_gauge!(
        metric::CDC_LAST_EVENT_AGE,
        Unit::Seconds,
        "Time since this instance consumed its last change event or heartbeat"
    );
    describe_gauge!(metric::LIVE_SUBSCRIPTIONS, "Active subscriptions on this instance");
    describe_counter!(
        metric::LIVE_CATCH_UPS,
        "Orders a subscriber found itself behind on after a CDC outage, and caught up on"
    );
    describe_counter!(
        metric::LIVE_RECOVERIES,
        "Comparisons of every subscriber with Postgres after a CDC outage"
    );
    describe_counter!(
        metric::LIVE_RECOVERY_QUERIES,
        "Batched version queries those comparisons issued"
    );
    describe_histogram!(
        metric::LIVE_RECOVERY_SECONDS,
        Unit::Seconds,
        "Time to read Postgres's versions and hand them to every subscriber"
    );
    describe_counter!(metric::LIVE_OVERFLOWS, "Subscribers whose queue overflowed");
    describe_counter!(
        metric::LIVE_RESYNCS,
        "Reloads of lagged subscribers (queue overflow), each sending resync states"
    );
    describe_histogram!(
        metric::LIVE_COMMIT_TO_PUSH,
        Unit::Seconds,
        "Postgres commit to subscription push"
    );
    describe_counter!(metric::GRAPHQL_ERRORS, "GraphQL errors, by code");
    describe_counter!(
        metric::HISTORY_PRUNED_VERSIONS,
        "Versions of orders deleted from order_versions after the retention"
    );
    describe_gauge!(
        metric::HISTORY_LAST_PRUNE,
        Unit::Seconds,
        "Unix time of this instance's last completed prune pass"
    );
    describe_counter!(
        metric::HTTP_REFUSED,
        "Requests and connections refused at once, by reason: connections, overloaded, timeout"
    );
    describe_gauge!(
        metric::HTTP_OPEN_CONNECTIONS,
        "Open client connections, WebSockets included"
    );
    describe_gauge!(
        metric::HTTP_OPEN_STREAMS,
        "Open subscription streams over multipart HTTP or SSE, by format"
    );
    describe_counter!(
        metric::WS_DROPPED,
        "WebSockets dropped because the client stopped reading (write timeout)"
    );
    describe_counter!(
        metric::RATE_LIMITED,
        "Mutations refused by a per-customer rate limit, by limit"
    );
    describe_counter!(
        metric::CDC_GAPS,
        "Holes in the change stream announced through cdc_gaps (each one compares every subscriber with Postgres)"
    );
}
