//! Command line and environment configuration. Every default works against the
//! local stack that `make stack` starts.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The local stack's database; `make stack` creates it.
pub const DEFAULT_DATABASE_URL: &str = "postgres://ordercast:ordercast@127.0.0.1:55432/ordercast";
/// The local stack's Kafka broker.
pub const DEFAULT_KAFKA_BROKERS: &str = "127.0.0.1:19092";
/// Debezium's topic of `order_versions`, the stream every instance follows.
pub const DEFAULT_CDC_TOPIC: &str = "ordercast.public.order_versions";
/// Debezium's topic of `cdc_gaps`: each record announces changes that were never captured.
pub const DEFAULT_CDC_GAPS_TOPIC: &str = "ordercast.public.cdc_gaps";
/// Debezium's heartbeat topic for the `ordercast` topic prefix.
pub const DEFAULT_CDC_HEARTBEAT_TOPIC: &str = "__debezium-heartbeat.ordercast";
/// Signing secret for development tokens only. `serve` warns loudly when it is used.
pub const DEVELOPMENT_JWT_SECRET: &str = "ordercast-development-secret-not-for-production";

#[derive(Debug, Parser)]
#[command(
    name = "ordercast",
    version,
    about = "Database-first live GraphQL backend for orders"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log output format.
    #[arg(long, env = "ORDERCAST_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply pending migrations, then serve GraphQL over HTTP and WebSocket.
    Serve(Box<ServeConfig>),
    /// Apply pending migrations and exit.
    Migrate(DatabaseConfig),
    /// Insert the demo customers and products (idempotent).
    Seed(DatabaseConfig),
    /// Print a signed bearer token for a customer, and nothing else.
    Token(TokenConfig),
    /// Print the GraphQL schema (SDL) that `serve` exposes.
    Sdl,
    /// Run one pass of history retention now and print what it removed.
    Prune(PruneConfig),
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseConfig {
    /// Postgres connection URL.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, hide_env_values = true)]
    pub database_url: String,
    /// Upper bound of the connection pool of this instance.
    #[arg(long, env = "ORDERCAST_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,
}

#[derive(Debug, Clone, Args)]
pub struct AuthConfig {
    /// HS256 secret that signs and verifies bearer tokens.
    #[arg(long, env = "ORDERCAST_JWT_SECRET", default_value = DEVELOPMENT_JWT_SECRET, hide_env_values = true)]
    pub jwt_secret: String,
}

impl AuthConfig {
    pub fn is_development_secret(&self) -> bool {
        self.jwt_secret == DEVELOPMENT_JWT_SECRET
    }
}

#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Address for HTTP and WebSocket.
    #[arg(long, env = "ORDERCAST_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub database: DatabaseConfig,
    #[command(flatten)]
    pub auth: AuthConfig,
    /// Kafka bootstrap servers carrying the Debezium change topics.
    #[arg(long, env = "KAFKA_BROKERS", default_value = DEFAULT_KAFKA_BROKERS)]
    pub kafka_brokers: String,
    #[command(flatten)]
    pub limits: Limits,
    #[command(flatten)]
    pub live: LiveConfig,
    #[command(flatten)]
    pub drain: DrainConfig,
    #[command(flatten)]
    pub history: HistoryConfig,
}

