//! The order transactions. Each mutation is one READ COMMITTED transaction that
//! first locks the caller's order row (`SELECT ... FOR UPDATE`), so that the
//! `expectedVersion` check, the write and the state returned to the caller all
//! see one and the same version. The business rules themselves are Postgres's
//! (see the `migration` crate); errors go through [`classify`].

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use entity::{order_items, orders, products, OrderStatus};
use sea_orm::sea_query::{Expr, LockType, OnConflict};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, DatabaseConnection, DatabaseTransaction, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set, TransactionTrait,
};
use uuid::Uuid;

use super::{classify, classify_commit};
use crate::domain::{CustomerId, DeliveryWindow, DomainError, ItemView, OrderView};

type Result<T> = std::result::Result<T, DomainError>;

/// Position in a customer's order list (newest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderCursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

/// One page of a customer's orders, newest first.
#[derive(Debug)]
pub struct OrderPage {
    pub orders: Vec<OrderView>,
    pub has_next_page: bool,
}

/// An explicit transaction (not an autocommit INSERT), so that a failure
/// before COMMIT is known to have written nothing.
pub async fn create_order(db: &DatabaseConnection, customer: CustomerId) -> Result<OrderView> {
    let txn = begin(db).await?;
    let order = orders::ActiveModel {
        id: Set(Uuid::now_v7()),
        customer_id: Set(customer),
        ..Default::default()
    }
    .insert(&txn)
    .await
    .map_err(classify)?;
    commit(txn).await?;
    Ok(OrderView {
        order,
        items: Vec::new(),
    })
}

