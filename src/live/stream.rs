//! Subscription streams. Each registers with the hub *before* it reads its
//! starting state from Postgres, so every version committed after that read
//! is already on its way through the queue: there is no window in which a
//! change can be missed. Versions at or below what was sent are dropped
//! (CDC redeliveries), a version above the next expected one is a gap that is
//! filled from `order_versions`, and a lagged subscriber reloads its state.
//!
//! Database futures are boxed where a stream awaits them: a stream's state
//! machine is as large as its largest await point, and tens of thousands of
//! idle subscriptions should not each carry room for a query they are not
//! running.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::stream::{BoxStream, Stream, StreamExt};
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use super::hub::{Delivery, Hub, Subscription};
use crate::auth::{AuthError, Caller};
use crate::db;
use crate::domain::{DomainError, OrderVersion};
use crate::telemetry::metric;

/// One message of a subscription: a committed state of an order.
#[derive(Debug, Clone)]
pub struct Update {
    pub version: Arc<OrderVersion>,
    /// True when this state replaces whatever the subscriber expected next,
    /// because continuity could not be proven (overflow, outage, lost history).
    pub resync: bool,
}

impl Update {
    fn live(version: Arc<OrderVersion>) -> Self {
        Update { version, resync: false }
    }

    fn snapshot(view: crate::domain::OrderView, resync: bool) -> Self {
        Update {
            version: Arc::new(OrderVersion::snapshot(view)),
            resync,
        }
    }
}

/// Why a subscription ended early.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error(transparent)]
    Auth(#[from] AuthError),
}

/// What a subscription follows; the GraphQL layer derives it from the operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// One order, optionally resuming after a version the subscriber already has.
    Order { order_id: Uuid, after_version: Option<i64> },
    /// Every order of the caller.
    MyOrders,
}

/// The updates of a topic, as one boxed stream whatever the topic.
pub fn updates(
    db: DatabaseConnection,
    hub: Arc<Hub>,
    caller: Caller,
    topic: Topic,
) -> BoxStream<'static, Result<Update, LiveError>> {
    match topic {
        Topic::Order {
            order_id,
            after_version,
        } => order_updates(db, hub, caller, order_id, after_version).boxed(),
        Topic::MyOrders => my_order_updates(db, hub, caller).boxed(),
    }
}

/// Updates of one order: a SNAPSHOT (or, with `after_version`, the versions
/// missed since), then every committed version in order.
fn order_updates(
    db: DatabaseConnection,
    hub: Arc<Hub>,
    caller: Caller,
    order_id: Uuid,
    after_version: Option<i64>,
) -> impl Stream<Item = Result<Update, LiveError>> {
    async_stream::stream! {
        let subscription = hub.watch_order(order_id);
        let current = match Box::pin(db::find_order(&db, caller.customer_id, order_id)).await {
            Ok(Some(view)) => view,
            Ok(None) => { yield Err(DomainError::NotFound("order").into()); return; }
            Err(error) => { yield Err(error.into()); return; }
        };
        let mut tracker = VersionTracker::default();
        for update in Box::pin(resume(&db, current, after_version)).await {
            tracker.sent(&update);
            yield Ok(update);
        }
        for await item in follow(db, subscription, tracker, caller, Scope::Order(order_id)) {
            yield item;
        }
    }
}

/// Updates of every order of the caller: a SNAPSHOT of each open or scheduled
/// order, then every version committed after the subscription started of any
/// of their orders, new ones included.
fn my_order_updates(
    db: DatabaseConnection,
    hub: Arc<Hub>,
    caller: Caller,
) -> impl Stream<Item = Result<Update, LiveError>> {
    async_stream::stream! {
        let subscription = hub.watch_customer(caller.customer_id);
        // Updated since this (with a margin for long transactions) means "may have changed".
        let since = chrono::Utc::now() - chrono::Duration::minutes(1);
        let mut tracker = VersionTracker::default();
        match Box::pin(db::current_versions(&db, caller.customer_id)).await {
            Ok(versions) => tracker.last_sent.extend(versions),
            Err(error) => { yield Err(error.into()); return; }
        }
        match Box::pin(db::active_orders(&db, caller.customer_id)).await {
            Ok(views) => for view in views {
                let update = Update::snapshot(view, false);
                tracker.sent(&update);
                yield Ok(update);
            },
            Err(error) => { yield Err(error.into()); return; }
        }
        for await item in follow(db, subscription, tracker, caller, Scope::Customer { since }) {
            yield item;
        }
    }
}

/// What a subscription covers, and so what it reloads after a lag.
enum Scope {
    Order(Uuid),
    /// Every order of the caller; `since` bounds which closed orders may have changed.
    Customer {
        since: chrono::DateTime<chrono::Utc>,
    },
}

