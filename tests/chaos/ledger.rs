//! What the fault suite records and checks: every write the writer made (acknowledged with its
//! version, or refused with its code), and every update the watchers received, checked against
//! the live contract as it arrives (no gap, duplicate or reorder without `resync`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::common::ws::{Event, WsClient};
use crate::common::Endpoint;
use crate::support::{my_order_updates, order_updates, Update};

/// One write of the writer.
#[derive(Debug, Clone)]
pub struct Write {
    pub order: String,
    pub started: Instant,
    pub finished: Instant,
    /// The committed version, or the error code (`TRANSPORT` when no answer came).
    pub outcome: Result<i64, String>,
}

/// Everything seen, shared by the writer, the watchers and the suite.
#[derive(Debug, Default)]
pub struct Ledger {
    pub writes: Vec<Write>,
    /// Per order: each version its `orderUpdates` watcher reached, and when, ascending.
    pub reached: HashMap<String, Vec<(i64, Instant)>>,
    /// Per order: the last version the `myOrderUpdates` watcher holds.
    pub mine: HashMap<String, i64>,
    pub violations: Vec<(Instant, String)>,
    /// Subscriptions that ended with an error, by code, and when.
    pub subscription_errors: Vec<(Instant, String)>,
}

pub type Shared = Arc<Mutex<Ledger>>;

impl Ledger {
    /// The last version the `orderUpdates` watcher of `order` holds.
    pub fn watched(&self, order: &str) -> i64 {
        self.reached.get(order).and_then(|r| r.last()).map_or(0, |(v, _)| *v)
    }

    /// When the `orderUpdates` watcher first held `version` (or a later one) of `order`.
    pub fn reached_at(&self, order: &str, version: i64) -> Option<Instant> {
        self.reached
            .get(order)?
            .iter()
            .find(|(v, _)| *v >= version)
            .map(|(_, at)| *at)
    }
}

/// A base URL that can change: where the watchers (re)connect.
pub struct Target(pub String);

impl Endpoint for Target {
    fn base_url(&self) -> &str {
        &self.0
    }
}

const SET_QUANTITY: &str =
    "mutation($o: ID!, $p: ID!, $q: Int!) { setItemQuantity(orderId: $o, productId: $p, quantity: $q) { version } }";

/// Writes at `per_second` through `base_url`, one order after the other, until `stop`. Each
/// write is its own task, so writes that hang (Postgres down) do not slow the rate.
pub async fn write_steadily(
    base_url: String,
    token: String,
    lines: Vec<(String, String)>,
    per_second: u32,
    ledger: Shared,
    mut stop: watch::Receiver<bool>,
) {
    let http = reqwest::Client::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1) / per_second);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut in_flight = tokio::task::JoinSet::new();
    for n in 0.. {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let (order, product) = lines[n % lines.len()].clone();
        let write = set_quantity(
            http.clone(),
            format!("{base_url}/graphql"),
            token.clone(),
            order,
            product,
            1 + n as i64 % 7,
        );
        let ledger = ledger.clone();
        in_flight.spawn(async move {
            let write = write.await;
            ledger.lock().unwrap().writes.push(write);
        });
    }
    while in_flight.join_next().await.is_some() {}
}

/// One `setItemQuantity`, timed, with its outcome.
pub async fn set_quantity(
    http: reqwest::Client,
    url: String,
    token: String,
    order: String,
    product: String,
    quantity: i64,
) -> Write {
    let started = Instant::now();
    let request = http
        .post(url)
        .bearer_auth(token)
        .timeout(Duration::from_secs(30))
        .json(&json!({ "query": SET_QUANTITY, "variables": { "o": order, "p": product, "q": quantity } }));
    let outcome = match request.send().await {
        Err(_) => Err("TRANSPORT".to_owned()),
        Ok(response) => match response.json::<Value>().await {
            Err(_) => Err("TRANSPORT".to_owned()),
            Ok(body) => match body["data"]["setItemQuantity"]["version"].as_i64() {
                Some(version) => Ok(version),
                None => Err(body["errors"][0]["extensions"]["code"]
                    .as_str()
                    .unwrap_or("NO_CODE")
                    .to_owned()),
            },
        },
    };
    Write {
        order,
        started,
        finished: Instant::now(),
        outcome,
    }
}