/// How long `order_versions` keeps what resumes and gap repairs read.
#[derive(Debug, Clone, Args)]
pub struct HistoryConfig {
    /// Versions committed longer ago than this are deleted, except each order's latest
    /// (`7d`, `12h`, `90s`). A resume from before it gets a resync snapshot.
    #[arg(long, env = "ORDERCAST_HISTORY_RETENTION", default_value = "7d", value_parser = positive_duration)]
    pub history_retention: Duration,
    /// How often each instance tries a prune pass; one instance at a time runs it.
    #[arg(long, env = "ORDERCAST_HISTORY_PRUNE_INTERVAL", default_value = "1m", value_parser = positive_duration)]
    pub history_prune_interval: Duration,
    /// Versions a prune transaction looks at: small enough to never hold locks for long.
    #[arg(long, env = "ORDERCAST_HISTORY_PRUNE_BATCH", default_value_t = 1_000,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub history_prune_batch: u32,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            history_retention: Duration::from_secs(7 * 24 * 3600),
            history_prune_interval: Duration::from_secs(60),
            history_prune_batch: 1_000,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct PruneConfig {
    /// Delete the versions committed longer ago than this (each order's latest is kept).
    #[arg(long, value_parser = positive_duration)]
    pub older_than: Duration,
    /// Versions per transaction.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch: u32,
    /// How long to wait for an instance that is pruning at the same time.
    #[arg(long, default_value = "60s", value_parser = positive_duration)]
    pub lock_timeout: Duration,
    #[command(flatten)]
    pub database: DatabaseConfig,
}

/// A duration such as `90s`, `15m`, `7d` that is longer than zero.
fn positive_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| format!("{e} (examples: 90s, 15m, 12h, 7d)"))?;
    if duration.is_zero() {
        return Err("must be longer than zero".to_owned());
    }
    Ok(duration)
}

/// Graceful shutdown on SIGTERM: readiness fails at once, then in-flight
/// requests finish within a deadline, then WebSockets close with 1001.
#[derive(Debug, Clone, Args)]
pub struct DrainConfig {
    /// After SIGTERM, how long to keep accepting requests while `/readyz` answers 503,
    /// so that load balancers stop sending traffic before the listener closes.
    #[arg(long, env = "ORDERCAST_SHUTDOWN_DELAY_MS", default_value_t = 0)]
    pub shutdown_delay_ms: u64,
    /// How long in-flight requests may take to finish once the listener is closed.
    #[arg(long, env = "ORDERCAST_SHUTDOWN_TIMEOUT_SECS", default_value_t = 10)]
    pub shutdown_timeout_secs: u64,
}

impl DrainConfig {
    pub fn delay(&self) -> Duration {
        Duration::from_millis(self.shutdown_delay_ms)
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_secs)
    }
}

impl Default for DrainConfig {
    fn default() -> Self {
        Self {
            shutdown_delay_ms: 0,
            shutdown_timeout_secs: 10,
        }
    }
}

/// The live-update path: where change events come from, how much a slow subscriber may queue.
#[derive(Debug, Clone, Args)]
pub struct LiveConfig {
    /// Debezium topic of the `order_versions` table.
    #[arg(long, env = "ORDERCAST_CDC_TOPIC", default_value = DEFAULT_CDC_TOPIC)]
    pub cdc_topic: String,
    /// Debezium topic of the `cdc_gaps` table: a record there means changes were lost
    /// before capture (a recreated replication slot), so subscribers are compared with Postgres.
    #[arg(long, env = "ORDERCAST_CDC_GAPS_TOPIC", default_value = DEFAULT_CDC_GAPS_TOPIC)]
    pub cdc_gaps_topic: String,
    /// Debezium heartbeat topic, the proof of life of the CDC pipeline.
    #[arg(long, env = "ORDERCAST_CDC_HEARTBEAT_TOPIC", default_value = DEFAULT_CDC_HEARTBEAT_TOPIC)]
    pub cdc_heartbeat_topic: String,
    /// Updates queued per subscriber before it is resynced instead.
    #[arg(long, env = "ORDERCAST_SUBSCRIBER_QUEUE", default_value_t = 128)]
    pub subscriber_queue: usize,
    /// Subscribers that may read Postgres at once to catch up (gap repairs, reloads after a
    /// lag or an outage); the rest wait, so mutations keep their connections.
    #[arg(long, env = "ORDERCAST_LIVE_REPAIR_CONCURRENCY", default_value_t = 4)]
    pub repair_concurrency: usize,
    /// Rendered live updates kept for reuse: subscribers with the same selection
    /// of the same order share one rendering of each version.
    #[arg(long, env = "ORDERCAST_RENDER_CACHE", default_value_t = 4_096)]
    pub render_cache: usize,
    /// How long a WebSocket client may take to send `connection_init` (close 4408 after).
    #[arg(long, env = "ORDERCAST_WS_INIT_TIMEOUT_MS", default_value_t = 3_000)]
    pub ws_init_timeout_ms: u64,
    /// Seconds between server pings on an idle WebSocket, so proxies keep it open.
    #[arg(long, env = "ORDERCAST_WS_KEEPALIVE_SECS", default_value_t = 15)]
    pub ws_keepalive_secs: u64,
}

