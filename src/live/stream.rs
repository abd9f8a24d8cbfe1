//! Subscription streams. Each registers with the hub *before* it reads its
//! starting state from Postgres, so every version committed after that read
//! is already on its way through the queue: there is no window in which a
//! change can be missed. Versions at or below what was sent are dropped
//! (CDC redeliveries), a version above the next expected one is a gap that is
//! filled from `order_versions`, a lagged subscriber reloads what changed,
//! and one that a recovery finds behind catches up from `order_versions`.
//!
//! Database futures are boxed where a stream awaits them: a stream's state
//! machine is as large as its largest await point, and tens of thousands of
//! idle subscriptions should not each carry room for a query they are not
//! running.

use std::collections::HashMap;
use std::sync::Arc;

use entity::OrderStatus;
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
        let repair = Repair { db: &db, hub: &hub, caller };
        let (first, tracker) = Box::pin(resume(&repair, current, after_version)).await;
        for update in first {
            yield Ok(update);
        }
        for await item in follow(db, hub, subscription, tracker, caller, Scope::Order(order_id)) {
            yield item;
        }
    }
}

/// Updates of every order of the caller: a SNAPSHOT of each open or scheduled
/// order (however many, read in pages), then every version committed after
/// the subscription started of any of their orders, new ones included.
fn my_order_updates(
    db: DatabaseConnection,
    hub: Arc<Hub>,
    caller: Caller,
) -> impl Stream<Item = Result<Update, LiveError>> {
    async_stream::stream! {
        let subscription = hub.watch_customer(caller.customer_id);
        let mut tracker = VersionTracker::default();
        let versions = match Box::pin(db::customer_versions(&db, caller.customer_id)).await {
            Ok(versions) => versions,
            Err(error) => { yield Err(error.into()); return; }
        };
        // Every order that exists now is known at its version; one the tracker
        // has not seen was created after this read and starts at version 1.
        for &(order_id, version, _) in &versions {
            tracker.hold(order_id, version);
        }
        let active: Vec<Uuid> = versions
            .iter()
            .filter(|(_, _, status)| *status != OrderStatus::Cancelled)
            .map(|&(order_id, _, _)| order_id)
            .collect();
        for page in active.chunks(db::STATES_PER_QUERY) {
            match Box::pin(db::orders_by_ids(&db, caller.customer_id, page)).await {
                Ok(views) => for view in views {
                    let update = Update::snapshot(view, false);
                    tracker.sent(&update);
                    yield Ok(update);
                },
                Err(error) => { yield Err(error.into()); return; }
            }
        }
        for await item in follow(db, hub, subscription, tracker, caller, Scope::Customer) {
            yield item;
        }
    }
}

/// What a subscription covers, and so what it reloads after a lag.
#[derive(Debug, Clone, Copy)]
enum Scope {
    Order(Uuid),
    /// Every order of the caller.
    Customer,
}

/// After its first messages, a subscription follows the hub: each delivered
/// version through the tracker, a reload when it lagged, a catch-up when a
/// recovery shows it behind, and an error when the caller's token expires.
fn follow(
    db: DatabaseConnection,
    hub: Arc<Hub>,
    mut subscription: Subscription,
    mut tracker: VersionTracker,
    caller: Caller,
    scope: Scope,
) -> impl Stream<Item = Result<Update, LiveError>> {
    async_stream::stream! {
        let expiry = tokio::time::sleep_until(caller.deadline());
        tokio::pin!(expiry);
        let repair = Repair { db: &db, hub: &hub, caller };
        loop {
            let delivery = tokio::select! {
                delivery = subscription.recv() => delivery,
                () = &mut expiry => { yield Err(AuthError::Expired.into()); return; }
            };
            let Some(delivery) = delivery else { return };
            if subscription.take_lagged() {
                metrics::counter!(metric::LIVE_RESYNCS).increment(1);
                let changed = match Box::pin(repair.changed(scope, &tracker)).await {
                    Ok(changed) => changed,
                    Err(error) => { yield Err(error.into()); return; }
                };
                let mut reloaded = 0;
                for page in changed.chunks(db::STATES_PER_QUERY) {
                    match Box::pin(repair.snapshots(page)).await {
                        Ok(views) => for view in views {
                            reloaded += 1;
                            let update = Update::snapshot(view, true);
                            tracker.sent(&update);
                            yield Ok(update);
                        },
                        Err(error) => { yield Err(error.into()); return; }
                    }
                }
                if matches!(scope, Scope::Order(_)) && reloaded == 0 {
                    yield Err(DomainError::NotFound("order").into());
                    return;
                }
                continue;
            }
            match delivery {
                Delivery::Version(version) => match tracker.step(&version) {
                    Step::Stale => {}
                    Step::Next => {
                        let update = Update::live(version);
                        tracker.delivered(&update);
                        yield Ok(update);
                    }
                    Step::Gap { last } => {
                        let missed = Box::pin(repair.versions(version.order_id, last, version.version - 1)).await;
                        for update in tracker.repair(last, version, missed) {
                            yield Ok(update);
                        }
                    }
                },
                Delivery::Frontier(frontier) => {
                    for &(order_id, committed) in frontier.iter() {
                        let last = tracker.last(order_id);
                        if committed <= last {
                            continue;
                        }
                        let missed = Box::pin(repair.versions(order_id, last, committed)).await;
                        let updates = match tracker.replay(last, committed, missed) {
                            Some(updates) => updates,
                            None => match Box::pin(repair.snapshots(&[order_id])).await {
                                Ok(views) => views.into_iter().map(|view| Update::snapshot(view, true)).collect(),
                                Err(error) => { yield Err(error.into()); return; }
                            },
                        };
                        metrics::counter!(metric::LIVE_CATCH_UPS).increment(1);
                        for update in updates {
                            tracker.delivered(&update);
                            yield Ok(update);
                        }
                    }
                }
            }
        }
    }
}