impl Scope {
    /// Fresh states (`resync: true`) for what the subscriber may have missed.
    async fn reload(
        &self,
        db: &DatabaseConnection,
        caller: Caller,
        tracker: &VersionTracker,
    ) -> Result<Vec<Update>, DomainError> {
        match self {
            Scope::Order(order_id) => match db::find_order(db, caller.customer_id, *order_id).await? {
                Some(view) => Ok(vec![Update::snapshot(view, true)]),
                None => Err(DomainError::NotFound("order")),
            },
            Scope::Customer { since } => Ok(db::orders_changed_since(db, caller.customer_id, *since)
                .await?
                .into_iter()
                .filter(|view| tracker.last_sent.get(&view.order.id) != Some(&view.order.version))
                .map(|view| Update::snapshot(view, true))
                .collect()),
        }
    }
}

/// After its first messages, a subscription follows the hub: each delivered
/// version through the tracker, a reload when it lagged, and an error when the
/// caller's token expires.
fn follow(
    db: DatabaseConnection,
    mut subscription: Subscription,
    mut tracker: VersionTracker,
    caller: Caller,
    scope: Scope,
) -> impl Stream<Item = Result<Update, LiveError>> {
    async_stream::stream! {
        let expiry = tokio::time::sleep_until(until(caller.expires_at));
        tokio::pin!(expiry);
        loop {
            let delivery = tokio::select! {
                delivery = subscription.recv() => delivery,
                () = &mut expiry => { yield Err(AuthError::Expired.into()); return; }
            };
            let Some(delivery) = delivery else { return };
            if subscription.take_lagged() {
                metrics::counter!(metric::LIVE_RESYNCS).increment(1);
                match Box::pin(scope.reload(&db, caller, &tracker)).await {
                    Ok(updates) => for update in updates {
                        tracker.sent(&update);
                        yield Ok(update);
                    },
                    Err(error) => { yield Err(error.into()); return; }
                }
                continue;
            }
            if let Delivery::Version(version) = delivery {
                match tracker.step(&version) {
                    Step::Stale => {}
                    Step::Next => {
                        let update = Update::live(version);
                        tracker.delivered(&update);
                        yield Ok(update);
                    }
                    Step::Gap { last } => {
                        for update in Box::pin(tracker.fill_gap(&db, last, version)).await {
                            yield Ok(update);
                        }
                    }
                }
            }
        }
    }
}

/// The first messages of an order subscription.
async fn resume(db: &DatabaseConnection, current: crate::domain::OrderView, after: Option<i64>) -> Vec<Update> {
    let now = current.order.version;
    match after {
        None => vec![Update::snapshot(current, false)],
        Some(after) if after == now => Vec::new(),
        Some(after) if after < now => match db::order_versions_between(db, current.order.id, after, now).await {
            Ok(missed) if is_contiguous(&missed, after, now) => {
                missed.into_iter().map(|v| Update::live(Arc::new(v))).collect()
            }
            _ => vec![Update::snapshot(current, true)],
        },
        Some(_) => vec![Update::snapshot(current, true)],
    }
}

fn is_contiguous(versions: &[OrderVersion], after: i64, up_to: i64) -> bool {
    versions.len() as i64 == up_to - after
        && versions
            .iter()
            .zip(after + 1..)
            .all(|(v, expected)| v.version == expected)
}

/// The last version sent per order; decides what a delivered version means.
#[derive(Default)]
struct VersionTracker {
    last_sent: HashMap<Uuid, i64>,
}

impl VersionTracker {
    fn sent(&mut self, update: &Update) {
        self.last_sent.insert(update.version.order_id, update.version.version);
    }

    /// What a delivered version means for this subscriber.
    fn step(&self, version: &OrderVersion) -> Step {
        match self.last_sent.get(&version.order_id).copied() {
            Some(last) if version.version <= last => Step::Stale,
            Some(last) if version.version > last + 1 => Step::Gap { last },
            _ => Step::Next,
        }
    }

    /// Records a live update as sent.
    fn delivered(&mut self, update: &Update) {
        self.sent(update);
        record_push_latency(&update.version);
    }

    /// The versions after `last` up to `version`, read back from
    /// `order_versions`; if that history is gone, only `version` with a
    /// resync: it is whole and newer.
    async fn fill_gap(&mut self, db: &DatabaseConnection, last: i64, version: Arc<OrderVersion>) -> Vec<Update> {
        let missed = db::order_versions_between(db, version.order_id, last, version.version - 1).await;
        let mut updates = Vec::new();
        match missed {
            Ok(missed) if is_contiguous(&missed, last, version.version - 1) => {
                updates.extend(missed.into_iter().map(|v| Update::live(Arc::new(v))));
                updates.push(Update::live(version));
            }
            _ => updates.push(Update { version, resync: true }),
        }
        for update in &updates {
            self.delivered(update);
        }
        updates
    }
}

/// See `VersionTracker::step`.
enum Step {
    /// At or below what was sent: a redelivery, dropped.
    Stale,
    /// Exactly the next version.
    Next,
    /// Versions between `last` and this one are missing.
    Gap { last: i64 },
}

fn record_push_latency(version: &OrderVersion) {
    if let Some(seconds) = version.seconds_after_commit(chrono::Utc::now().timestamp_millis()) {
        metrics::histogram!(metric::LIVE_COMMIT_TO_PUSH).record(seconds);
    }
}

fn until(expires_at: SystemTime) -> tokio::time::Instant {
    let left = expires_at.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO);
    tokio::time::Instant::now() + left
}
