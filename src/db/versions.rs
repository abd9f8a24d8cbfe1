//! Reading committed versions back: resumes and gap repairs of live updates.

use std::collections::HashMap;

use entity::{order_versions, orders, OrderStatus};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use super::{classify, orders::with_items};
use crate::domain::{parse_state, CustomerId, DomainError, OrderVersion, OrderView};

/// Most versions a resume replays; a client further behind gets a fresh snapshot.
pub const MAX_REPLAY: u64 = 256;

/// The committed versions of an order in `(after, up_to]`, oldest first. Fewer
/// than asked for means some are no longer recorded; callers then resync.
pub async fn order_versions_between(
    db: &DatabaseConnection,
    order_id: Uuid,
    after: i64,
    up_to: i64,
) -> Result<Vec<OrderVersion>, DomainError> {
    let rows = order_versions::Entity::find()
        .filter(order_versions::Column::OrderId.eq(order_id))
        .filter(order_versions::Column::Version.gt(after))
        .filter(order_versions::Column::Version.lte(up_to))
        .order_by_asc(order_versions::Column::Version)
        .limit(MAX_REPLAY)
        .all(db)
        .await
        .map_err(classify)?;
    rows.into_iter().map(decode).collect()
}

/// Most orders whose whole states one query loads: callers page longer lists.
pub const STATES_PER_QUERY: usize = 200;
/// Ids per query when versions of many orders or customers are read at once.
const IDS_PER_QUERY: usize = 1_000;

/// The current version and status of every order of a customer, newest first:
/// where a customer subscription starts counting, and what a lagged one
/// compares against to find what changed. Only ids, versions and statuses:
/// cheap even for a customer with thousands of orders.
pub async fn customer_versions(
    db: &DatabaseConnection,
    customer: CustomerId,
) -> Result<Vec<(Uuid, i64, OrderStatus)>, DomainError> {
    orders::Entity::find()
        .select_only()
        .column(orders::Column::Id)
        .column(orders::Column::Version)
        .column(orders::Column::Status)
        .filter(orders::Column::CustomerId.eq(customer))
        .order_by_desc(orders::Column::CreatedAt)
        .order_by_desc(orders::Column::Id)
        .into_tuple()
        .all(db)
        .await
        .map_err(classify)
}

/// The current states of some of a customer's orders (at most
/// `STATES_PER_QUERY`), in the order of `ids`. Ids that are not the
/// customer's are skipped.
pub async fn orders_by_ids(
    db: &DatabaseConnection,
    customer: CustomerId,
    ids: &[Uuid],
) -> Result<Vec<OrderView>, DomainError> {
    let rows = orders::Entity::find()
        .filter(orders::Column::CustomerId.eq(customer))
        .filter(orders::Column::Id.is_in(ids.iter().copied()))
        .all(db)
        .await
        .map_err(classify)?;
    let mut loaded: HashMap<Uuid, OrderView> = with_items(db, rows)
        .await?
        .into_iter()
        .map(|view| (view.order.id, view))
        .collect();
    Ok(ids.iter().filter_map(|id| loaded.remove(id)).collect())
}

/// The current version of each order that is one of `order_ids` or belongs to
/// one of `customer_ids`, as `(order, customer, version)`: what an instance
/// compares with what it delivered after a CDC outage. Batched: one query per
/// thousand ids, however many subscribers follow them.
pub async fn current_versions_of(
    db: &DatabaseConnection,
    order_ids: &[Uuid],
    customer_ids: &[Uuid],
) -> Result<(Vec<(Uuid, Uuid, i64)>, usize), DomainError> {
    let mut versions = Vec::new();
    let mut queries = 0;
    let batches = order_ids
        .chunks(IDS_PER_QUERY)
        .map(|ids| orders::Column::Id.is_in(ids.iter().copied()))
        .chain(
            customer_ids
                .chunks(IDS_PER_QUERY)
                .map(|ids| orders::Column::CustomerId.is_in(ids.iter().copied())),
        );
    for condition in batches {
        let rows: Vec<(Uuid, Uuid, i64)> = orders::Entity::find()
            .select_only()
            .column(orders::Column::Id)
            .column(orders::Column::CustomerId)
            .column(orders::Column::Version)
            .filter(condition)
            .into_tuple()
            .all(db)
            .await
            .map_err(classify)?;
        queries += 1;
        versions.extend(rows);
    }
    Ok((versions, queries))
}

fn decode(row: order_versions::Model) -> Result<OrderVersion, DomainError> {
    let internal = |what: String| DomainError::Internal(what.into());
    Ok(OrderVersion {
        order_id: row.order_id,
        customer_id: row.customer_id,
        version: row.version,
        change: row.change.parse().map_err(internal)?,
        view: parse_state(&row.state)
            .map_err(|e| internal(format!("order_versions.state: {e}")))?
            .into(),
        committed_at_ms: Some(row.committed_at.timestamp_millis()),
    })
}