/// The database reads of a subscriber that is catching up. Each runs in a task
/// of its own, holding one of the hub's repair permits, so the permit and its
/// pool connection are given back when the read is done even while the
/// connection task that polls this stream waits for a slow client.
struct Repair<'a> {
    db: &'a DatabaseConnection,
    hub: &'a Arc<Hub>,
    caller: Caller,
}

impl Repair<'_> {
    async fn guarded<T, F>(&self, read: impl FnOnce(DatabaseConnection) -> F) -> Result<T, DomainError>
    where
        T: Send + 'static,
        F: std::future::Future<Output = Result<T, DomainError>> + Send + 'static,
    {
        let hub = self.hub.clone();
        let read = read(self.db.clone());
        let task = tokio::spawn(async move {
            let _permit = hub.repair_permit().await;
            read.await
        });
        task.await
            .unwrap_or_else(|error| Err(DomainError::Internal(Box::new(error))))
    }

    /// The committed versions `(after, up_to]` of an order.
    async fn versions(&self, order_id: Uuid, after: i64, up_to: i64) -> Result<Vec<OrderVersion>, DomainError> {
        self.guarded(move |db| async move { db::order_versions_between(&db, order_id, after, up_to).await })
            .await
    }

    /// The current states of some of the caller's orders.
    async fn snapshots(&self, order_ids: &[Uuid]) -> Result<Vec<crate::domain::OrderView>, DomainError> {
        let (customer, order_ids) = (self.caller.customer_id, order_ids.to_vec());
        self.guarded(move |db| async move { db::orders_by_ids(&db, customer, &order_ids).await })
            .await
    }

    /// The orders of `scope` whose committed version is not the one last sent:
    /// everything a lagged subscriber may have missed, however many, whenever
    /// their transactions began.
    async fn changed(&self, scope: Scope, tracker: &VersionTracker) -> Result<Vec<Uuid>, DomainError> {
        match scope {
            Scope::Order(order_id) => Ok(vec![order_id]),
            Scope::Customer => {
                let customer = self.caller.customer_id;
                let versions = self
                    .guarded(move |db| async move { db::customer_versions(&db, customer).await })
                    .await?;
                Ok(versions
                    .into_iter()
                    .filter(|&(order_id, version, _)| tracker.last(order_id) != version)
                    .map(|(order_id, _, _)| order_id)
                    .collect())
            }
        }
    }
}

/// The first messages of an order subscription, and the tracker that starts
/// at the version the client then holds, whichever way it got there. Replaying
/// what a reconnecting client missed is catch-up work, bounded like the rest.
async fn resume(
    repair: &Repair<'_>,
    current: crate::domain::OrderView,
    after: Option<i64>,
) -> (Vec<Update>, VersionTracker) {
    let (order_id, now) = (current.order.id, current.order.version);
    let mut tracker = VersionTracker::default();
    let updates = match after {
        None => vec![Update::snapshot(current, false)],
        Some(after) if after <= now => {
            tracker.hold(order_id, after);
            let missed = if after == now {
                Ok(Vec::new())
            } else {
                repair.versions(order_id, after, now).await
            };
            tracker
                .replay(after, now, missed)
                .unwrap_or_else(|| vec![Update::snapshot(current, true)])
        }
        Some(_) => vec![Update::snapshot(current, true)],
    };
    for update in &updates {
        tracker.sent(update);
    }
    (updates, tracker)
}

fn is_contiguous(versions: &[OrderVersion], after: i64, up_to: i64) -> bool {
    versions.len() as i64 == up_to - after
        && versions
            .iter()
            .zip(after + 1..)
            .all(|(v, expected)| v.version == expected)
}