/// Adds `quantity` of a product; adding a product already in the order raises its quantity.
pub async fn add_item(
    db: &DatabaseConnection,
    customer: CustomerId,
    order_id: Uuid,
    product_id: Uuid,
    quantity: i32,
    expected_version: Option<i64>,
) -> Result<OrderView> {
    let txn = begin(db).await?;
    lock_order(&txn, customer, order_id, expected_version).await?;
    let item = order_items::ActiveModel {
        id: Set(Uuid::now_v7()),
        order_id: Set(order_id),
        product_id: Set(product_id),
        quantity: Set(quantity),
        ..Default::default()
    };
    order_items::Entity::insert(item)
        .on_conflict(
            OnConflict::columns([order_items::Column::OrderId, order_items::Column::ProductId])
                .value(
                    order_items::Column::Quantity,
                    Expr::cust("order_items.quantity + EXCLUDED.quantity"),
                )
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await
        .map_err(classify)?;
    finish(txn, order_id).await
}

pub async fn set_item_quantity(
    db: &DatabaseConnection,
    customer: CustomerId,
    order_id: Uuid,
    product_id: Uuid,
    quantity: i32,
    expected_version: Option<i64>,
) -> Result<OrderView> {
    let txn = begin(db).await?;
    lock_order(&txn, customer, order_id, expected_version).await?;
    let updated = order_items::Entity::update_many()
        .col_expr(order_items::Column::Quantity, Expr::value(quantity))
        .filter(order_items::Column::OrderId.eq(order_id))
        .filter(order_items::Column::ProductId.eq(product_id))
        .exec(&txn)
        .await
        .map_err(classify)?;
    if updated.rows_affected == 0 {
        return Err(DomainError::NotFound("item"));
    }
    finish(txn, order_id).await
}

pub async fn remove_item(
    db: &DatabaseConnection,
    customer: CustomerId,
    order_id: Uuid,
    product_id: Uuid,
    expected_version: Option<i64>,
) -> Result<OrderView> {
    let txn = begin(db).await?;
    lock_order(&txn, customer, order_id, expected_version).await?;
    let deleted = order_items::Entity::delete_many()
        .filter(order_items::Column::OrderId.eq(order_id))
        .filter(order_items::Column::ProductId.eq(product_id))
        .exec(&txn)
        .await
        .map_err(classify)?;
    if deleted.rows_affected == 0 {
        return Err(DomainError::NotFound("item"));
    }
    finish(txn, order_id).await
}

pub async fn schedule_order(
    db: &DatabaseConnection,
    customer: CustomerId,
    order_id: Uuid,
    window: DeliveryWindow,
    expected_version: Option<i64>,
) -> Result<OrderView> {
    let change = orders::ActiveModel {
        status: Set(OrderStatus::Scheduled),
        delivery_window_start: Set(Some(window.start)),
        delivery_window_end: Set(Some(window.end)),
        ..Default::default()
    };
    update_order(db, customer, order_id, change, expected_version).await
}

pub async fn reopen_order(
    db: &DatabaseConnection,
    customer: CustomerId,
    order_id: Uuid,
    expected_version: Option<i64>,
) -> Result<OrderView> {
    let change = orders::ActiveModel {
        status: Set(OrderStatus::Open),
        delivery_window_start: Set(None),
        delivery_window_end: Set(None),
        ..Default::default()
    };
    let txn = begin(db).await?;
    let order = lock_order(&txn, customer, order_id, expected_version).await?;
    if order.status == OrderStatus::Open {
        // open -> open would be a silent no-op that still bumps the version.
        return Err(DomainError::InvalidTransition("only a scheduled order can be reopened"));
    }
    apply_change(txn, order_id, change).await
}

pub async fn cancel_order(
    db: &DatabaseConnection,
    customer: CustomerId,
    order_id: Uuid,
    reason: Option<String>,
    expected_version: Option<i64>,
) -> Result<OrderView> {
    let reason = reason.map(|r| r.trim().to_owned()).filter(|r| !r.is_empty());
    let change = orders::ActiveModel {
        status: Set(OrderStatus::Cancelled),
        cancel_reason: Set(reason),
        ..Default::default()
    };
    update_order(db, customer, order_id, change, expected_version).await
}

/// The caller's order, or `None` when it does not exist or belongs to someone else.
pub async fn find_order(db: &DatabaseConnection, customer: CustomerId, order_id: Uuid) -> Result<Option<OrderView>> {
    let order = orders::Entity::find_by_id(order_id)
        .filter(orders::Column::CustomerId.eq(customer))
        .one(db)
        .await
        .map_err(classify)?;
    match order {
        Some(order) => Ok(with_items(db, vec![order]).await?.pop()),
        None => Ok(None),
    }
}

/// Keyset pagination over (created_at, id), newest first: stable under inserts.
pub async fn list_orders(
    db: &DatabaseConnection,
    customer: CustomerId,
    first: u64,
    after: Option<OrderCursor>,
    status: Option<OrderStatus>,
) -> Result<OrderPage> {
    let mut query = orders::Entity::find().filter(orders::Column::CustomerId.eq(customer));
    if let Some(status) = status {
        query = query.filter(orders::Column::Status.eq(status));
    }
    if let Some(after) = after {
        query = query.filter(
            Condition::any()
                .add(orders::Column::CreatedAt.lt(after.created_at))
                .add(
                    Condition::all()
                        .add(orders::Column::CreatedAt.eq(after.created_at))
                        .add(orders::Column::Id.lt(after.id)),
                ),
        );
    }
    let mut rows = query
        .order_by_desc(orders::Column::CreatedAt)
        .order_by_desc(orders::Column::Id)
        .limit(first + 1)
        .all(db)
        .await
        .map_err(classify)?;
    let has_next_page = rows.len() as u64 > first;
    rows.truncate(first as usize);
    Ok(OrderPage {
        orders: with_items(db, rows).await?,
        has_next_page,
    })
}

async fn begin(db: &DatabaseConnection) -> Result<DatabaseTransaction> {
    db.begin().await.map_err(classify)
}

/// Locks the caller's order for the rest of the transaction and checks the
/// caller's expected version. A cancelled order skips the version check so the
/// caller learns the more useful fact (ORDER_CANCELLED) from the write itself.
async fn lock_order(
    txn: &DatabaseTransaction,
    customer: CustomerId,
    order_id: Uuid,
    expected_version: Option<i64>,
) -> Result<orders::Model> {
    let order = orders::Entity::find_by_id(order_id)
        .filter(orders::Column::CustomerId.eq(customer))
        .lock(LockType::Update)
        .one(txn)
        .await
        .map_err(classify)?
        .ok_or(DomainError::NotFound("order"))?;
    if let Some(expected) = expected_version {
        if order.status != OrderStatus::Cancelled && order.version != expected {
            return Err(DomainError::VersionConflict {
                expected,
                actual: order.version,
            });
        }
    }
    Ok(order)
}

async fn update_order(
    db: &DatabaseConnection,
    customer: CustomerId,
    order_id: Uuid,
    change: orders::ActiveModel,
    expected_version: Option<i64>,
) -> Result<OrderView> {
    let txn = begin(db).await?;
    lock_order(&txn, customer, order_id, expected_version).await?;
    apply_change(txn, order_id, change).await
}

async fn apply_change(txn: DatabaseTransaction, order_id: Uuid, change: orders::ActiveModel) -> Result<OrderView> {
    orders::Entity::update_many()
        .set(change)
        .filter(orders::Column::Id.eq(order_id))
        .exec(&txn)
        .await
        .map_err(classify)?;
    finish(txn, order_id).await
}

/// Reads the order as this transaction leaves it, then commits: the caller gets
/// exactly the state (and version) its change produced.
async fn finish(txn: DatabaseTransaction, order_id: Uuid) -> Result<OrderView> {
    let order = orders::Entity::find_by_id(order_id)
        .one(&txn)
        .await
        .map_err(classify)?
        .ok_or(DomainError::NotFound("order"))?;
    let view = with_items(&txn, vec![order])
        .await?
        .pop()
        .ok_or(DomainError::NotFound("order"))?;
    commit(txn).await?;
    Ok(view)
}

/// Commits; a connection lost here leaves the outcome unknown, and the error says so.
async fn commit(txn: DatabaseTransaction) -> Result<()> {
    txn.commit().await.map_err(classify_commit)
}

/// Loads the items (with their products) of several orders in one query.
pub(super) async fn with_items<C: sea_orm::ConnectionTrait>(
    db: &C,
    orders: Vec<orders::Model>,
) -> Result<Vec<OrderView>> {
    if orders.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = orders.iter().map(|o| o.id).collect();
    let rows = order_items::Entity::find()
        .filter(order_items::Column::OrderId.is_in(ids))
        .find_also_related(products::Entity)
        .order_by_asc(order_items::Column::CreatedAt)
        .order_by_asc(order_items::Column::Id)
        .all(db)
        .await
        .map_err(classify)?;
    let mut items: HashMap<Uuid, Vec<ItemView>> = HashMap::new();
    for (item, product) in rows {
        let product = product.ok_or_else(|| DomainError::Internal("order item without its product".into()))?;
        items.entry(item.order_id).or_default().push(ItemView { item, product });
    }
    Ok(orders
        .into_iter()
        .map(|order| {
            let items = items.remove(&order.id).unwrap_or_default();
            OrderView { order, items }
        })
        .collect())
}
