//! Shared integration-test helpers: start real ordercast instances on random
//! ports against the real stack (`make stack`), and make isolated test data.
#![allow(dead_code)]

use std::time::Duration;

use ordercast::app::Application;
use ordercast::auth::DevelopmentTokens;
use ordercast::config::{
    AuthConfig, CdcTopics, DatabaseConfig, DocumentsConfig, DrainConfig, HistoryConfig, HttpConfig, KafkaConfig,
    Limits, LiveConfig, RateLimits, ServeConfig, WebSocketConfig, DEFAULT_DATABASE_URL, DEFAULT_KAFKA_BROKERS,
};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use serde_json::{json, Value};
use uuid::Uuid;

pub mod http_stream;
pub mod kafka;
pub mod process;
pub mod stack;
pub mod ws;

/// Anything that serves ordercast over HTTP: an in-process `TestApp`, or an instance process.
pub trait Endpoint {
    /// `http://IP:PORT`
    fn base_url(&self) -> &str;
}

impl Endpoint for TestApp {
    fn base_url(&self) -> &str {
        &self.base_url
    }
}

pub const TEST_JWT_SECRET: &str = "ordercast-integration-test-secret";

pub fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned())
}

pub fn kafka_brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| DEFAULT_KAFKA_BROKERS.to_owned())
}

/// Write budget per customer of the instances tests start (in process or as processes).
pub const TEST_WRITES_PER_MINUTE: u32 = 1_000_000;
/// GraphQL requests over HTTP the instances tests start admit at once.
pub const TEST_MAX_CONCURRENT_REQUESTS: u32 = 1_024;

pub fn serve_config() -> ServeConfig {
    ServeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        database: DatabaseConfig {
            database_url: database_url().parse().expect("DATABASE_URL is a postgres:// URL"),
            db_max_connections: 16,
        },
        auth: AuthConfig::development(TEST_JWT_SECRET),
        kafka: KafkaConfig::new(kafka_brokers()),
        topics: CdcTopics::default(),
        limits: Limits::default(),
        // Tests race dozens of requests at one instance on purpose; admission has its own tests.
        http: HttpConfig {
            http_max_concurrent_requests: Some(TEST_MAX_CONCURRENT_REQUESTS),
            ..HttpConfig::default()
        },
        documents: DocumentsConfig::default(),
        // Tests drive one customer far harder than a person does; the budgets have their own tests.
        rates: RateLimits {
            create_order_per_minute: TEST_WRITES_PER_MINUTE,
            mutations_per_minute: TEST_WRITES_PER_MINUTE,
        },
        live: LiveConfig::default(),
        websocket: WebSocketConfig::default(),
        drain: DrainConfig::default(),
        history: HistoryConfig::default(),
    }
}

/// One running instance, with its own pool, and a direct database handle for
/// arranging and checking state behind the API's back.
pub struct TestApp {
    pub base_url: String,
    pub http: reqwest::Client,
    pub db: DatabaseConnection,
    pub keys: DevelopmentTokens,
    /// Dropping it (with the `TestApp`) shuts the instance down, as SIGTERM would.
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(serve_config()).await
}

pub async fn spawn_app_with(config: ServeConfig) -> TestApp {
    ordercast::telemetry::init(ordercast::config::LogFormat::Text);
    let database = config.database.clone();
    let app = Application::build(config)
        .await
        .expect("ordercast starts; is the stack up? run `make stack`");
    assert!(
        app.wait_until_live(Duration::from_secs(30)).await,
        "the CDC consumer never reached Kafka"
    );
    let base_url = format!("http://{}", app.local_addr());
    let (shutdown, signal) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async move {
        let _ = signal.await;
    }));
    let db = ordercast::db::connect(&DatabaseConfig {
        db_max_connections: 4,
        ..database
    })
    .await
    .unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    TestApp {
        base_url,
        http,
        db,
        keys: DevelopmentTokens::new(TEST_JWT_SECRET),
        shutdown: Some(shutdown),
    }
}

impl TestApp {
    /// Starts the instance's graceful shutdown, as SIGTERM does.
    pub fn shut_down(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    pub fn token(&self, customer: Uuid) -> String {
        self.keys.mint(customer, Duration::from_secs(3600))
    }

    /// POSTs one GraphQL request; `token` is sent as a bearer token.
    pub async fn graphql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let mut request = self.http.post(format!("{}/graphql", self.base_url)).json(&json!({
            "query": query,
            "variables": variables,
        }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request reaches ordercast");
        response.json().await.expect("GraphQL responses are JSON")
    }

    /// Like `graphql`, but panics unless the response has data and no errors.
    pub async fn ok(&self, token: &str, query: &str, variables: Value) -> Value {
        let response = self.graphql(Some(token), query, variables).await;
        assert!(response.get("errors").is_none(), "unexpected errors: {response}");
        response["data"].clone()
    }

    pub async fn new_customer(&self) -> Uuid {
        new_customer(&self.db).await
    }

    pub async fn new_product(&self, price_cents: i64, available: bool) -> Uuid {
        new_product(&self.db, price_cents, available).await
    }

    /// Creates an order for `customer` through the API and returns its id.
    pub async fn new_order(&self, token: &str) -> String {
        let data = self.ok(token, "mutation { createOrder { id } }", json!({})).await;
        data["createOrder"]["id"].as_str().unwrap().to_owned()
    }

    pub async fn scalar_i64(&self, sql: &str, values: Vec<sea_orm::Value>) -> i64 {
        scalar_i64(&self.db, sql, values).await
    }

    /// The instance's Prometheus text from `/metrics`.
    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base_url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// The `extensions.code` of the first error, if any.
pub fn error_code(response: &Value) -> Option<&str> {
    response["errors"][0]["extensions"]["code"].as_str()
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", Uuid::now_v7().simple())
}

pub async fn new_customer(db: &DatabaseConnection) -> Uuid {
    let id = Uuid::now_v7();
    let email = format!("{}@test.example", unique("customer"));
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "INSERT INTO customers (id, email, display_name) VALUES ($1, $2, 'Test customer')",
        [id.into(), email.into()],
    ))
    .await
    .unwrap();
    id
}

pub async fn new_product(db: &DatabaseConnection, price_cents: i64, available: bool) -> Uuid {
    let id = Uuid::now_v7();
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "INSERT INTO products (id, sku, name, price_cents, available) VALUES ($1, $2, 'Test product', $3, $4)",
        [id.into(), unique("SKU").into(), price_cents.into(), available.into()],
    ))
    .await
    .unwrap();
    id
}

/// Runs one SQL statement behind the API's back; panics with the statement if it fails.
pub async fn execute(db: &impl ConnectionTrait, sql: &str, values: Vec<sea_orm::Value>) {
    db.execute_raw(Statement::from_sql_and_values(DbBackend::Postgres, sql, values))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

pub async fn scalar_i64(db: &DatabaseConnection, sql: &str, values: Vec<sea_orm::Value>) -> i64 {
    let row = db
        .query_one_raw(Statement::from_sql_and_values(DbBackend::Postgres, sql, values))
        .await
        .unwrap()
        .expect("one row");
    row.try_get_by_index::<i64>(0).unwrap()
}
