//! Real events from the local stack, validated against the contract.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{Duration as Span, Utc};
use serde_json::{json, Value};

use crate::common::kafka::{consumer_at_end, read_until, Record};
use crate::common::{spawn_app, stack};

const TOPIC: &str = "ordercast.order-events";
/// Where the schemas' `$id`s live; a `$ref` between them is read from the checkout.
const CONTRACT_BASE: &str = "https://ordercast.example/contracts/order-events/";

fn contract(name: &str) -> Value {
    let path = stack::repo()
        .join("contracts/order-events")
        .join(format!("{name}.schema.json"));
    serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Resolves the contract's own `$id`s to the checked-in files, and nothing else.
struct ContractFiles;

impl jsonschema::Retrieve for ContractFiles {
    fn retrieve(&self, uri: &jsonschema::Uri<String>) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let name = uri
            .as_str()
            .strip_prefix(CONTRACT_BASE)
            .and_then(|file| file.strip_suffix(".schema.json"))
            .ok_or_else(|| format!("{uri} is not part of the order events contract"))?;
        Ok(contract(name))
    }
}

/// A validator for one schema of the contract (`order-event` or an event type).
fn validator(schema: &str) -> jsonschema::Validator {
    jsonschema::options()
        .should_validate_formats(true)
        .with_retriever(ContractFiles)
        .build(&contract(schema))
        .unwrap_or_else(|e| panic!("{schema}.schema.json is a valid schema: {e}"))
}

fn assert_valid(event: &Value) {
    let event_type = event["type"].as_str().expect("every event has a type");
    for schema in ["order-event", event_type] {
        let errors: Vec<String> = validator(schema)
            .iter_errors(event)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{schema}.schema.json rejects {event:#}: {errors:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_committed_version_is_one_valid_event_keyed_by_order_in_version_order() {
    let app = spawn_app().await;
    let token = app.token(app.new_customer().await);
    let tea = app.new_product(1234, true).await.to_string();
    let jam = app.new_product(550, true).await.to_string();
    let consumer = consumer_at_end(&[TOPIC]).await;

    let order = app.new_order(&token).await;
    let window = json!({
        "start": (Utc::now() + Span::days(1)).to_rfc3339(),
        "end": (Utc::now() + Span::days(1) + Span::hours(2)).to_rfc3339(),
    });
    let steps: [(&str, Value); 8] = [
        (
            "mutation($o: ID!, $p: ID!) { addItem(orderId: $o, productId: $p, quantity: 2) { version } }",
            json!({ "p": tea }),
        ),
        (
            "mutation($o: ID!, $p: ID!) { setItemQuantity(orderId: $o, productId: $p, quantity: 3) { version } }",
            json!({ "p": tea }),
        ),
        (
            "mutation($o: ID!, $p: ID!) { addItem(orderId: $o, productId: $p) { version } }",
            json!({ "p": jam }),
        ),
        (
            "mutation($o: ID!, $p: ID!) { removeItem(orderId: $o, productId: $p) { version } }",
            json!({ "p": jam }),
        ),
        (
            "mutation($o: ID!, $w: DeliveryWindowInput!) { scheduleOrder(orderId: $o, window: $w) { version } }",
            json!({ "w": window }),
        ),
        ("mutation($o: ID!) { reopenOrder(orderId: $o) { version } }", json!({})),
        (
            "mutation($o: ID!, $w: DeliveryWindowInput!) { scheduleOrder(orderId: $o, window: $w) { version } }",
            json!({ "w": window }),
        ),
        (
            "mutation($o: ID!) { cancelOrder(orderId: $o, reason: \"moved away\") { version totalCents } }",
            json!({}),
        ),
    ];
    let mut last = Value::Null;
    for (mutation, mut variables) in steps {
        variables["o"] = json!(order);
        last = app.ok(&token, mutation, variables).await;
    }

    let ours = |records: &[Record]| -> Vec<Value> {
        records
            .iter()
            .filter(|r| r.key == json!(order))
            .filter_map(|r| r.value.clone())
            .collect()
    };
    let records = read_until(&consumer, Duration::from_secs(30), |records| ours(records).len() >= 9).await;
    let events = ours(&records);
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "OrderCreated",
            "ItemAdded",
            "ItemChanged",
            "ItemAdded",
            "ItemRemoved",
            "OrderScheduled",
            "OrderReopened",
            "OrderScheduled",
            "OrderCancelled"
        ]
    );
    let versions: Vec<i64> = events.iter().map(|e| e["version"].as_i64().unwrap()).collect();
    assert_eq!(versions, (1..=9).collect::<Vec<_>>(), "one event per version, in order");
    let partitions: HashSet<i32> = records
        .iter()
        .filter(|r| r.key == json!(order))
        .map(|r| r.partition)
        .collect();
    assert_eq!(partitions.len(), 1, "one order, one partition");
    let ids: HashSet<&str> = events.iter().map(|e| e["event_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 9, "event ids are unique");
    for event in &events {
        assert_valid(event);
        assert_eq!(event["order_id"], json!(order));
        assert!(
            event.get("payload").is_none() && event.get("source").is_none(),
            "no envelope: {event}"
        );
    }
    let cancelled = &events[8]["order"];
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["cancel_reason"], "moved away");
    assert_eq!(cancelled["total_cents"], last["cancelOrder"]["totalCents"]);
    assert_eq!(cancelled["items"][0]["quantity"], 3);
    assert_eq!(cancelled["items"][0]["line_total_cents"], 3 * 1234);
    assert!(events[5]["order"]["delivery_window"]["start"].is_string());
    assert!(events[6]["order"]["delivery_window"].is_null());
}

#[test]
fn the_contract_refuses_what_it_does_not_promise() {
    let created = json!({
        "schema_version": 1,
        "event_id": "0b5f3c1e-6a8e-4f3e-9c1a-1d2e3f4a5b6c",
        "type": "OrderCreated",
        "order_id": "0b5f3c1e-6a8e-4f3e-9c1a-1d2e3f4a5b6d",
        "customer_id": "0b5f3c1e-6a8e-4f3e-9c1a-1d2e3f4a5b6e",
        "version": 1,
        "occurred_at": "2026-12-03T10:00:00.000000Z",
        "order": { "status": "open", "items": [], "item_count": 0, "total_cents": 0,
                   "delivery_window": null, "cancel_reason": null, "created_at": "2026-12-03T10:00:00.000000Z" }
    });
    assert!(validator("OrderCreated").is_valid(&created));
    for (path, bad) in [
        ("/version", json!(2)),
        ("/schema_version", json!(2)),
        ("/order/status", json!("cancelled")),
        ("/order_id", json!("not-a-uuid")),
    ] {
        let mut event = created.clone();
        *event.pointer_mut(path).unwrap() = bad;
        assert!(!validator("OrderCreated").is_valid(&event), "{path} must be refused");
    }
    let mut scheduled = created.clone();
    scheduled["type"] = json!("OrderScheduled");
    scheduled["version"] = json!(3);
    assert!(
        !validator("OrderScheduled").is_valid(&scheduled),
        "a scheduled order has a window and items"
    );
}
