//! Committed versions of an order, as `order_versions` records them: the unit
//! of live updates and of resumes.

use std::str::FromStr;
use std::sync::Arc;

use entity::{order_items, orders, products};
use serde::Deserialize;
use uuid::Uuid;

use super::{ItemView, OrderView};

/// What a version changed, as computed by the database when it was committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// Not a change: the state a subscription starts from.
    Snapshot,
    Created,
    ItemAdded,
    ItemChanged,
    ItemRemoved,
    Scheduled,
    Reopened,
    Cancelled,
    /// A change none of the others describe (e.g. a raw SQL touch).
    Updated,
}

impl FromStr for ChangeKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "SNAPSHOT" => ChangeKind::Snapshot,
            "CREATED" => ChangeKind::Created,
            "ITEM_ADDED" => ChangeKind::ItemAdded,
            "ITEM_CHANGED" => ChangeKind::ItemChanged,
            "ITEM_REMOVED" => ChangeKind::ItemRemoved,
            "SCHEDULED" => ChangeKind::Scheduled,
            "REOPENED" => ChangeKind::Reopened,
            "CANCELLED" => ChangeKind::Cancelled,
            "UPDATED" => ChangeKind::Updated,
            other => return Err(format!("unknown change kind {other:?}")),
        })
    }
}

/// One committed version of one order: its whole state and what changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderVersion {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub version: i64,
    pub change: ChangeKind,
    pub view: Arc<OrderView>,
    /// Commit time in Postgres (Debezium `source.ts_ms`), when known.
    pub committed_at_ms: Option<i64>,
}

impl OrderVersion {
    /// The version a subscription starts from.
    pub fn snapshot(view: OrderView) -> Self {
        OrderVersion {
            order_id: view.order.id,
            customer_id: view.order.customer_id,
            version: view.order.version,
            change: ChangeKind::Snapshot,
            view: Arc::new(view),
            committed_at_ms: None,
        }
    }

    /// An `UPDATED` version of an empty open order, for unit tests of what routes and orders versions.
    #[cfg(test)]
    pub(crate) fn empty_update(order_id: Uuid, customer_id: Uuid, version: i64) -> Self {
        OrderVersion {
            order_id,
            customer_id,
            version,
            change: ChangeKind::Updated,
            view: Arc::new(OrderView::empty_open(order_id, customer_id, version)),
            committed_at_ms: None,
        }
    }

    /// Seconds from the Postgres commit to `at_ms` (Unix milliseconds), when the commit time is
    /// known; never negative, as clocks of different hosts may disagree by a little.
    pub fn seconds_after_commit(&self, at_ms: i64) -> Option<f64> {
        seconds_after_commit(self.committed_at_ms, at_ms)
    }
}

/// Seconds from a commit (when known) to `at_ms`, never negative (clocks of different hosts).
pub fn seconds_after_commit(committed_at_ms: Option<i64>, at_ms: i64) -> Option<f64> {
    committed_at_ms.map(|committed| (at_ms - committed).max(0) as f64 / 1000.0)
}

#[derive(Deserialize)]
struct StateDocument {
    #[serde(flatten)]
    order: orders::Model,
    items: Vec<ItemDocument>,
}

#[derive(Deserialize)]
struct ItemDocument {
    #[serde(flatten)]
    item: order_items::Model,
    product: products::Model,
}

impl From<StateDocument> for OrderView {
    fn from(document: StateDocument) -> Self {
        OrderView {
            order: document.order,
            items: document
                .items
                .into_iter()
                .map(|i| ItemView {
                    item: i.item,
                    product: i.product,
                })
                .collect(),
        }
    }
}

/// Decodes `order_versions.state` (built by the SQL function `order_state`).
pub fn parse_state(state: &serde_json::Value) -> Result<OrderView, serde_json::Error> {
    StateDocument::deserialize(state).map(OrderView::from)
}

/// [`parse_state`] straight from JSON text, without building a `serde_json::Value` first.
pub fn parse_state_text(state: &str) -> Result<OrderView, serde_json::Error> {
    serde_json::from_str::<StateDocument>(state).map(OrderView::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_document_decodes_to_the_order_view() {
        let state = serde_json::json!({
            "id": "01a213b7-407f-75ae-9b8d-742bb8a25317",
            "customer_id": "01a213b7-3d55-7036-822a-be997e7ecba2",
            "status": "scheduled",
            "delivery_window_start": "2026-11-26T10:00:00+00:00",
            "delivery_window_end": "2026-11-26T12:00:00+01:00",
            "cancel_reason": null,
            "version": 3,
            "created_at": "2026-11-25T17:18:26.549783+00:00",
            "updated_at": "2026-11-25T17:18:26.560203+00:00",
            "items": [{
                "id": "01a213b7-4088-75eb-8810-a43b8b790b15",
                "order_id": "01a213b7-407f-75ae-9b8d-742bb8a25317",
                "order_status": "scheduled",
                "product_id": "01a213b7-3d57-735a-8134-64a7539ab355",
                "quantity": 2,
                "unit_price_cents": 129,
                "created_at": "2026-11-25T17:18:26.549783+00:00",
                "updated_at": "2026-11-25T17:18:26.549783+00:00",
                "product": {
                    "id": "01a213b7-3d57-735a-8134-64a7539ab355", "sku": "MLK-001", "name": "Milk", "price_cents": 129,
                    "available": true, "created_at": "2026-11-25T17:18:25.627814+00:00",
                    "updated_at": "2026-11-25T17:18:25.627814+00:00"
                }
            }]
        });
        let view = parse_state(&state).unwrap();
        assert_eq!(view.order.version, 3);
        assert_eq!(view.order.status, entity::OrderStatus::Scheduled);
        assert_eq!(
            view.order.delivery_window_end.unwrap().to_rfc3339(),
            "2026-11-26T11:00:00+00:00"
        );
        assert_eq!(view.items[0].product.sku, "MLK-001");
        assert_eq!(view.total_cents(), 258);
    }

    #[test]
    fn change_kinds_parse_from_their_database_names() {
        assert_eq!("ITEM_ADDED".parse(), Ok(ChangeKind::ItemAdded));
        assert!("DELIVERED".parse::<ChangeKind>().is_err());
    }
}
