//! Recovery after a CDC outage, without a resync storm.
//!
//! While the pipeline is interrupted (Kafka unreachable, Connect restarting,
//! the consumer rebuilt), an instance cannot prove that it delivered every
//! commit. Instead of reloading every subscriber, it reads the current version
//! of every followed order from Postgres, in batches of a thousand ids, and
//! hands each subscriber the versions of what it follows (`Delivery::Frontier`).
//! A subscriber already there does nothing; one that is behind reads the
//! missed versions from `order_versions` (a resync only if that history is
//! gone), through the hub's bounded repair permits, so mutations keep their
//! database connections during a recovery.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm::DatabaseConnection;
use uuid::Uuid;

use super::hub::{Hub, Route};
use crate::db;
use crate::domain::DomainError;
use crate::telemetry::metric;

/// Runs recoveries as the hub asks for them, for as long as the instance lives.
pub async fn run(db: DatabaseConnection, hub: Arc<Hub>) {
    loop {
        hub.recovery_requested().await;
        let mut backoff = Duration::from_millis(200);
        loop {
            match recover(&db, &hub).await {
                Ok(()) => break,
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, "recovery could not read Postgres; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// One comparison of every subscriber with Postgres.
async fn recover(db: &DatabaseConnection, hub: &Hub) -> Result<(), DomainError> {
    let started = Instant::now();
    let (orders, customers) = hub.watched();
    let (versions, queries) = db::current_versions_of(db, &orders, &customers).await?;
    metrics::counter!(metric::LIVE_RECOVERY_QUERIES).increment(queries as u64);
    let frontiers = group_by_route(&orders, &customers, versions);
    let routes = frontiers.len();
    hub.deliver_frontiers(frontiers);
    metrics::counter!(metric::LIVE_RECOVERIES).increment(1);
    metrics::histogram!(metric::LIVE_RECOVERY_SECONDS).record(started.elapsed().as_secs_f64());
    tracing::info!(
        orders = orders.len(),
        customers = customers.len(),
        queries,
        routes,
        took = ?started.elapsed(),
        "compared every subscription with Postgres; those behind catch up from order_versions"
    );
    Ok(())
}

/// Each followed order's version goes to the subscribers of that order and
/// to those of its customer (when followed).
fn group_by_route(
    orders: &[Uuid],
    customers: &[Uuid],
    versions: Vec<(Uuid, Uuid, i64)>,
) -> HashMap<Route, Arc<[(Uuid, i64)]>> {
    let followed_orders: std::collections::HashSet<&Uuid> = orders.iter().collect();
    let followed_customers: std::collections::HashSet<&Uuid> = customers.iter().collect();
    let mut grouped: HashMap<Route, Vec<(Uuid, i64)>> = HashMap::new();
    for (order_id, customer_id, version) in versions {
        if followed_orders.contains(&order_id) {
            grouped
                .entry(Route::Order(order_id))
                .or_default()
                .push((order_id, version));
        }
        if followed_customers.contains(&customer_id) {
            grouped
                .entry(Route::Customer(customer_id))
                .or_default()
                .push((order_id, version));
        }
    }
    grouped
        .into_iter()
        .map(|(route, list)| (route, Arc::from(list)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_go_to_their_order_and_to_their_followed_customer() {
        let (followed, other) = (Uuid::now_v7(), Uuid::now_v7());
        let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
        let alice_other_order = Uuid::now_v7();
        let grouped = group_by_route(
            &[followed, other],
            &[alice],
            vec![(followed, alice, 3), (other, bob, 9), (alice_other_order, alice, 1)],
        );
        assert_eq!(grouped[&Route::Order(followed)][..], [(followed, 3)]);
        assert_eq!(grouped[&Route::Order(other)][..], [(other, 9)]);
        let mut of_alice = grouped[&Route::Customer(alice)].to_vec();
        of_alice.sort();
        let mut expected = vec![(followed, 3), (alice_other_order, 1)];
        expected.sort();
        assert_eq!(of_alice, expected);
        assert!(!grouped.contains_key(&Route::Customer(bob)), "bob is not followed");
        assert!(!grouped.contains_key(&Route::Order(alice_other_order)));
    }
}
