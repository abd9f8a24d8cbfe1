use chrono::{DateTime, Utc};
use entity::{order_items, orders, products};
use uuid::Uuid;

use super::DomainError;

/// The authenticated customer a request acts for.
pub type CustomerId = Uuid;

/// An order as one transaction saw it: the order row and all of its items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderView {
    pub order: orders::Model,
    pub items: Vec<ItemView>,
}

impl OrderView {
    pub fn total_cents(&self) -> i64 {
        self.items.iter().map(ItemView::line_total_cents).sum()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemView {
    pub item: order_items::Model,
    pub product: products::Model,
}

impl ItemView {
    pub fn line_total_cents(&self) -> i64 {
        i64::from(self.item.quantity) * self.item.unit_price_cents
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryWindow {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// Parses a client-supplied id; `what` names it in the error ("order id").
pub fn parse_id(raw: &str, what: &str) -> Result<Uuid, DomainError> {
    Uuid::parse_str(raw.trim()).map_err(|_| DomainError::bad_input(format!("{what} is not a valid id")))
}

#[cfg(test)]
impl OrderView {
    /// An open order without items, for unit tests that only need a version to route.
    pub(crate) fn empty_open(order_id: Uuid, customer_id: CustomerId, version: i64) -> Self {
        let now = chrono::Utc::now();
        let order = orders::Model {
            id: order_id,
            customer_id,
            status: entity::OrderStatus::Open,
            delivery_window_start: None,
            delivery_window_end: None,
            cancel_reason: None,
            version,
            version_xact: 0,
            created_at: now,
            updated_at: now,
        };
        OrderView {
            order,
            items: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_must_be_uuids() {
        assert!(parse_id("0190a5b2-6c1e-7c3a-8d4e-1a2b3c4d5e6f", "order id").is_ok());
        let err = parse_id("42; DROP TABLE orders", "order id").unwrap_err();
        assert_eq!(err.to_string(), "order id is not a valid id");
    }
}
