//! Reaching Postgres: one direct connection that tells why it failed (the pool
//! only says it timed out), and the wait at start-up that turns the answer into
//! one log line and a readiness reason instead of a crash loop.

use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sea_orm::sqlx::postgres::{PgConnectOptions, PgConnection};
use sea_orm::sqlx::{self, Connection};

use crate::config::DatabaseConfig;

/// How long one attempt may take before it counts as "no answer".
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between attempts while Postgres cannot be reached.
const RETRY_EVERY: Duration = Duration::from_secs(2);

/// Why Postgres cannot be used, in one line that says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot connect to Postgres at {target}: {cause}; {hint}")]
pub struct Unreachable {
    /// `host:port/database as user (sslmode=…)`, never the password.
    pub target: String,
    pub cause: String,
    pub hint: &'static str,
}

/// Opens and closes one connection; on failure, says why and what to do.
pub async fn probe(config: &DatabaseConfig) -> Result<(), Unreachable> {
    let url = config.database_url.expose();
    let unreachable = |cause: String, hint: &'static str| Unreachable {
        target: config.database_url.target().to_owned(),
        cause,
        hint,
    };
    let options = PgConnectOptions::from_str(url)
        .map_err(|e| unreachable(e.to_string(), "fix DATABASE_URL (see the README's Production section)"))?;
    match tokio::time::timeout(PROBE_TIMEOUT, PgConnection::connect_with(&options)).await {
        Err(_) => Err(unreachable(
            format!("no answer within {} s", PROBE_TIMEOUT.as_secs()),
            "check the host, the port and any firewall between them",
        )),
        Ok(Err(error)) => {
            let hint = hint_for(&error);
            Err(unreachable(cause_of(&error), hint))
        }
        Ok(Ok(connection)) => {
            let _ = connection.close().await;
            Ok(())
        }
    }
}

/// The innermost useful message of a connection error, on one line.
fn cause_of(error: &sqlx::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text = format!("{text}: {inner_text}");
        }
        source = inner.source();
    }
    text.replace('\n', " ")
}

fn hint_for(error: &sqlx::Error) -> &'static str {
    const TLS_HINT: &str = "the TLS handshake failed: sslrootcert must name the CA that signed the server's certificate, and the host must match it";
    // rustls reports a refused certificate through the I/O error of the handshake.
    let text = error.to_string();
    if text.contains("certificate") || text.contains("TLS") || text.contains("tls") {
        return TLS_HINT;
    }
    match error {
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "nothing listens there: is Postgres running? (the local stack: `make stack`)"
        }
        sqlx::Error::Io(_) => "check the host and the port in DATABASE_URL",
        sqlx::Error::Tls(_) => TLS_HINT,
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("28P01" | "28000") => "check the user and password in DATABASE_URL",
            Some("3D000") => "create the database, or fix its name in DATABASE_URL",
            _ => "see the server's log",
        },
        _ => "check DATABASE_URL",
    }
}

/// Whether Postgres has been reached and migrated; until then, why not.
#[derive(Debug, Default)]
pub struct DatabaseStatus {
    state: Mutex<Preparation>,
}

#[derive(Debug, Default, Clone)]
enum Preparation {
    #[default]
    Connecting,
    Waiting(String),
    Ready,
}

impl DatabaseStatus {
    pub fn is_ready(&self) -> bool {
        matches!(*self.lock(), Preparation::Ready)
    }

    /// Why the database cannot be used yet; `None` once it can.
    pub fn waiting_reason(&self) -> Option<String> {
        match &*self.lock() {
            Preparation::Connecting => Some("connecting to Postgres".to_owned()),
            Preparation::Waiting(reason) => Some(reason.clone()),
            Preparation::Ready => None,
        }
    }

    fn set(&self, state: Preparation) {
        *self.lock() = state;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Preparation> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Waits until Postgres answers, then migrates. Each distinct failure is logged
/// once (a reminder every minute while it lasts), so a wrong certificate or a
/// stopped database is one clear line, not a flood or a crash loop.
pub async fn prepare(config: DatabaseConfig, status: Arc<DatabaseStatus>) {
    let mut last_logged: Option<(Unreachable, tokio::time::Instant)> = None;
    loop {
        let attempt = match probe(&config).await {
            Ok(()) => super::migrate(&config).await.map_err(|error| Unreachable {
                target: config.database_url.target().to_owned(),
                cause: format!("applying migrations failed: {error}"),
                hint: "see the error; the instance retries",
            }),
            Err(unreachable) => Err(unreachable),
        };
        match attempt {
            Ok(()) => {
                if last_logged.is_some() {
                    tracing::info!("Postgres reachable again; migrations applied");
                }
                status.set(Preparation::Ready);
                return;
            }
            Err(unreachable) => {
                let repeat = last_logged
                    .as_ref()
                    .is_some_and(|(last, at)| *last == unreachable && at.elapsed() < Duration::from_secs(60));
                if !repeat {
                    tracing::error!("{unreachable}");
                    last_logged = Some((unreachable.clone(), tokio::time::Instant::now()));
                }
                status.set(Preparation::Waiting(unreachable.to_string()));
            }
        }
        tokio::time::sleep(RETRY_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closed_port_is_refused_at_once_with_a_hint() {
        let config = DatabaseConfig {
            database_url: "postgres://u:p@127.0.0.1:9/d".parse().unwrap(),
            ..DatabaseConfig::default()
        };
        let error = probe(&config).await.unwrap_err();
        assert_eq!(error.target, "127.0.0.1:9/d as u (sslmode=prefer)");
        assert!(error.hint.contains("make stack"), "{error}");
        assert!(!error.to_string().contains(":p@"), "{error}");
    }
}
