//! Command line and environment configuration. Every default works against the
//! local stack that `make stack` starts. A leaf: it imports no other module of
//! ours, so every layer can depend on it and none of its types pull in a layer.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use secrecy::{ExposeSecret, SecretString};

/// The local stack's database; `make stack` creates it.
pub const DEFAULT_DATABASE_URL: &str = "postgres://ordercast:ordercast@127.0.0.1:55432/ordercast";
/// The local stack's Kafka broker (plaintext listener).
pub const DEFAULT_KAFKA_BROKERS: &str = "127.0.0.1:19092";
/// Debezium's topic of `order_versions`, the stream every instance follows.
pub const DEFAULT_CDC_TOPIC: &str = "ordercast.public.order_versions";
/// Debezium's topic of `cdc_gaps`: each record announces changes that were never captured.
pub const DEFAULT_CDC_GAPS_TOPIC: &str = "ordercast.public.cdc_gaps";
/// Debezium's heartbeat topic for the `ordercast` topic prefix.
pub const DEFAULT_CDC_HEARTBEAT_TOPIC: &str = "__debezium-heartbeat.ordercast";
/// Signing secret for development tokens only. `serve` warns loudly when it is used.
pub const DEVELOPMENT_JWT_SECRET: &str = "ordercast-development-secret-not-for-production";
/// Environment variables with this prefix set librdkafka properties (`ORDERCAST_KAFKA_SASL_USERNAME`).
pub const KAFKA_ENV_PREFIX: &str = "ORDERCAST_KAFKA_";

/// A configuration value that cannot be used; the message says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{source_name}: `{key}` is set by ordercast itself ({why}); remove it")]
    OwnedKafkaProperty {
        source_name: String,
        key: String,
        why: &'static str,
    },
    #[error("{source_name}: expected `property=value` (e.g. `security.protocol=SASL_SSL`), got `{text}`")]
    MalformedKafkaOption { source_name: String, text: String },
    #[error("{source_name}: the value is not valid UTF-8")]
    NotUnicode { source_name: String },
    #[error(
        "no key to verify tokens: set ORDERCAST_JWT_JWKS_URL (your identity provider's JWKS) or \
         ORDERCAST_JWT_PUBLIC_KEY_FILE; HS256 development tokens need a development run (--dev or ORDERCAST_DEV=1)"
    )]
    NoProviderKey,
    #[error("set one of ORDERCAST_JWT_JWKS_URL and ORDERCAST_JWT_PUBLIC_KEY_FILE, not both")]
    TwoKeySources,
}

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
    Token(Box<TokenConfig>),
    /// Print the GraphQL schema (SDL) that `serve` exposes.
    Sdl,
    /// Run one pass of history retention now and print what it removed.
    Prune(PruneConfig),
}

/// A Postgres connection URL. It carries the password, so it never prints
/// itself: `Debug`, `redacted` and `target` show everything but the password.
#[derive(Clone)]
pub struct DatabaseUrl {
    url: SecretString,
    redacted: String,
    target: String,
}

impl DatabaseUrl {
    /// The URL with its password, for the driver only.
    pub fn expose(&self) -> &str {
        self.url.expose_secret()
    }

    /// The URL with the password replaced by `***`: safe for logs and errors.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    /// Where it points, for messages: `host:port/database as user (sslmode=…)`.
    pub fn target(&self) -> &str {
        &self.target
    }
}

/// Never fails: clap would echo a refused value, password included. A URL the
/// driver cannot use is reported when `serve` or a command first connects.
impl FromStr for DatabaseUrl {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (redacted, target) = match url::Url::parse(text) {
            Ok(mut parsed) if matches!(parsed.scheme(), "postgres" | "postgresql") && parsed.has_host() => {
                let target = describe_target(&parsed);
                if parsed.password().is_some() {
                    let _ = parsed.set_password(Some("***"));
                }
                (parsed.into(), target)
            }
            // Anything else may hold the password where we cannot tell: say nothing of it.
            _ => {
                let unknown = "a DATABASE_URL that is not postgres://USER:PASSWORD@HOST:PORT/DATABASE";
                (format!("({unknown})"), unknown.to_owned())
            }
        };
        Ok(DatabaseUrl {
            url: SecretString::from(text.to_owned()),
            redacted,
            target,
        })
    }
}