/// The last version the client holds, per order; decides what a delivered
/// version means. An order it does not know is one created after the
/// subscription read its starting state, so it holds "version 0" of it.
#[derive(Debug, Default)]
struct VersionTracker {
    last_sent: HashMap<Uuid, i64>,
}

impl VersionTracker {
    /// The client holds `version` of the order.
    fn hold(&mut self, order_id: Uuid, version: i64) {
        self.last_sent.insert(order_id, version);
    }

    fn sent(&mut self, update: &Update) {
        self.hold(update.version.order_id, update.version.version);
    }

    fn last(&self, order_id: Uuid) -> i64 {
        self.last_sent.get(&order_id).copied().unwrap_or(0)
    }

    /// What a delivered version means for this subscriber.
    fn step(&self, version: &OrderVersion) -> Step {
        let last = self.last(version.order_id);
        match version.version {
            v if v <= last => Step::Stale,
            v if v == last + 1 => Step::Next,
            _ => Step::Gap { last },
        }
    }

    /// Records a live update as sent.
    fn delivered(&mut self, update: &Update) {
        self.sent(update);
        record_push_latency(&update.version);
    }

    /// The versions `(last, up_to]` as live updates, recorded as sent (the
    /// caller records their push latency, if they are late deliveries), if
    /// `missed` holds every one of them; `None` when that history is
    /// incomplete (or could not be read), and the caller must resync.
    fn replay(&mut self, last: i64, up_to: i64, missed: Result<Vec<OrderVersion>, DomainError>) -> Option<Vec<Update>> {
        let missed = match missed {
            Ok(missed) if is_contiguous(&missed, last, up_to) => missed,
            Ok(_) => return None,
            Err(error) => {
                tracing::warn!(%error, "could not read missed versions back; resyncing instead");
                return None;
            }
        };
        let updates: Vec<Update> = missed.into_iter().map(|v| Update::live(Arc::new(v))).collect();
        for update in &updates {
            self.sent(update);
        }
        Some(updates)
    }

    /// After a gap before `version`: the missed versions, then `version`; if
    /// that history is incomplete, `version` alone as a resync (it is whole and newer).
    fn repair(
        &mut self,
        last: i64,
        version: Arc<OrderVersion>,
        missed: Result<Vec<OrderVersion>, DomainError>,
    ) -> Vec<Update> {
        let (mut updates, resync) = match self.replay(last, version.version - 1, missed) {
            Some(updates) => (updates, false),
            None => (Vec::new(), true),
        };
        updates.push(Update { version, resync });
        for update in &updates {
            self.delivered(update);
        }
        updates
    }
}

