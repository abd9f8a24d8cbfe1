//! The listener: accepts TCP connections and serves each with hyper, bounded.
//!
//! `axum::serve` exposes neither a header-read timeout nor a connection limit,
//! so the accept loop is ours (hyper-util's documented pattern): at most
//! `max_connections` open at once (WebSockets included: the handler keeps the
//! connection's `ConnectionSlot` for as long as the socket lives), the next one
//! is answered 503 and closed; a client gets `header_read_timeout` to send its
//! headers (slowloris), and one write may wait at most `write_timeout` for a
//! client that stopped reading (a subscription stream would otherwise hold its
//! connection and queues forever: hyper has no write timeout). Stopping closes the listener and lets open requests
//! finish (hyper's graceful shutdown); upgraded sockets close on their own
//! shutdown signal.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_io_timeout::TimeoutStream;
use tower::ServiceExt;

use crate::domain::ErrorCode;
use crate::telemetry::metric;

/// What the listener admits.
#[derive(Debug, Clone, Copy)]
pub struct ListenerSettings {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub write_timeout: Duration,
}

impl From<&crate::config::HttpConfig> for ListenerSettings {
    fn from(config: &crate::config::HttpConfig) -> Self {
        ListenerSettings {
            max_connections: usize::try_from(config.http_max_connections).unwrap_or(usize::MAX),
            header_read_timeout: config.http_header_read_timeout,
            write_timeout: config.http_write_timeout,
        }
    }
}

/// One of the instance's connection slots, held by every request of the
/// connection (as a request extension) and by a WebSocket upgraded from it.
#[derive(Clone)]
pub struct ConnectionSlot {
    _held: Arc<HeldSlot>,
}

impl ConnectionSlot {
    fn new(permit: OwnedSemaphorePermit) -> Self {
        metrics::gauge!(metric::HTTP_OPEN_CONNECTIONS).increment(1.0);
        ConnectionSlot {
            _held: Arc::new(HeldSlot { _permit: permit }),
        }
    }
}

/// Gives the slot back when the connection, and any socket upgraded from it, is gone.
struct HeldSlot {
    _permit: OwnedSemaphorePermit,
}

impl Drop for HeldSlot {
    fn drop(&mut self) {
        metrics::gauge!(metric::HTTP_OPEN_CONNECTIONS).decrement(1.0);
    }
}

/// Refused connections being answered at once; beyond this many they are dropped unanswered.
const REFUSALS_IN_FLIGHT: usize = 256;
/// The most of a refused connection's request read before it is answered.
const REFUSAL_HEAD_BYTES: usize = 16 * 1024;
/// How long answering a refused connection may take.
const REFUSAL_DEADLINE: Duration = Duration::from_secs(2);

/// Serves `router` on `listener` until `stop` resolves, then until every open
/// request has been answered.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    settings: ListenerSettings,
    stop: impl std::future::Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let refusals = Arc::new(Semaphore::new(REFUSALS_IN_FLIGHT));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(error) => {
                    accept_failed(error).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        // Small frames (live updates) must not wait for Nagle's algorithm.
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            refuse(tcp, &refusals, settings.max_connections);
            continue;
        };
        let slot = ConnectionSlot::new(permit);
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(slot.clone());
            router.clone().oneshot(request)
        });
        let mut io = TimeoutStream::new(tcp);
        io.set_write_timeout(Some(settings.write_timeout));
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(Box::pin(io)), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Accept errors are about one connection (reset before accept) or about the
/// process (out of file descriptors): the latter would spin, so it waits.
async fn accept_failed(error: std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused
    ) {
        return;
    }
    tracing::warn!(%error, "accepting a connection failed; retrying in 100 ms");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Answers a connection over the limit with a 503 and closes it: the client
/// learns why, and when to come back. Bounded: at most `REFUSALS_IN_FLIGHT`
/// at once for at most `REFUSAL_DEADLINE` each.
fn refuse(mut tcp: TcpStream, refusals: &Arc<Semaphore>, max_connections: usize) {
    metrics::counter!(metric::HTTP_REFUSED, "reason" => "connections").increment(1);
    let Ok(permit) = refusals.clone().try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        let _permit = permit;
        let answer = refusal_response(max_connections);
        let _ = tokio::time::timeout(REFUSAL_DEADLINE, async {
            // HTTP clients take an answer that comes before their request for a broken
            // connection: read the request's head first (without parsing it).
            let mut head = Vec::with_capacity(1024);
            let mut chunk = [0u8; 1024];
            while !head.windows(4).any(|window| window == b"\r\n\r\n") && head.len() < REFUSAL_HEAD_BYTES {
                let read = tcp.read(&mut chunk).await?;
                if read == 0 {
                    return Ok(());
                }
                head.extend_from_slice(&chunk[..read]);
            }
            tcp.write_all(answer.as_bytes()).await?;
            tcp.shutdown().await?;
            // Read what else the client sent until it closes, so that closing does not reset
            // the connection and destroy the answer before the client reads it.
            while tcp.read(&mut chunk).await? > 0 {}
            Ok::<_, std::io::Error>(())
        })
        .await;
    });
}

fn refusal_response(max_connections: usize) -> String {
    let message = format!("this instance has {max_connections} open connections, the most it accepts; retry shortly");
    let body = crate::graphql::error_response_body(ErrorCode::Unavailable, &message).to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_a_complete_http_response_with_a_json_error() {
        let response = refusal_response(3);
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["errors"][0]["extensions"]["code"], "UNAVAILABLE");
        assert!(body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("3 open connections"));
    }
}