fn describe_target(url: &url::Url) -> String {
    let sslmode = url
        .query_pairs()
        .find(|(key, _)| key == "sslmode")
        .map(|(_, mode)| mode.into_owned())
        .unwrap_or_else(|| "prefer".to_owned());
    let user = if url.username().is_empty() {
        "the OS user"
    } else {
        url.username()
    };
    format!(
        "{}:{}{} as {user} (sslmode={sslmode})",
        url.host_str().unwrap_or("localhost"),
        url.port().unwrap_or(5432),
        url.path(),
    )
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted)
    }
}

impl Default for DatabaseUrl {
    fn default() -> Self {
        DEFAULT_DATABASE_URL.parse().expect("the default database URL is valid")
    }
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseConfig {
    /// Postgres connection URL; TLS through `sslmode` (`verify-full` with `sslrootcert=PATH`
    /// in production). Defaults to the local stack's database.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, hide_default_value = true, hide_env_values = true)]
    pub database_url: DatabaseUrl,
    /// Upper bound of the connection pool of this instance.
    #[arg(long, env = "ORDERCAST_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            database_url: DatabaseUrl::default(),
            db_max_connections: 16,
        }
    }
}

/// How bearer tokens are verified and mapped to customers. Production reads
/// an identity provider's keys (a JWKS URL or a PEM public key); the HS256
/// secret serves development runs only, and `serve` refuses it otherwise.
#[derive(Debug, Clone, Args)]
pub struct AuthConfig {
    /// A development run: accept HS256 tokens signed with the development secret
    /// (`make run`, the tests and the bench set it). Never set it in production.
    #[arg(long = "dev", env = "ORDERCAST_DEV", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub dev: bool,
    /// HS256 secret of development tokens (`ordercast token`); used only by development runs.
    #[arg(long, env = "ORDERCAST_JWT_SECRET", default_value = DEVELOPMENT_JWT_SECRET, hide_default_value = true, hide_env_values = true)]
    pub jwt_secret: SecretString,
    /// The identity provider's JWKS URL (RS256, ES256, EdDSA keys, chosen by `kid`).
    #[arg(long, env = "ORDERCAST_JWT_JWKS_URL", conflicts_with = "jwt_public_key_file")]
    pub jwt_jwks_url: Option<url::Url>,
    /// Extra CA certificate (PEM) to trust when fetching the JWKS, for a provider behind a private CA.
    #[arg(long, env = "ORDERCAST_JWT_JWKS_CA_FILE", requires = "jwt_jwks_url")]
    pub jwt_jwks_ca_file: Option<PathBuf>,
    /// How soon an unknown `kid` may trigger another JWKS fetch: garbage tokens cannot hammer the provider.
    #[arg(long, env = "ORDERCAST_JWT_JWKS_REFRESH_INTERVAL", default_value = "10s", value_parser = positive_duration)]
    pub jwt_jwks_refresh_interval: Duration,
    /// A PEM public key (RSA, EC P-256/P-384 or Ed25519) that signs every token, instead of a JWKS.
    #[arg(long, env = "ORDERCAST_JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<PathBuf>,
    /// Required `iss` of provider tokens, when set.
    #[arg(long, env = "ORDERCAST_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Accepted `aud` values (comma-separated); when set, tokens must name one of them.
    #[arg(long, env = "ORDERCAST_JWT_AUDIENCE", value_delimiter = ',')]
    pub jwt_audience: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    #[arg(long, env = "ORDERCAST_JWT_LEEWAY_SECS", default_value_t = 5)]
    pub jwt_leeway_secs: u64,
    /// The claim naming the customer in provider tokens: a dotted path into the claims
    /// (`sub`, `app.customer`); a key that itself has dots (`https://example.com/customer`) matches whole.
    #[arg(long, env = "ORDERCAST_JWT_CUSTOMER_CLAIM", default_value = "sub")]
    pub jwt_customer_claim: String,
    /// Create the customer of a provider subject on its first valid token (email and
    /// name from the `email` and `name` claims). Without it an unknown subject is refused.
    #[arg(long, env = "ORDERCAST_JWT_PROVISION", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub jwt_provision: bool,
}

