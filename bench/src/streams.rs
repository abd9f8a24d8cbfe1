//! The bench's subscriptions over plain HTTP: one request per subscription,
//! its results framed as Apollo's multipart parts or graphql-sse events.
//! Only what the measurements need: the version of each result, as it arrives.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use serde_json::{json, Value};
use uuid::Uuid;

/// How a subscriber receives its updates (`--transport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Transport {
    /// graphql-transport-ws, one WebSocket per subscriber.
    Ws,
    /// Server-Sent Events (graphql-sse, distinct connections), one HTTP request each.
    Sse,
    /// Apollo's multipart HTTP subscriptions, one HTTP request each.
    Multipart,
}

impl Transport {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Transport::Ws => "WebSocket",
            Transport::Sse => "SSE",
            Transport::Multipart => "multipart HTTP",
        }
    }

    fn accept(self) -> &'static str {
        match self {
            Transport::Ws => unreachable!("WebSocket subscribers do not stream over HTTP"),
            Transport::Sse => "text/event-stream",
            Transport::Multipart => "multipart/mixed;boundary=graphql;subscriptionSpec=1.0",
        }
    }

    /// Where one message ends.
    fn separator(self) -> &'static str {
        match self {
            Transport::Sse => "\n\n",
            _ => "\r\n--graphql",
        }
    }
}

/// One open subscription stream; `buffer` holds what was read past the last message.
pub(crate) struct HttpSubscriber {
    transport: Transport,
    response: reqwest::Response,
    buffer: String,
}

impl HttpSubscriber {
    /// Subscribes to `order` and waits for its SNAPSHOT.
    pub(crate) async fn open(addr: SocketAddr, transport: Transport, token: &str, order: Uuid) -> Result<Self> {
        // One client (one connection) per subscriber, as devices are.
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        let response = http
            .post(format!("http://{addr}/graphql"))
            .bearer_auth(token)
            .header("accept", transport.accept())
            .json(&json!({
                "query": "subscription($o: ID!) { orderUpdates(orderId: $o) { version change } }",
                "variables": { "o": order },
            }))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("the subscription was answered {}", response.status());
        }
        let mut subscriber = HttpSubscriber {
            transport,
            response,
            buffer: String::new(),
        };
        let first = tokio::time::timeout(Duration::from_secs(30), subscriber.next_update())
            .await
            .map_err(|_| anyhow!("timed out waiting for the SNAPSHOT"))??;
        match first {
            Some(update) if update["change"] == "SNAPSHOT" => Ok(subscriber),
            other => bail!("first result is not a SNAPSHOT: {other:?}"),
        }
    }

    /// The next `orderUpdates` object, skipping heartbeats; `None` once the stream ended.
    pub(crate) async fn next_update(&mut self) -> Result<Option<Value>> {
        loop {
            while let Some(end) = self.buffer.find(self.transport.separator()) {
                let message: String = self.buffer.drain(..end + self.transport.separator().len()).collect();
                if let Some(update) = self.update_in(&message) {
                    return Ok(Some(update));
                }
            }
            match self.response.chunk().await? {
                Some(bytes) => self.buffer.push_str(std::str::from_utf8(&bytes)?),
                None => return Ok(None),
            }
        }
    }

    fn update_in(&self, message: &str) -> Option<Value> {
        let json = match self.transport {
            Transport::Sse => message.lines().find_map(|line| line.strip_prefix("data: "))?,
            _ => message.split_once("\r\n\r\n")?.1.trim_end_matches("\r\n--graphql"),
        };
        let body: Value = serde_json::from_str(json).ok()?;
        let response = body.get("payload").unwrap_or(&body);
        response.get("data")?.get("orderUpdates").cloned()
    }
}
