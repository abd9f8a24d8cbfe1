//! What the live tests share: the subscription documents, a parsed `OrderUpdate`, the
//! mutations (over HTTP) and the database's view of an order.
#![allow(dead_code)]

use std::time::Duration;

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::{json, Value};

use crate::common::ws::WsClient;
use crate::common::TestApp;

pub const ORDER_FIELDS: &str =
    "id status version items { id quantity unitPriceCents product { id sku } } totalCents cancelReason";

pub fn order_updates() -> String {
    order_updates_bulky(0)
}

pub fn my_order_updates() -> String {
    my_order_updates_bulky(0)
}

/// The selection of an `OrderUpdate`, with `copies` aliased extra copies of its order: a slow
/// subscriber's messages then fill socket buffers sooner without making anyone else's bigger.
fn update_selection(copies: usize) -> String {
    let extra: String = (0..copies)
        .map(|i| format!(" copy{i}: order {{ {ORDER_FIELDS} }}"))
        .collect();
    format!("version change resync order {{ {ORDER_FIELDS} }}{extra}")
}

pub fn order_updates_bulky(copies: usize) -> String {
    format!(
        "subscription($o: ID!, $after: Int) {{ orderUpdates(orderId: $o, afterVersion: $after) {{ {} }} }}",
        update_selection(copies)
    )
}

pub fn my_order_updates_bulky(copies: usize) -> String {
    format!("subscription {{ myOrderUpdates {{ {} }} }}", update_selection(copies))
}

/// One `OrderUpdate`, as received.
#[derive(Debug, Clone)]
pub struct Update {
    pub version: i64,
    pub change: String,
    pub resync: bool,
    pub order: Value,
}

impl Update {
    /// Parses `data` of a subscription result (`{"orderUpdates": {...}}` or `{"myOrderUpdates": {...}}`).
    pub fn from_data(data: &Value) -> Update {
        let update = data
            .as_object()
            .and_then(|fields| fields.values().next())
            .unwrap_or_else(|| panic!("a subscription result has one field: {data}"));
        let parsed = Update {
            version: update["version"]
                .as_i64()
                .unwrap_or_else(|| panic!("version is an Int: {update}")),
            change: update["change"]
                .as_str()
                .unwrap_or_else(|| panic!("change is an enum: {update}"))
                .to_owned(),
            resync: update["resync"]
                .as_bool()
                .unwrap_or_else(|| panic!("resync is a Boolean: {update}")),
            order: update["order"].clone(),
        };
        assert_eq!(
            parsed.order["version"], parsed.version,
            "an update's version is its order's version: {update}"
        );
        parsed
    }

    pub fn order_id(&self) -> &str {
        self.order["id"].as_str().unwrap_or_default()
    }

    pub fn status(&self) -> &str {
        self.order["status"].as_str().unwrap_or_default()
    }

    pub fn items(&self) -> &[Value] {
        self.order["items"].as_array().map(Vec::as_slice).unwrap_or_default()
    }

    /// The quantity of `product`'s line, if the order has one.
    pub fn quantity_of(&self, product: &str) -> Option<i64> {
        self.items()
            .iter()
            .find(|item| item["product"]["id"] == product)
            .map(|item| item["quantity"].as_i64().unwrap())
    }

    /// Comparable state: status, version and (product, quantity, unit price) sorted by product.
    pub fn state(&self) -> OrderState {
        let mut items: Vec<(String, i64, i64)> = self
            .items()
            .iter()
            .map(|item| {
                (
                    item["product"]["id"].as_str().unwrap().to_owned(),
                    item["quantity"].as_i64().unwrap(),
                    item["unitPriceCents"].as_i64().unwrap(),
                )
            })
            .collect();
        items.sort();
        OrderState {
            status: self.status().to_owned(),
            version: self.version,
            items,
        }
    }

    /// A short form for assertion messages.
    pub fn brief(&self) -> String {
        format!(
            "v{} {}{} {} items={}",
            self.version,
            self.change,
            if self.resync { " (resync)" } else { "" },
            self.status(),
            self.items().len()
        )
    }
}

/// The next `OrderUpdate` of operation `id`.
pub async fn next_update(client: &mut WsClient, id: &str, timeout: Duration) -> Update {
    let data = client.next_data(id, timeout).await;
    Update::from_data(&data)
}

/// Subscribes to `orderUpdates` of `order` (optionally after a version).
pub async fn subscribe_order(client: &mut WsClient, id: &str, order: &str, after_version: Option<i64>) {
    client
        .subscribe(id, &order_updates(), json!({ "o": order, "after": after_version }))
        .await;
}

/// Subscribes to `orderUpdates` and returns the first message, which must be the SNAPSHOT.
pub async fn subscribe_snapshot(client: &mut WsClient, id: &str, order: &str) -> Update {
    subscribe_order(client, id, order, None).await;
    let snapshot = next_update(client, id, Duration::from_secs(10)).await;
    assert_eq!(
        snapshot.change, "SNAPSHOT",
        "the first message is a snapshot: {snapshot:?}"
    );
    assert!(!snapshot.resync, "a first snapshot is not a resync: {snapshot:?}");
    assert_eq!(snapshot.order_id(), order);
    snapshot
}