/// Where the keys that verify tokens come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The HS256 secret: development runs only. Tokens name the customer id in `sub`.
    DevelopmentSecret,
    /// An identity provider's JWKS.
    Jwks(url::Url),
    /// One PEM public key.
    PublicKeyFile(PathBuf),
}

impl AuthConfig {
    /// A development run's configuration with the given HS256 secret.
    pub fn development(secret: &str) -> Self {
        AuthConfig {
            dev: true,
            jwt_secret: SecretString::from(secret.to_owned()),
            jwt_jwks_url: None,
            jwt_jwks_ca_file: None,
            jwt_jwks_refresh_interval: Duration::from_secs(10),
            jwt_public_key_file: None,
            jwt_issuer: None,
            jwt_audience: Vec::new(),
            jwt_leeway_secs: 5,
            jwt_customer_claim: "sub".to_owned(),
            jwt_provision: false,
        }
    }

    pub fn is_development_secret(&self) -> bool {
        self.jwt_secret.expose_secret() == DEVELOPMENT_JWT_SECRET
    }

    /// The key source to use, or why none may be: outside a development run a
    /// provider key is required (fail closed).
    pub fn key_source(&self) -> Result<KeySource, ConfigError> {
        match (&self.jwt_jwks_url, &self.jwt_public_key_file) {
            (Some(url), None) => Ok(KeySource::Jwks(url.clone())),
            (None, Some(path)) => Ok(KeySource::PublicKeyFile(path.clone())),
            (Some(_), Some(_)) => Err(ConfigError::TwoKeySources),
            (None, None) if self.dev => Ok(KeySource::DevelopmentSecret),
            (None, None) => Err(ConfigError::NoProviderKey),
        }
    }
}

/// Where Kafka is and how to reach it: bootstrap servers and any librdkafka
/// property (TLS, SASL, timeouts), except those ordercast owns.
#[derive(Debug, Clone, Args)]
pub struct KafkaConfig {
    /// Kafka bootstrap servers carrying the Debezium change topics.
    #[arg(long, env = "KAFKA_BROKERS", default_value = DEFAULT_KAFKA_BROKERS)]
    pub kafka_brokers: String,
    /// A librdkafka property, `name=value` (repeatable), e.g. `security.protocol=SASL_SSL`.
    /// `ORDERCAST_KAFKA_<NAME>` sets the same from the environment (upper case, dots as
    /// underscores), which is the place for passwords; a flag wins over the environment.
    #[arg(long = "kafka-option", value_name = "NAME=VALUE", value_parser = parse_kafka_flag)]
    pub kafka_options: Vec<KafkaOption>,
}

impl KafkaConfig {
    pub fn new(brokers: impl Into<String>) -> Self {
        KafkaConfig {
            kafka_brokers: brokers.into(),
            kafka_options: Vec::new(),
        }
    }

    /// Adds the `ORDERCAST_KAFKA_*` properties of `vars` (the process environment),
    /// ahead of the flags so that a flag overrides the environment.
    pub fn add_env_options(
        &mut self,
        vars: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
    ) -> Result<(), ConfigError> {
        let mut from_env = Vec::new();
        for (name, value) in vars {
            let Some(name) = name.to_str() else { continue };
            let Some(suffix) = name.strip_prefix(KAFKA_ENV_PREFIX) else {
                continue;
            };
            let value = value.into_string().map_err(|_| ConfigError::NotUnicode {
                source_name: name.to_owned(),
            })?;
            let key = suffix.to_ascii_lowercase().replace('_', ".");
            from_env.push(KafkaOption::new(key, value, name)?);
        }
        from_env.sort_by(|a, b| a.key.cmp(&b.key));
        from_env.append(&mut self.kafka_options);
        self.kafka_options = from_env;
        Ok(())
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig::new(DEFAULT_KAFKA_BROKERS)
    }
}

/// One librdkafka property. Its value may be a password, so `Debug` shows it
/// only for properties that are never secret.
#[derive(Clone)]
pub struct KafkaOption {
    pub key: String,
    value: SecretString,
}

