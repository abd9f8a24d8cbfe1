//! Reading committed versions back: resumes and gap repairs of live updates.

use chrono::{DateTime, Utc};
use entity::{order_versions, orders, OrderStatus};
use sea_orm::{ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
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

/// The caller's orders that can still change (open or scheduled), newest first.
pub async fn active_orders(db: &DatabaseConnection, customer: CustomerId) -> Result<Vec<OrderView>, DomainError> {
    let rows = orders::Entity::find()
        .filter(orders::Column::CustomerId.eq(customer))
        .filter(orders::Column::Status.ne(OrderStatus::Cancelled))
        .order_by_desc(orders::Column::CreatedAt)
        .order_by_desc(orders::Column::Id)
        .limit(MAX_REPLAY)
        .all(db)
        .await
        .map_err(classify)?;
    with_items(db, rows).await
}

/// The current version of every order of a customer: where a customer
/// subscription starts counting, so that nothing older is replayed.
pub async fn current_versions(db: &DatabaseConnection, customer: CustomerId) -> Result<Vec<(Uuid, i64)>, DomainError> {
    orders::Entity::find()
        .select_only()
        .column(orders::Column::Id)
        .column(orders::Column::Version)
        .filter(orders::Column::CustomerId.eq(customer))
        .into_tuple()
        .all(db)
        .await
        .map_err(classify)
}

/// A customer's orders that may have changed since `since`: every open or
/// scheduled one, and every other one updated since. What a lagged customer
/// subscription reloads.
pub async fn orders_changed_since(
    db: &DatabaseConnection,
    customer: CustomerId,
    since: DateTime<Utc>,
) -> Result<Vec<OrderView>, DomainError> {
    let rows = orders::Entity::find()
        .filter(orders::Column::CustomerId.eq(customer))
        .filter(
            Condition::any()
                .add(orders::Column::Status.ne(OrderStatus::Cancelled))
                .add(orders::Column::UpdatedAt.gte(since)),
        )
        .order_by_desc(orders::Column::UpdatedAt)
        .limit(MAX_REPLAY)
        .all(db)
        .await
        .map_err(classify)?;
    with_items(db, rows).await
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
