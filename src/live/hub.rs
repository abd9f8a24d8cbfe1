//! The fan-out hub. The CDC consumer publishes each committed order version
//! once; the hub hands an `Arc` of it to every interested subscriber's bounded
//! queue with `try_send`, so a slow subscriber never delays anyone: when its
//! queue is full it is marked lagged and later catches up with a resync.
//!
//! After a CDC outage the hub does not resync everyone: it is asked to
//! recover (`request_recovery`), and `live::recovery` hands each subscriber
//! the versions Postgres has for what it follows (a `Frontier`), so only the
//! subscribers that are actually behind catch up, through a bounded number of
//! concurrent repairs (`repair_permit`).
//!
//! Locking: the route table's mutex is held only to find or change a route,
//! never while delivering. Each route has its own lock: a publish reads it
//! (its subscribers are handed the version under a read lock), subscribing and
//! unsubscribing write it. So a fan-out to a hot order's 10,000 subscribers
//! delays no other order's subscribers coming and going. Lock order: table,
//! then route; no code takes the table while holding a route.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::{mpsc, Notify, Semaphore, SemaphorePermit};
use uuid::Uuid;

use crate::domain::OrderVersion;
use crate::telemetry::metric;

/// What a subscriber's queue carries.
#[derive(Debug, Clone)]
pub enum Delivery {
    Version(Arc<OrderVersion>),
    /// The versions Postgres has committed of the orders this subscriber
    /// follows, read after a CDC outage: whatever it has not delivered up to
    /// them, it repairs from `order_versions`.
    Frontier(Arc<[(Uuid, i64)]>),
}

/// What a subscriber follows; recovery groups the versions it reads by route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Route {
    Order(Uuid),
    Customer(Uuid),
}

struct Slot {
    tx: mpsc::Sender<Delivery>,
    lagged: Arc<AtomicBool>,
}

impl Slot {
    fn deliver(&self, delivery: Delivery) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(delivery) {
            if !self.lagged.swap(true, Ordering::AcqRel) {
                metrics::counter!(metric::LIVE_OVERFLOWS).increment(1);
            }
        }
    }
}

/// The subscribers of one route.
#[derive(Default)]
struct Followers {
    slots: HashMap<u64, Slot>,
    /// Set when the route left the table: a subscriber that found it there
    /// just before must look again.
    retired: bool,
}

type SharedFollowers = Arc<RwLock<Followers>>;

fn read(followers: &SharedFollowers) -> RwLockReadGuard<'_, Followers> {
    followers.read().unwrap_or_else(PoisonError::into_inner)
}

fn write(followers: &SharedFollowers) -> RwLockWriteGuard<'_, Followers> {
    followers.write().unwrap_or_else(PoisonError::into_inner)
}

/// Routes committed order versions to subscribers. One per instance.
pub struct Hub {
    routes: Mutex<HashMap<Route, SharedFollowers>>,
    next_id: AtomicU64,
    queue_capacity: usize,
    /// Database work of subscribers catching up (gap repairs, reloads) that
    /// may run at once, so that a recovery leaves connections to mutations.
    repairs: Semaphore,
    recovery: Notify,
}

impl Hub {
    /// `queue_capacity` bounds each subscriber's backlog; `repair_concurrency`
    /// bounds how many subscribers read Postgres to catch up at the same time.
    pub fn new(queue_capacity: usize, repair_concurrency: usize) -> Arc<Self> {
        Arc::new(Hub {
            routes: Mutex::default(),
            next_id: AtomicU64::new(0),
            queue_capacity: queue_capacity.max(1),
            repairs: Semaphore::new(repair_concurrency.max(1)),
            recovery: Notify::new(),
        })
    }

    /// Receives every version of one order from now on.
    pub fn watch_order(self: &Arc<Self>, order_id: Uuid) -> Subscription {
        self.watch(Route::Order(order_id))
    }

    /// Receives every version of every order of one customer from now on.
    pub fn watch_customer(self: &Arc<Self>, customer_id: Uuid) -> Subscription {
        self.watch(Route::Customer(customer_id))
    }

    fn watch(self: &Arc<Self>, route: Route) -> Subscription {
        let (tx, rx) = mpsc::channel(self.queue_capacity);
        let lagged = Arc::new(AtomicBool::new(false));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let followers = loop {
            let followers = self.lock().entry(route).or_default().clone();
            let mut joined = write(&followers);
            if joined.retired {
                continue;
            }
            let slot = Slot {
                tx: tx.clone(),
                lagged: lagged.clone(),
            };
            joined.slots.insert(id, slot);
            drop(joined);
            break followers;
        };
        metrics::gauge!(metric::LIVE_SUBSCRIPTIONS).increment(1.0);
        Subscription {
            hub: self.clone(),
            route,
            followers,
            id,
            rx,
            lagged,
        }
    }