impl KafkaOption {
    /// Refuses what ordercast must own; `source_name` says where the property came from.
    pub fn new(key: String, value: String, source_name: &str) -> Result<Self, ConfigError> {
        if let Some(why) = owned_kafka_property(&key) {
            return Err(ConfigError::OwnedKafkaProperty {
                source_name: source_name.to_owned(),
                key,
                why,
            });
        }
        Ok(KafkaOption {
            key,
            value: SecretString::from(value),
        })
    }

    /// The value, for librdkafka only.
    pub fn expose_value(&self) -> &str {
        self.value.expose_secret()
    }

    /// The value, or `***` when the property holds a secret: safe for logs.
    pub fn display_value(&self) -> &str {
        if is_secret_kafka_property(&self.key) {
            "***"
        } else {
            self.value.expose_secret()
        }
    }
}

impl fmt::Debug for KafkaOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key, self.display_value())
    }
}

fn parse_kafka_flag(text: &str) -> Result<KafkaOption, ConfigError> {
    let malformed = || ConfigError::MalformedKafkaOption {
        source_name: "--kafka-option".to_owned(),
        text: text.to_owned(),
    };
    let (key, value) = text.split_once('=').ok_or_else(malformed)?;
    let key = key.trim();
    if key.is_empty() {
        return Err(malformed());
    }
    KafkaOption::new(key.to_owned(), value.to_owned(), "--kafka-option")
}

/// Why ordercast sets this property itself, if it does. Partitions are assigned
/// by hand from the latest offsets and nothing is committed: a group or an offset
/// policy from outside would take partitions from other instances or skip changes.
fn owned_kafka_property(key: &str) -> Option<&'static str> {
    match key {
        "bootstrap.servers" | "metadata.broker.list" => Some("use --kafka-brokers or KAFKA_BROKERS"),
        "group.id"
        | "group.instance.id"
        | "group.protocol"
        | "group.remote.assignor"
        | "partition.assignment.strategy" => {
            Some("every instance reads every partition without joining a consumer group")
        }
        "enable.auto.commit"
        | "auto.commit.interval.ms"
        | "enable.auto.offset.store"
        | "auto.offset.reset"
        | "offset.store.method" => Some("every instance starts at the latest offsets and never commits"),
        "enable.partition.eof" => Some("the consumer does not expect end-of-partition events"),
        _ => None,
    }
}

/// Properties whose values are credentials or private keys.
fn is_secret_kafka_property(key: &str) -> bool {
    key.contains("password")
        || key.contains("secret")
        || key == "ssl.key.pem"
        || key == "sasl.oauthbearer.config"
        || key.starts_with("sasl.jaas")
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
    #[command(flatten)]
    pub kafka: KafkaConfig,
    #[command(flatten)]
    pub topics: CdcTopics,
    #[command(flatten)]
    pub limits: Limits,
    #[command(flatten)]
    pub http: HttpConfig,
    #[command(flatten)]
    pub rates: RateLimits,
    #[command(flatten)]
    pub documents: DocumentsConfig,
    #[command(flatten)]
    pub live: LiveConfig,
    #[command(flatten)]
    pub websocket: WebSocketConfig,
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

/// The listener and the request path: what an instance admits, and how long it waits.
#[derive(Debug, Clone, Args)]
pub struct HttpConfig {
    /// Open connections (WebSockets included) one instance accepts; the next is answered
    /// 503 with `Retry-After` and closed. Keep it below the process's file descriptor limit.
    #[arg(long, env = "ORDERCAST_HTTP_MAX_CONNECTIONS", default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub http_max_connections: u32,
    /// How long a client may take to send a request's headers (slow clients are cut off).
    #[arg(long, env = "ORDERCAST_HTTP_HEADER_READ_TIMEOUT", default_value = "5s", value_parser = positive_duration)]
    pub http_header_read_timeout: Duration,
    /// How long one GraphQL request over HTTP may take before it is answered `UNAVAILABLE`.
    #[arg(long, env = "ORDERCAST_HTTP_REQUEST_TIMEOUT", default_value = "15s", value_parser = positive_duration)]
    pub http_request_timeout: Duration,
    /// GraphQL requests over HTTP served at once (default: ORDERCAST_DB_MAX_CONNECTIONS, so an
    /// admitted request never queues for a database connection); beyond it requests are
    /// refused at once with `UNAVAILABLE` and `Retry-After`.
    #[arg(long, env = "ORDERCAST_HTTP_MAX_CONCURRENT_REQUESTS", value_parser = clap::value_parser!(u32).range(1..))]
    pub http_max_concurrent_requests: Option<u32>,
    /// How long one write to a client may wait (its socket buffer full) before the
    /// connection is dropped: a client that stops reading a subscription stream frees it.
    #[arg(long, env = "ORDERCAST_HTTP_WRITE_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub http_write_timeout: Duration,
    /// Interval of heartbeats on an otherwise idle multipart or SSE subscription
    /// (Apollo's multipart protocol asks for 5 s), so proxies keep it open.
    #[arg(long, env = "ORDERCAST_HTTP_STREAM_HEARTBEAT", default_value = "5s", value_parser = positive_duration)]
    pub http_stream_heartbeat: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            http_max_connections: 20_000,
            http_header_read_timeout: Duration::from_secs(5),
            http_request_timeout: Duration::from_secs(15),
            http_max_concurrent_requests: None,
            http_write_timeout: Duration::from_secs(10),
            http_stream_heartbeat: Duration::from_secs(5),
        }
    }
}

