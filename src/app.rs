//! Assembles an ordercast instance: migrations, pool, CDC consumer, hub,
//! schema, router, listener. `main` and the integration tests start instances
//! the same way.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth::Authenticator;
use crate::cdc::{self, CdcConfig, CdcStatus};
use crate::config::{DrainConfig, ServeConfig};
use crate::domain::WriteBudgets;
use crate::graphql::{LiveExecutor, PersistedDocuments};
use crate::http::{router, AppState, RequestLimits};
use crate::live::{self, Hub};
use crate::server::ListenerSettings;
use crate::ws::WsSettings;
use crate::{db, graphql, server, telemetry};

/// A bound, ready-to-run instance.
pub struct Application {
    listener: TcpListener,
    router: Router,
    listener_settings: ListenerSettings,
    local_addr: SocketAddr,
    hub: Arc<Hub>,
    cdc_status: Arc<CdcStatus>,
    database: Arc<db::DatabaseStatus>,
    draining: Arc<AtomicBool>,
    drain: DrainConfig,
    shutdown: watch::Sender<bool>,
    close_streams: watch::Sender<bool>,
}

impl Application {
    /// Checks the Kafka settings, opens the pool, starts waiting for Postgres
    /// (then migrating) and consuming change events in the background, and
    /// binds the listener (port 0 picks a free one). Only bad configuration
    /// fails here: an unreachable Postgres or Kafka is a readiness reason.
    pub async fn build(config: ServeConfig) -> anyhow::Result<Self> {
        telemetry::prometheus();
        let cdc_config = CdcConfig::new(config.kafka.clone(), &config.topics);
        cdc_config.validate()?;
        tracing::info!(
            database = config.database.database_url.redacted(),
            kafka = %config.kafka.kafka_brokers,
            kafka_options = ?config.kafka.kafka_options,
            "starting"
        );
        let pool = db::connect(&config.database)
            .await
            .context("opening the Postgres pool")?;
        let authenticator = Arc::new(Authenticator::from_config(&config.auth, pool.clone())?);
        if authenticator.is_development() && config.auth.is_development_secret() {
            tracing::warn!(keys = %authenticator.description, "development run (--dev) with the secret published in the repository: never expose it to real users");
        } else if authenticator.is_development() {
            tracing::info!(keys = %authenticator.description, "development run (--dev)");
        } else {
            tracing::info!(keys = %authenticator.description, "verifying tokens");
            tokio::spawn({
                let authenticator = authenticator.clone();
                async move { authenticator.warm_up().await }
            });
        }
        let database = Arc::new(db::DatabaseStatus::default());
        tokio::spawn(db::prepare(config.database.clone(), database.clone()));
        let hub = Hub::new(config.live.subscriber_queue, config.live.repair_concurrency);
        tokio::spawn(live::run_recovery(pool.clone(), hub.clone()));
        tokio::spawn(db::prune_forever(config.database.clone(), config.history.clone()));
        let cdc_status = Arc::new(CdcStatus::default());
        tokio::spawn(cdc::run(cdc_config, hub.clone(), cdc_status.clone()));

        let (shutdown, shutdown_watch) = watch::channel(false);
        let (close_streams, closing_streams) = watch::channel(false);
        let draining = Arc::new(AtomicBool::new(false));
        let budgets = Arc::new(WriteBudgets::new(&config.rates));
        tokio::spawn(forget_idle_budgets(budgets.clone()));
        let schema = graphql::build_schema(pool.clone(), hub.clone(), &config.limits, budgets);
        let documents = Arc::new(PersistedDocuments::new(
            config.documents.trusted_documents.as_deref(),
            config.documents.apq_cache_bytes,
        )?);
        if let Some(count) = documents.trusted_count() {
            tracing::info!(documents = count, "running trusted documents only");
        }
        let live = LiveExecutor::new(
            schema.clone(),
            pool.clone(),
            hub.clone(),
            config.live.render_cache_bytes,
            documents.clone(),
        );
        let state = AppState {
            schema,
            live,
            db: pool,
            authenticator,
            cdc: cdc_status.clone(),
            database: database.clone(),
            max_body_bytes: config.limits.max_body_bytes,
            requests: RequestLimits::new(&config.http, &config.database),
            documents,
            ws: WsSettings::from(&config.websocket),
            stream_heartbeat: config.http.http_stream_heartbeat,
            closing_streams,
            draining: draining.clone(),
            shutdown: shutdown_watch,
        };
        let router = router(state);
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let local_addr = listener.local_addr()?;
        Ok(Self {
            listener,
            router,
            listener_settings: ListenerSettings::from(&config.http),
            local_addr,
            hub,
            cdc_status,
            database,
            draining,
            drain: config.drain,
            shutdown,
            close_streams,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Waits until Postgres is migrated and the CDC consumer is assigned to its
    /// topic, so that a subscription started now sees every later commit. Gives
    /// up after `limit`.
    pub async fn wait_until_live(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while !(self.database.is_ready() && self.cdc_status.is_ready()) {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    pub fn hub(&self) -> Arc<Hub> {
        self.hub.clone()
    }

    /// Serves until `shutdown` resolves, then drains: `/readyz` answers 503 at
    /// once, the listener stays open for the configured delay (load balancers
    /// notice), then closes; in-flight requests get the configured deadline to
    /// finish (multipart and SSE streams end at once); then every WebSocket is
    /// closed with 1001.
    pub async fn run_until(self, shutdown: impl std::future::Future<Output = ()> + Send + 'static) {
        let (stop_accepting, stopped) = tokio::sync::oneshot::channel::<()>();
        let serve = server::serve(self.listener, self.router, self.listener_settings, async {
            let _ = stopped.await;
        });
        let mut serve = Box::pin(serve);
        async {
            tokio::select! {
                () = &mut serve => return,
                () = shutdown => {}
            }
            self.draining.store(true, Ordering::Release);
            tracing::info!(delay = ?self.drain.delay(), "draining: /readyz answers 503");
            tokio::select! {
                () = &mut serve => return,
                () = tokio::time::sleep(self.drain.delay()) => {}
            }
            let _ = stop_accepting.send(());
            // HTTP streams never end on their own: they would hold the drain to its deadline.
            let _ = self.close_streams.send(true);
            if tokio::time::timeout(self.drain.timeout(), &mut serve).await.is_err() {
                tracing::warn!(
                    deadline = ?self.drain.timeout(),
                    "in-flight requests did not finish within the shutdown deadline; they end with the process"
                );
            }
        }
        .await;
        // Dropping the server drops the router, and with it every receiver but the sockets'.
        drop(serve);
        let _ = self.shutdown.send(true);
        // Each WebSocket task holds a receiver until it has sent its close frame.
        if tokio::time::timeout(Duration::from_secs(2), self.shutdown.closed())
            .await
            .is_err()
        {
            tracing::warn!("some WebSockets did not close within 2 s of the shutdown");
        }
    }
}

/// Keeps the budgets' memory to the customers who wrote in the last minute.
async fn forget_idle_budgets(budgets: Arc<WriteBudgets>) {
    let mut every_minute = tokio::time::interval(Duration::from_secs(60));
    loop {
        every_minute.tick().await;
        budgets.forget_idle();
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