    /// Hands one committed version to the subscribers of its order and of its customer.
    pub fn publish(&self, version: OrderVersion) {
        let version = Arc::new(version);
        let routes = [Route::Order(version.order_id), Route::Customer(version.customer_id)];
        for followers in self.followers_of(routes).into_iter().flatten() {
            for slot in read(&followers).slots.values() {
                slot.deliver(Delivery::Version(version.clone()));
            }
        }
    }

    /// Whether anyone follows the order or its customer. A subscriber that joins
    /// right after a `false` misses nothing: it reads its starting state from
    /// Postgres after joining, and the version asked about is committed already.
    pub fn follows(&self, order_id: Uuid, customer_id: Uuid) -> bool {
        let table = self.lock();
        table.contains_key(&Route::Order(order_id)) || table.contains_key(&Route::Customer(customer_id))
    }

    /// The followers of each route, taken from the table without holding it.
    fn followers_of<const N: usize>(&self, routes: [Route; N]) -> [Option<SharedFollowers>; N] {
        let table = self.lock();
        routes.map(|route| table.get(&route).cloned())
    }

    /// Asks `live::recovery` to compare every subscriber with Postgres; requests
    /// made while one runs are coalesced into one more run.
    pub fn request_recovery(&self) {
        self.recovery.notify_one();
    }

    pub(super) async fn recovery_requested(&self) {
        self.recovery.notified().await;
    }

    /// What is followed now: the orders, and the customers.
    pub(super) fn watched(&self) -> (Vec<Uuid>, Vec<Uuid>) {
        let (mut orders, mut customers) = (Vec::new(), Vec::new());
        for route in self.lock().keys() {
            match *route {
                Route::Order(id) => orders.push(id),
                Route::Customer(id) => customers.push(id),
            }
        }
        (orders, customers)
    }

    /// Hands each route's subscribers the committed versions of what they follow.
    pub(super) fn deliver_frontiers(&self, frontiers: HashMap<Route, Arc<[(Uuid, i64)]>>) {
        for (route, frontier) in frontiers {
            let [Some(followers)] = self.followers_of([route]) else {
                continue;
            };
            for slot in read(&followers).slots.values() {
                slot.deliver(Delivery::Frontier(frontier.clone()));
            }
        }
    }