/// Persisted operations: Automatic Persisted Queries, and trusted documents.
#[derive(Debug, Clone, Args)]
pub struct DocumentsConfig {
    /// A manifest of the operations the apps ship (Apollo's persisted query manifest, or a
    /// JSON object of id → document as Relay and GraphQL Codegen write it). When set, only
    /// those operations run, on every transport; anything else gets PERSISTED_QUERY_NOT_IN_LIST.
    #[arg(long, env = "ORDERCAST_TRUSTED_DOCUMENTS")]
    pub trusted_documents: Option<PathBuf>,
    /// Bytes of documents registered through Automatic Persisted Queries kept per instance.
    #[arg(long, env = "ORDERCAST_APQ_CACHE_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub apq_cache_bytes: u64,
}

impl Default for DocumentsConfig {
    fn default() -> Self {
        Self {
            trusted_documents: None,
            apq_cache_bytes: 8 * 1024 * 1024,
        }
    }
}

/// Per-customer budgets for writes, so that one account (or one stolen token)
/// cannot fill the database. Counted per instance.
#[derive(Debug, Clone, Args)]
pub struct RateLimits {
    /// Orders one customer may create per minute (per instance); bursts up to the same number.
    #[arg(long, env = "ORDERCAST_CREATE_ORDER_PER_MINUTE", default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..))]
    pub create_order_per_minute: u32,
    /// Mutations of any kind one customer may run per minute (per instance).
    #[arg(long, env = "ORDERCAST_MUTATIONS_PER_MINUTE", default_value_t = 1_200, value_parser = clap::value_parser!(u32).range(1..))]
    pub mutations_per_minute: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            create_order_per_minute: 60,
            mutations_per_minute: 1_200,
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

/// The Debezium topics an instance follows.
#[derive(Debug, Clone, Args)]
pub struct CdcTopics {
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
}

impl Default for CdcTopics {
    fn default() -> Self {
        Self {
            cdc_topic: DEFAULT_CDC_TOPIC.to_owned(),
            cdc_gaps_topic: DEFAULT_CDC_GAPS_TOPIC.to_owned(),
            cdc_heartbeat_topic: DEFAULT_CDC_HEARTBEAT_TOPIC.to_owned(),
        }
    }
}

/// The fan-out: how much a slow subscriber may queue, how repairs share Postgres.
#[derive(Debug, Clone, Args)]
pub struct LiveConfig {
    /// Updates queued per subscriber before it is resynced instead.
    #[arg(long, env = "ORDERCAST_SUBSCRIBER_QUEUE", default_value_t = 128)]
    pub subscriber_queue: usize,
    /// Subscribers that may read Postgres at once to catch up (gap repairs, reloads after a
    /// lag or an outage); the rest wait, so mutations keep their connections.
    #[arg(long, env = "ORDERCAST_LIVE_REPAIR_CONCURRENCY", default_value_t = 4)]
    pub repair_concurrency: usize,
    /// Bytes of rendered live updates kept for reuse: subscribers with the same
    /// selection of the same order share one rendering of each version.
    #[arg(long, env = "ORDERCAST_RENDER_CACHE_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub render_cache_bytes: u64,
}

impl Default for LiveConfig {
    fn default() -> Self {
        Self {
            subscriber_queue: 128,
            repair_concurrency: 4,
            render_cache_bytes: 16 * 1024 * 1024,
        }
    }
}

/// Timing of the WebSocket protocols.
#[derive(Debug, Clone, Args)]
pub struct WebSocketConfig {
    /// How long a WebSocket client may take to send `connection_init` (close 4408 after).
    #[arg(long, env = "ORDERCAST_WS_INIT_TIMEOUT_MS", default_value_t = 3_000)]
    pub ws_init_timeout_ms: u64,
    /// Seconds between server pings on an idle WebSocket, so proxies keep it open.
    #[arg(long, env = "ORDERCAST_WS_KEEPALIVE_SECS", default_value_t = 15)]
    pub ws_keepalive_secs: u64,
    /// Operations (subscriptions, queries, mutations) one WebSocket may run at once; the next
    /// `subscribe` gets an `error` with `LIMIT_EXCEEDED` until one completes.
    #[arg(long, env = "ORDERCAST_WS_MAX_OPERATIONS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub ws_max_operations: u64,
    /// How long sending one message may wait for a client that does not read; then the
    /// connection is dropped and its queues freed.
    #[arg(long, env = "ORDERCAST_WS_WRITE_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub ws_write_timeout: Duration,
    /// Largest message a WebSocket client may send, in bytes (close 1009 beyond).
    #[arg(long, env = "ORDERCAST_WS_MAX_MESSAGE_BYTES", default_value_t = 64 * 1024)]
    pub ws_max_message_bytes: usize,
}

impl WebSocketConfig {
    pub fn init_timeout(&self) -> Duration {
        Duration::from_millis(self.ws_init_timeout_ms)
    }