impl LiveConfig {
    pub fn ws_settings(&self) -> crate::ws::WsSettings {
        crate::ws::WsSettings {
            init_timeout: Duration::from_millis(self.ws_init_timeout_ms),
            keepalive: Duration::from_secs(self.ws_keepalive_secs.max(1)),
        }
    }
}

impl Default for LiveConfig {
    fn default() -> Self {
        Self {
            cdc_topic: DEFAULT_CDC_TOPIC.to_owned(),
            cdc_gaps_topic: DEFAULT_CDC_GAPS_TOPIC.to_owned(),
            cdc_heartbeat_topic: DEFAULT_CDC_HEARTBEAT_TOPIC.to_owned(),
            subscriber_queue: 128,
            repair_concurrency: 4,
            render_cache: 4_096,
            ws_init_timeout_ms: 3_000,
            ws_keepalive_secs: 15,
        }
    }
}

/// Bounds that keep one abusive request from hurting everyone else.
#[derive(Debug, Clone, Args)]
pub struct Limits {
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "ORDERCAST_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,
    /// Deepest accepted selection set. GraphiQL's introspection query needs 15.
    #[arg(long, env = "ORDERCAST_MAX_QUERY_DEPTH", default_value_t = 16)]
    pub max_query_depth: usize,
    /// Highest accepted query complexity (list fields count once per requested item).
    #[arg(long, env = "ORDERCAST_MAX_QUERY_COMPLEXITY", default_value_t = 5_000)]
    pub max_query_complexity: usize,
    /// Largest `first` a connection accepts.
    #[arg(long, env = "ORDERCAST_MAX_PAGE_SIZE", default_value_t = 100)]
    pub max_page_size: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            max_query_depth: 16,
            max_query_complexity: 5_000,
            max_page_size: 100,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct TokenConfig {
    /// Customer id (uuid) or email address.
    #[arg(long)]
    pub customer: String,
    /// Lifetime of the token in seconds.
    #[arg(long, default_value_t = 86_400)]
    pub ttl: u64,
    #[command(flatten)]
    pub database: DatabaseConfig,
    #[command(flatten)]
    pub auth: AuthConfig,
}

impl TokenConfig {
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.ttl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(positive_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(positive_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(positive_duration("1h 30m"), Ok(Duration::from_secs(5_400)));
        assert!(positive_duration("0s").unwrap_err().contains("longer than zero"));
        assert!(positive_duration("seven days").unwrap_err().contains("examples"));
        assert!(positive_duration("-5m").is_err());
    }

    #[test]
    fn history_defaults_match_the_documented_ones() {
        let cli = Cli::try_parse_from(["ordercast", "serve"]).unwrap();
        let Command::Serve(serve) = cli.command else {
            panic!("serve parses as serve")
        };
        let documented = HistoryConfig::default();
        assert_eq!(serve.history.history_retention, documented.history_retention);
        assert_eq!(serve.history.history_prune_interval, documented.history_prune_interval);
        assert_eq!(serve.history.history_prune_batch, documented.history_prune_batch);
    }

    #[test]
    fn serve_defaults_point_at_the_local_stack() {
        use clap::CommandFactory;
        let cli = Cli::command();
        let serve = cli.find_subcommand("serve").unwrap();
        let default_of = |id: &str| {
            let arg = serve.get_arguments().find(|a| a.get_id() == id).unwrap();
            arg.get_default_values()[0].to_str().unwrap().to_owned()
        };
        assert_eq!(default_of("listen"), "127.0.0.1:8080");
        assert_eq!(default_of("kafka_brokers"), "127.0.0.1:19092");
        assert_eq!(
            default_of("database_url"),
            "postgres://ordercast:ordercast@127.0.0.1:55432/ordercast"
        );
        assert_eq!(default_of("jwt_secret"), DEVELOPMENT_JWT_SECRET);
    }
}