/// Asserts the sequence is `expected` (version, change) pairs, all `resync: false`.
pub fn assert_sequence(who: &str, updates: &[Update], expected: &[(i64, &str)]) {
    let got: Vec<(i64, &str)> = updates.iter().map(|u| (u.version, u.change.as_str())).collect();
    assert_eq!(
        got,
        expected,
        "{who}: got {:?}",
        updates.iter().map(Update::brief).collect::<Vec<_>>()
    );
    for update in updates {
        assert!(!update.resync, "{who}: nothing forced a resync here: {update:?}");
    }
}

// ------------------------------------------------------------------------------------------ mutations over HTTP

/// Runs a mutation that must succeed and returns its (single) root field.
pub async fn mutate(app: &TestApp, token: &str, mutation: &str, variables: Value) -> Value {
    let data = app.ok(token, mutation, variables).await;
    data.as_object()
        .and_then(|fields| fields.values().next())
        .cloned()
        .unwrap_or_else(|| panic!("a mutation result has one field: {data}"))
}

fn version(order: &Value) -> i64 {
    order["version"]
        .as_i64()
        .unwrap_or_else(|| panic!("the mutation returns the order's version: {order}"))
}

/// Creates an order; returns (id, version).
pub async fn create_order(app: &TestApp, token: &str) -> (String, i64) {
    let order = mutate(app, token, "mutation { createOrder { id version } }", json!({})).await;
    (order["id"].as_str().unwrap().to_owned(), version(&order))
}

/// The raw response of `addItem` (which may be an error).
pub async fn try_add_item(app: &TestApp, token: &str, order: &str, product: &str, quantity: i64) -> Value {
    app.graphql(
        Some(token),
        "mutation($o: ID!, $p: ID!, $q: Int!) { addItem(orderId: $o, productId: $p, quantity: $q) { version } }",
        json!({ "o": order, "p": product, "q": quantity }),
    )
    .await
}

/// Adds an item; returns the new version.
pub async fn add_item(app: &TestApp, token: &str, order: &str, product: &str, quantity: i64) -> i64 {
    let response = try_add_item(app, token, order, product, quantity).await;
    assert!(response.get("errors").is_none(), "addItem failed: {response}");
    version(&response["data"]["addItem"])
}

pub async fn set_quantity(app: &TestApp, token: &str, order: &str, product: &str, quantity: i64) -> i64 {
    let order = mutate(
        app,
        token,
        "mutation($o: ID!, $p: ID!, $q: Int!) { setItemQuantity(orderId: $o, productId: $p, quantity: $q) { version } }",
        json!({ "o": order, "p": product, "q": quantity }),
    )
    .await;
    version(&order)
}

pub async fn remove_item(app: &TestApp, token: &str, order: &str, product: &str) -> i64 {
    let order = mutate(
        app,
        token,
        "mutation($o: ID!, $p: ID!) { removeItem(orderId: $o, productId: $p) { version } }",
        json!({ "o": order, "p": product }),
    )
    .await;
    version(&order)
}

pub async fn cancel(app: &TestApp, token: &str, order: &str) -> i64 {
    let order = mutate(
        app,
        token,
        "mutation($o: ID!) { cancelOrder(orderId: $o, reason: \"changed my mind\") { version } }",
        json!({ "o": order }),
    )
    .await;
    version(&order)
}

pub async fn schedule(app: &TestApp, token: &str, order: &str) -> i64 {
    let start = chrono::Utc::now() + chrono::Duration::hours(24);
    let window = json!({ "start": start.to_rfc3339(), "end": (start + chrono::Duration::hours(2)).to_rfc3339() });
    let order = mutate(
        app,
        token,
        "mutation($o: ID!, $w: DeliveryWindowInput!) { scheduleOrder(orderId: $o, window: $w) { version } }",
        json!({ "o": order, "w": window }),
    )
    .await;
    version(&order)
}

pub async fn reopen(app: &TestApp, token: &str, order: &str) -> i64 {
    let order = mutate(
        app,
        token,
        "mutation($o: ID!) { reopenOrder(orderId: $o) { version } }",
        json!({ "o": order }),
    )
    .await;
    version(&order)
}

// ------------------------------------------------------------------------------------------ the database's view

/// An order as compared between a subscriber and the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderState {
    /// As GraphQL spells it: OPEN, SCHEDULED, CANCELLED.
    pub status: String,
    pub version: i64,
    /// (product id, quantity, unit price in cents), sorted.
    pub items: Vec<(String, i64, i64)>,
}

/// The committed state of `order`, read straight from Postgres.
pub async fn db_state(app: &TestApp, order: &str) -> OrderState {
    let row = app
        .db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT upper(status::text), version::bigint FROM orders WHERE id = $1::uuid",
            [order.into()],
        ))
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("order {order} exists"));
    let status: String = row.try_get_by_index(0).unwrap();
    let version: i64 = row.try_get_by_index(1).unwrap();
    let rows = app
        .db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT product_id::text, quantity::bigint, unit_price_cents::bigint FROM order_items \
             WHERE order_id = $1::uuid ORDER BY product_id::text",
            [order.into()],
        ))
        .await
        .unwrap();
    let items = rows
        .iter()
        .map(|row| {
            (
                row.try_get_by_index::<String>(0).unwrap(),
                row.try_get_by_index::<i64>(1).unwrap(),
                row.try_get_by_index::<i64>(2).unwrap(),
            )
        })
        .collect();
    OrderState { status, version, items }
}

/// Runs one SQL statement behind the API's back.
pub async fn execute_sql(app: &TestApp, sql: &str, values: Vec<sea_orm::Value>) {
    crate::common::execute(&app.db, sql, values).await;
}