    /// Waits for a turn to read Postgres for a subscriber that is catching up.
    pub(super) async fn repair_permit(&self) -> SemaphorePermit<'_> {
        self.repairs
            .acquire()
            .await
            .expect("the repair semaphore is never closed")
    }

    pub fn subscriber_count(&self) -> usize {
        let all: Vec<SharedFollowers> = self.lock().values().cloned().collect();
        all.iter().map(|followers| read(followers).slots.len()).sum()
    }

    fn remove(&self, route: Route, followers: &SharedFollowers, id: u64) {
        metrics::gauge!(metric::LIVE_SUBSCRIPTIONS).decrement(1.0);
        let emptied = {
            let mut left = write(followers);
            left.slots.remove(&id);
            left.slots.is_empty()
        };
        if !emptied {
            return;
        }
        let mut table = self.lock();
        if table.get(&route).is_some_and(|current| Arc::ptr_eq(current, followers)) {
            let mut left = write(followers);
            if left.slots.is_empty() {
                left.retired = true;
                drop(left);
                table.remove(&route);
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Route, SharedFollowers>> {
        self.routes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A subscriber's end of the hub; unregisters itself when dropped.
pub struct Subscription {
    hub: Arc<Hub>,
    route: Route,
    followers: SharedFollowers,
    id: u64,
    rx: mpsc::Receiver<Delivery>,
    lagged: Arc<AtomicBool>,
}

impl Subscription {
    pub async fn recv(&mut self) -> Option<Delivery> {
        self.rx.recv().await
    }

    /// True once after the hub dropped something for this subscriber; the
    /// queue is then emptied, as the caller reloads the state anyway.
    pub fn take_lagged(&mut self) -> bool {
        if !self.lagged.swap(false, Ordering::AcqRel) {
            return false;
        }
        while self.rx.try_recv().is_ok() {}
        true
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.remove(self.route, &self.followers, self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(order_id: Uuid, customer_id: Uuid, version: i64) -> OrderVersion {
        OrderVersion::empty_update(order_id, customer_id, version)
    }

    #[tokio::test]
    async fn versions_reach_order_and_customer_subscribers_only() {
        let hub = Hub::new(8, 1);
        let (order, customer) = (Uuid::now_v7(), Uuid::now_v7());
        let mut by_order = hub.watch_order(order);
        let mut by_customer = hub.watch_customer(customer);
        let mut other = hub.watch_order(Uuid::now_v7());
        hub.publish(version(order, customer, 2));
        assert!(matches!(by_order.recv().await, Some(Delivery::Version(v)) if v.version == 2));
        assert!(matches!(by_customer.recv().await, Some(Delivery::Version(v)) if v.version == 2));
        assert!(other.rx.try_recv().is_err());
        assert_eq!(hub.subscriber_count(), 3);
        drop(other);
        assert_eq!(hub.subscriber_count(), 2);
    }

    #[tokio::test]
    async fn a_full_queue_marks_only_that_subscriber_lagged() {
        let hub = Hub::new(2, 1);
        let (order, customer) = (Uuid::now_v7(), Uuid::now_v7());
        let mut slow = hub.watch_order(order);
        let mut fast = hub.watch_order(order);
        for v in 1..=5 {
            hub.publish(version(order, customer, v));
            assert!(matches!(fast.recv().await, Some(Delivery::Version(got)) if got.version == v));
        }
        assert!(!fast.take_lagged());
        assert!(slow.take_lagged(), "the slow one overflowed");
        assert!(slow.rx.try_recv().is_err(), "its stale backlog is dropped");
        assert!(!slow.take_lagged(), "reported once");
    }

    #[tokio::test]
    async fn a_route_left_by_its_last_subscriber_is_forgotten_and_can_be_followed_again() {
        let hub = Hub::new(4, 1);
        let (order, customer) = (Uuid::now_v7(), Uuid::now_v7());
        let first = hub.watch_order(order);
        let kept = first.followers.clone();
        drop(first);
        assert!(hub.lock().is_empty(), "the empty route left the table");
        assert!(read(&kept).retired);
        let mut again = hub.watch_order(order);
        assert!(
            !Arc::ptr_eq(&again.followers, &kept),
            "a fresh route, not the retired one"
        );
        hub.publish(version(order, customer, 3));
        assert!(matches!(again.recv().await, Some(Delivery::Version(v)) if v.version == 3));
    }

    #[test]
    fn an_order_is_followed_while_a_subscriber_of_it_or_its_customer_is_there() {
        let hub = Hub::new(4, 1);
        let (order, customer) = (Uuid::now_v7(), Uuid::now_v7());
        assert!(!hub.follows(order, customer));
        let of_order = hub.watch_order(order);
        assert!(hub.follows(order, Uuid::now_v7()));
        drop(of_order);
        assert!(!hub.follows(order, customer));
        let of_customer = hub.watch_customer(customer);
        assert!(hub.follows(Uuid::now_v7(), customer));
        drop(of_customer);
        assert!(!hub.follows(order, customer));
    }

    #[test]
    fn subscribers_coming_and_going_on_many_threads_leave_no_route_behind() {
        let hub = Hub::new(4, 1);
        let order = Uuid::now_v7();
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for v in 0..2_000 {
                        let subscription = hub.watch_order(order);
                        hub.publish(version(order, Uuid::nil(), v));
                        drop(subscription);
                    }
                });
            }
        });
        assert_eq!(hub.subscriber_count(), 0);
        assert!(hub.lock().is_empty());
    }

    #[tokio::test]
    async fn frontiers_reach_the_subscribers_of_their_route_only() {
        let hub = Hub::new(4, 1);
        let (order, customer) = (Uuid::now_v7(), Uuid::now_v7());
        let mut by_order = hub.watch_order(order);
        let mut by_customer = hub.watch_customer(customer);
        let (orders, customers) = hub.watched();
        assert_eq!((orders, customers), (vec![order], vec![customer]));
        let frontier: Arc<[(Uuid, i64)]> = Arc::from(vec![(order, 7)]);
        hub.deliver_frontiers(HashMap::from([(Route::Order(order), frontier)]));
        assert!(matches!(by_order.recv().await, Some(Delivery::Frontier(f)) if f[..] == [(order, 7)]));
        assert!(by_customer.rx.try_recv().is_err());
    }
}