/// The contract state of one subscription: the last version it delivered, per order.
#[derive(Default)]
struct Stream {
    last: HashMap<String, i64>,
}

/// Watches every order twice (one `orderUpdates` each, and one `myOrderUpdates`) on whatever
/// instance `target` names, reconnecting and resuming with `afterVersion` when it goes away.
pub async fn watch(token: String, orders: Vec<String>, mut target: watch::Receiver<String>, ledger: Shared) {
    let mut streams: HashMap<String, Stream> = HashMap::new();
    loop {
        let url = Target(target.borrow_and_update().clone());
        if url.0.is_empty() {
            return;
        }
        let mut client = match WsClient::connect(&url, &token).await {
            Ok(client) => client,
            Err(_) => {
                tokio::select! {
                    _ = target.changed() => {}
                    () = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
                continue;
            }
        };
        for (i, order) in orders.iter().enumerate() {
            let id = format!("o{i}");
            let after = streams.get(&id).and_then(|s| s.last.get(order)).copied();
            client
                .subscribe(&id, &order_updates(), json!({ "o": order, "after": after }))
                .await;
        }
        client.subscribe("mine", &my_order_updates(), json!({})).await;
        loop {
            let event = tokio::select! {
                event = client.poll_any(Duration::from_millis(500)) => event,
                _ = target.changed() => break,
            };
            match event {
                Ok(None) => {}
                Ok(Some((id, Event::Next(payload)))) if payload.get("errors").is_none_or(Value::is_null) => {
                    let update = Update::from_data(&payload["data"]);
                    check(&ledger, streams.entry(id.clone()).or_default(), &id, &update);
                }
                Ok(Some((id, event))) => {
                    let code = event.error_code().unwrap_or_else(|| "complete".to_owned());
                    ledger.lock().unwrap().subscription_errors.push((Instant::now(), code));
                    // As a client library would: subscribe again, resuming where it was.
                    let order_index = id.strip_prefix('o').and_then(|i| i.parse::<usize>().ok());
                    match order_index {
                        Some(i) => {
                            let after = streams.get(&id).and_then(|s| s.last.get(&orders[i])).copied();
                            client
                                .subscribe(&id, &order_updates(), json!({ "o": orders[i], "after": after }))
                                .await;
                        }
                        None => client.subscribe(&id, &my_order_updates(), json!({})).await,
                    }
                }
                Err(_) => break, // the instance went away: reconnect to the current target
            }
        }
    }
}

fn check(ledger: &Shared, stream: &mut Stream, id: &str, update: &Update) {
    let order = update.order_id().to_owned();
    let version = update.version;
    let mut ledger = ledger.lock().unwrap();
    let now = Instant::now();
    if let Some(&last) = stream.last.get(&order) {
        let fresh_state = update.resync || update.change == "SNAPSHOT";
        let problem = match version {
            v if fresh_state && v < last => Some("a resync went back"),
            _ if fresh_state => None,
            v if v == last => Some("duplicate"),
            v if v < last => Some("reorder"),
            v if v > last + 1 => Some("gap"),
            _ => None,
        };
        if let Some(problem) = problem {
            ledger
                .violations
                .push((now, format!("{problem}: {id} got {} after v{last}", update.brief())));
            if version < last {
                return;
            }
        }
    }
    stream.last.insert(order.clone(), version);
    if id == "mine" {
        ledger.mine.insert(order, version);
    } else {
        let reached = ledger.reached.entry(order).or_default();
        if reached.last().is_none_or(|(v, _)| *v < version) {
            reached.push((version, now));
        }
    }
}