/// See `VersionTracker::step`.
#[derive(Debug, PartialEq, Eq)]
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use proptest::prelude::*;

    use super::*;
    use crate::domain::OrderView;

    fn caller(customer_id: Uuid) -> Caller {
        Caller {
            customer_id,
            expires_at: SystemTime::now() + Duration::from_secs(60),
        }
    }

    fn version_of(order_id: Uuid, customer_id: Uuid, version: i64) -> OrderVersion {
        OrderVersion::empty_update(order_id, customer_id, version)
    }

    /// What `resume` makes of a client holding `after` of an order now at v5, without a database.
    async fn resume_at_v5(after: i64) -> (Uuid, Uuid, Vec<Update>, VersionTracker) {
        let (order, customer) = (Uuid::now_v7(), Uuid::now_v7());
        let (db, hub) = (DatabaseConnection::default(), Hub::new(1, 1));
        let repair = Repair {
            db: &db,
            hub: &hub,
            caller: caller(customer),
        };
        let (first, tracker) = resume(&repair, OrderView::empty_open(order, customer, 5), Some(after)).await;
        (order, customer, first, tracker)
    }

    #[tokio::test]
    async fn resuming_at_the_current_version_holds_it() {
        // No database is needed (or reachable) when the client is up to date.
        let (order, customer, first, tracker) = resume_at_v5(5).await;
        assert!(first.is_empty(), "nothing was missed");
        assert_eq!(
            tracker.step(&version_of(order, customer, 5)),
            Step::Stale,
            "v5 still in flight is a duplicate"
        );
        assert_eq!(
            tracker.step(&version_of(order, customer, 4)),
            Step::Stale,
            "an older redelivery is not accepted"
        );
        assert_eq!(tracker.step(&version_of(order, customer, 6)), Step::Next);
    }

    #[tokio::test]
    async fn resuming_from_the_future_resyncs_at_the_current_version() {
        let (order, customer, first, tracker) = resume_at_v5(9).await;
        assert!(first.len() == 1 && first[0].resync && first[0].version.version == 5);
        assert_eq!(tracker.step(&version_of(order, customer, 6)), Step::Next);
        assert_eq!(tracker.step(&version_of(order, customer, 5)), Step::Stale);
    }

    #[test]
    fn an_order_the_tracker_has_not_seen_starts_before_its_first_version() {
        let (known, unseen, customer) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let mut tracker = VersionTracker::default();
        tracker.hold(known, 3);
        assert_eq!(tracker.step(&version_of(unseen, customer, 1)), Step::Next);
        assert_eq!(
            tracker.step(&version_of(unseen, customer, 2)),
            Step::Gap { last: 0 },
            "a skipped CREATED is a gap"
        );
        assert_eq!(tracker.step(&version_of(known, customer, 4)), Step::Next);
    }

    #[test]
    fn a_gap_is_filled_from_history_or_resynced() {
        let (order, customer) = (Uuid::now_v7(), Uuid::now_v7());
        let mut tracker = VersionTracker::default();
        tracker.hold(order, 1);
        let history = vec![version_of(order, customer, 2), version_of(order, customer, 3)];
        let updates = tracker.repair(1, Arc::new(version_of(order, customer, 4)), Ok(history));
        let sent: Vec<(i64, bool)> = updates.iter().map(|u| (u.version.version, u.resync)).collect();
        assert_eq!(sent, [(2, false), (3, false), (4, false)]);
        let pruned = vec![version_of(order, customer, 6)];
        let updates = tracker.repair(4, Arc::new(version_of(order, customer, 7)), Ok(pruned));
        let sent: Vec<(i64, bool)> = updates.iter().map(|u| (u.version.version, u.resync)).collect();
        assert_eq!(sent, [(7, true)]);
    }

    /// What a subscriber's queue may bring, in any order, any number of times.
    #[derive(Debug, Clone)]
    enum Event {
        /// A version from Kafka (a redelivery, a reorder, or after a gap).
        Deliver(i64),
        /// A recovery's "Postgres has committed up to here".
        Frontier(i64),
    }

    fn events(latest: i64) -> impl Strategy<Value = Vec<(Event, bool)>> {
        let event = prop_oneof![
            4 => (1..=latest).prop_map(Event::Deliver),
            1 => (1..=latest).prop_map(Event::Frontier),
        ];
        proptest::collection::vec((event, proptest::bool::weighted(0.1)), 0..80)
    }

    proptest! {
        /// Duplicates, reorders, gaps, pruned history and failing reads give the
        /// client a contiguous sequence from the version it held, or an explicit
        /// resync to a newer version: never a silent jump, never a step back.
        #[test]
        fn any_mix_of_deliveries_gives_a_contiguous_sequence_or_a_resync(
            (_latest, held, pruned_below, events) in (1i64..30).prop_flat_map(|latest| {
                (Just(latest), 0..=latest, 0..=latest, events(latest))
            })
        ) {
            let (order, customer) = (Uuid::now_v7(), Uuid::now_v7());
            // What `order_versions` still holds: (after, up_to], pruned below a point.
            let history = |after: i64, up_to: i64, fails: bool| -> Result<Vec<OrderVersion>, DomainError> {
                if fails {
                    return Err(DomainError::Unavailable(crate::domain::Retry::Aborted));
                }
                Ok((after + 1..=up_to)
                    .filter(|v| *v >= pruned_below)
                    .map(|v| version_of(order, customer, v))
                    .collect())
            };
            let mut tracker = VersionTracker::default();
            tracker.hold(order, held);
            let mut client = held;
            for (event, fails) in events {
                let updates = match event {
                    Event::Deliver(v) => {
                        let version = Arc::new(version_of(order, customer, v));
                        match tracker.step(&version) {
                            Step::Stale => Vec::new(),
                            Step::Next => {
                                let update = Update::live(version);
                                tracker.delivered(&update);
                                vec![update]
                            }
                            Step::Gap { last } => tracker.repair(last, version, history(last, v - 1, fails)),
                        }
                    }
                    Event::Frontier(committed) => {
                        let last = tracker.last(order);
                        if committed <= last {
                            Vec::new()
                        } else {
                            let updates = tracker.replay(last, committed, history(last, committed, fails))
                                .unwrap_or_else(|| vec![Update::snapshot(OrderView::empty_open(order, customer, committed), true)]);
                            for update in &updates {
                                tracker.sent(update);
                            }
                            updates
                        }
                    }
                };
                for update in updates {
                    let got = update.version.version;
                    if update.resync {
                        prop_assert!(got > client, "a resync to v{} after v{}", got, client);
                    } else {
                        prop_assert_eq!(got, client + 1, "a live update must be the next version");
                    }
                    client = got;
                }
                prop_assert_eq!(tracker.last(order), client);
            }
        }
    }
}
