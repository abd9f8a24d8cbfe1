//! GraphQL object types over the domain views.

use std::sync::Arc;

use async_graphql::{Enum, InputObject, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use entity::{customers, products};

use crate::domain::{ChangeKind, DeliveryWindow as DomainWindow, DomainError, ItemView, OrderView};
use crate::live::Update;

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "OrderStatus")]
pub enum OrderStatus {
    Open,
    Scheduled,
    Cancelled,
}

impl From<entity::OrderStatus> for OrderStatus {
    fn from(status: entity::OrderStatus) -> Self {
        match status {
            entity::OrderStatus::Open => OrderStatus::Open,
            entity::OrderStatus::Scheduled => OrderStatus::Scheduled,
            entity::OrderStatus::Cancelled => OrderStatus::Cancelled,
        }
    }
}

impl From<OrderStatus> for entity::OrderStatus {
    fn from(status: OrderStatus) -> Self {
        match status {
            OrderStatus::Open => entity::OrderStatus::Open,
            OrderStatus::Scheduled => entity::OrderStatus::Scheduled,
            OrderStatus::Cancelled => entity::OrderStatus::Cancelled,
        }
    }
}

/// When the customer wants the order delivered.
#[derive(SimpleObject, Debug, Clone, Copy)]
pub struct DeliveryWindow {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// A delivery window to schedule an order for: starts in the future, ends after it starts.
#[derive(InputObject, Debug, Clone, Copy)]
pub struct DeliveryWindowInput {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl From<DeliveryWindowInput> for DomainWindow {
    fn from(input: DeliveryWindowInput) -> Self {
        DomainWindow {
            start: input.start,
            end: input.end,
        }
    }
}

/// Shared, because one committed state goes to many subscribers.
pub struct Order(pub Arc<OrderView>);

/// A customer's order and its items, as of `version`.
#[Object]
impl Order {
    async fn id(&self) -> ID {
        ID(self.0.order.id.to_string())
    }

    async fn status(&self) -> OrderStatus {
        self.0.order.status.into()
    }

    /// Starts at 1 and grows by exactly 1 with every committed change to the order or its items.
    async fn version(&self) -> Result<i32, DomainError> {
        graphql_int(self.0.order.version)
    }

    async fn items(&self) -> Vec<OrderItem<'_>> {
        self.0.items.iter().map(OrderItem).collect()
    }

    async fn total_cents(&self) -> i64 {
        self.0.total_cents()
    }

    async fn delivery_window(&self) -> Option<DeliveryWindow> {
        let order = &self.0.order;
        Some(DeliveryWindow {
            start: order.delivery_window_start?,
            end: order.delivery_window_end?,
        })
    }

    async fn cancel_reason(&self) -> Option<&str> {
        self.0.order.cancel_reason.as_deref()
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.order.created_at
    }

    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.order.updated_at
    }
}

pub struct OrderItem<'a>(&'a ItemView);

/// One product in an order, at the price it had when it was added.
#[Object]
impl OrderItem<'_> {
    async fn id(&self) -> ID {
        ID(self.0.item.id.to_string())
    }

    async fn product(&self) -> Product {
        Product(self.0.product.clone())
    }

    async fn quantity(&self) -> i32 {
        self.0.item.quantity
    }

    async fn unit_price_cents(&self) -> i64 {
        self.0.item.unit_price_cents
    }

    async fn line_total_cents(&self) -> i64 {
        self.0.line_total_cents()
    }
}

pub struct Product(pub products::Model);

#[Object]
impl Product {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    async fn sku(&self) -> &str {
        &self.0.sku
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    async fn price_cents(&self) -> i64 {
        self.0.price_cents
    }

    async fn available(&self) -> bool {
        self.0.available
    }
}

pub struct Customer(pub customers::Model);

#[Object]
impl Customer {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    /// Absent when the identity provider shared none, or the address belongs to another customer.
    async fn email(&self) -> Option<&str> {
        self.0.email.as_deref()
    }

    async fn display_name(&self) -> &str {
        &self.0.display_name
    }
}

/// GraphQL `Int` is 32-bit; a version beyond it is a broken database, not bad input.
pub fn graphql_int(value: i64) -> Result<i32, DomainError> {
    i32::try_from(value).map_err(|_| DomainError::Internal(format!("{value} does not fit a GraphQL Int").into()))
}

/// What a live update changed.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderChange {
    /// Not a change: the state a subscription starts from (or resyncs to).
    Snapshot,
    Created,
    ItemAdded,
    ItemChanged,
    ItemRemoved,
    Scheduled,
    Reopened,
    Cancelled,
    /// A change none of the others describe, e.g. made with SQL by another service.
    Updated,
}

impl From<ChangeKind> for OrderChange {
    fn from(kind: ChangeKind) -> Self {
        match kind {
            ChangeKind::Snapshot => OrderChange::Snapshot,
            ChangeKind::Created => OrderChange::Created,
            ChangeKind::ItemAdded => OrderChange::ItemAdded,
            ChangeKind::ItemChanged => OrderChange::ItemChanged,
            ChangeKind::ItemRemoved => OrderChange::ItemRemoved,
            ChangeKind::Scheduled => OrderChange::Scheduled,
            ChangeKind::Reopened => OrderChange::Reopened,
            ChangeKind::Cancelled => OrderChange::Cancelled,
            ChangeKind::Updated => OrderChange::Updated,
        }
    }
}

pub struct OrderUpdate(pub Update);

/// A committed state of an order, pushed live.
#[Object]
impl OrderUpdate {
    async fn order(&self) -> Order {
        Order(self.0.version.view.clone())
    }

    async fn version(&self) -> Result<i32, DomainError> {
        graphql_int(self.0.version.version)
    }

    async fn change(&self) -> OrderChange {
        if self.0.resync {
            OrderChange::Snapshot
        } else {
            self.0.version.change.into()
        }
    }

    /// True when this state replaces what the subscriber expected next, because
    /// continuity could not be proven (slow reader, CDC outage, lost history).
    /// Treat it like a snapshot.
    async fn resync(&self) -> bool {
        self.0.resync
    }
}