    pub fn keepalive(&self) -> Duration {
        Duration::from_secs(self.ws_keepalive_secs.max(1))
    }
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        Self {
            ws_init_timeout_ms: 3_000,
            ws_keepalive_secs: 15,
            ws_max_operations: 100,
            ws_write_timeout: Duration::from_secs(10),
            ws_max_message_bytes: 64 * 1024,
        }
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
    fn the_defaults_of_the_limits_and_the_history_are_the_documented_ones() {
        let cli = Cli::try_parse_from(["ordercast", "serve"]).unwrap();
        let Command::Serve(serve) = cli.command else {
            panic!("serve parses as serve")
        };
        assert_eq!(format!("{:?}", serve.http), format!("{:?}", HttpConfig::default()));
        assert_eq!(format!("{:?}", serve.rates), format!("{:?}", RateLimits::default()));
        assert_eq!(
            format!("{:?}", serve.documents),
            format!("{:?}", DocumentsConfig::default())
        );
        assert_eq!(
            format!("{:?}", serve.websocket),
            format!("{:?}", WebSocketConfig::default())
        );
        assert_eq!(format!("{:?}", serve.live), format!("{:?}", LiveConfig::default()));
        assert_eq!(format!("{:?}", serve.limits), format!("{:?}", Limits::default()));
        assert_eq!(
            format!("{:?}", serve.history),
            format!("{:?}", HistoryConfig::default())
        );
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
    fn env(pairs: &[(&str, &str)]) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
        pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
    }

    #[test]
    fn kafka_properties_come_from_the_environment_and_flags_override_them() {
        let cli = Cli::try_parse_from([
            "ordercast",
            "serve",
            "--kafka-option",
            "sasl.mechanism=PLAIN",
            "--kafka-option",
            "ssl.endpoint.identification.algorithm=none",
        ])
        .unwrap();
        let Command::Serve(mut serve) = cli.command else {
            panic!("serve parses as serve")
        };
        serve
            .kafka
            .add_env_options(env(&[
                ("ORDERCAST_KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
                ("ORDERCAST_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
                ("ORDERCAST_KAFKA_SASL_PASSWORD", "hunter2"),
                ("ORDERCAST_LISTEN", "ignored: not a Kafka property"),
            ]))
            .unwrap();
        let applied: Vec<(&str, &str)> = serve
            .kafka
            .kafka_options
            .iter()
            .map(|o| (o.key.as_str(), o.expose_value()))
            .collect();
        assert_eq!(
            applied,
            [
                ("sasl.mechanism", "SCRAM-SHA-512"),
                ("sasl.password", "hunter2"),
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanism", "PLAIN"),
                ("ssl.endpoint.identification.algorithm", "none"),
            ],
            "environment first (sorted), flags last, so the last setting of a property wins"
        );
    }

    #[test]
    fn properties_ordercast_owns_are_refused_with_the_reason() {
        let mut kafka = KafkaConfig::default();
        let error = kafka
            .add_env_options(env(&[("ORDERCAST_KAFKA_GROUP_ID", "mine")]))
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("ORDERCAST_KAFKA_GROUP_ID: `group.id` is set by ordercast"),
            "{error}"
        );
        for flag in [
            "auto.offset.reset=earliest",
            "enable.auto.commit=true",
            "bootstrap.servers=x:9092",
        ] {
            let error = Cli::try_parse_from(["ordercast", "serve", "--kafka-option", flag]).unwrap_err();
            assert!(error.to_string().contains("is set by ordercast"), "{flag}: {error}");
        }
        let error = Cli::try_parse_from(["ordercast", "serve", "--kafka-option", "no-equals-sign"]).unwrap_err();
        assert!(error.to_string().contains("expected `property=value`"), "{error}");
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let cli = Cli::try_parse_from([
            "ordercast",
            "serve",
            "--database-url",
            "postgres://app:db-pass-123@db.internal:5432/orders?sslmode=verify-full",
            "--jwt-secret",
            "jwt-secret-456",
            "--kafka-option",
            "sasl.password=sasl-pass-789",
            "--kafka-option",
            "sasl.username=ordercast",
        ])
        .unwrap();
        let printed = format!("{cli:?} {cli:#?}");
        for secret in ["db-pass-123", "jwt-secret-456", "sasl-pass-789"] {
            assert!(!printed.contains(secret), "{secret} printed in {printed}");
        }
        assert!(printed.contains("postgres://app:***@db.internal:5432/orders?sslmode=verify-full"));
        assert!(
            printed.contains("sasl.username=ordercast"),
            "non-secret options stay readable"
        );
    }

    #[test]
    fn the_target_names_everything_but_the_password() {
        let target = |text: &str| text.parse::<DatabaseUrl>().unwrap().target().to_owned();
        assert_eq!(
            target("postgres://app:s3cret@db.internal:6432/orders?sslmode=verify-full&sslrootcert=/ca.pem"),
            "db.internal:6432/orders as app (sslmode=verify-full)"
        );
        assert_eq!(target("postgres://h/d"), "h:5432/d as the OS user (sslmode=prefer)");
        assert!(!target("mysql:/x:secret-1@y").contains("secret"));
        assert!(!target("postgres:/x:secret-1@y").contains("secret"));
    }

    #[test]
    fn a_database_url_is_never_echoed_even_when_malformed() {
        let url: DatabaseUrl = "postgres://u@h/d".parse().unwrap();
        assert_eq!(url.redacted(), "postgres://u@h/d");
        for garbled in ["postgres//user:pa ss@host", "mysql:/x:pa ss@y", "postgres:/x:pa ss@y"] {
            let url: DatabaseUrl = garbled.parse().unwrap();
            assert!(!format!("{url:?} {}", url.redacted()).contains("pa ss"), "{garbled}");
        }
        let cli = Cli::try_parse_from(["ordercast", "migrate", "--database-url", "mysql:/x:secret-1@y"]);
        assert!(
            cli.is_ok(),
            "accepted here, refused with a redacted message on first connect"
        );
    }
}
