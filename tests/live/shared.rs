//! Subscribers with the same selection share one rendering of each version; each still gets
//! exactly its own selection, and operations outside that path run as before.

use serde_json::{json, Value};

use crate::common::spawn_app;
use crate::common::ws::{Event, WsClient, WAIT};
use crate::support::*;

const ONE_ORDER: &str = "subscription($o: ID!, $items: Boolean!) { orderUpdates(orderId: $o) { \
     version change order { status items @include(if: $items) { quantity } } } }";
const ALIASED: &str = "subscription($o: ID!) { orderUpdates(orderId: $o) { v: version kind: change } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subscriber_gets_its_own_selection_of_the_same_version() {
    let app = spawn_app().await;
    let token = app.token(app.new_customer().await);
    let other_token = app.token(app.new_customer().await);
    let product = app.new_product(120, true).await.to_string();
    let (order, _) = create_order(&app, &token).await;

    let mut client = WsClient::connect(&app, &token).await.expect("connects");
    let mut twin = WsClient::connect(&app, &token).await.expect("connects");
    let mut stranger = WsClient::connect(&app, &other_token).await.expect("connects");
    client
        .subscribe("with", ONE_ORDER, json!({ "o": order, "items": true }))
        .await;
    client
        .subscribe("without", ONE_ORDER, json!({ "o": order, "items": false }))
        .await;
    client.subscribe("aliased", ALIASED, json!({ "o": order })).await;
    twin.subscribe("with", ONE_ORDER, json!({ "o": order, "items": true }))
        .await;
    stranger
        .subscribe("with", ONE_ORDER, json!({ "o": order, "items": true }))
        .await;
    for id in ["with", "without", "aliased"] {
        client.next_data(id, WAIT).await;
    }
    twin.next_data("with", WAIT).await;
    let refused = stranger.next_event("with", WAIT).await;
    assert!(
        matches!(&refused, Event::Error(errors) if errors[0]["extensions"]["code"] == "NOT_FOUND"),
        "another customer's order is not found, even while its renderings are cached: {refused:?}"
    );

    assert_eq!(add_item(&app, &token, &order, &product, 3).await, 2);
    let update = |status: &str, items: Option<Value>| {
        let mut order = json!({ "status": status });
        if let Some(items) = items {
            order["items"] = items;
        }
        json!({ "orderUpdates": { "version": 2, "change": "ITEM_ADDED", "order": order } })
    };
    let with_items = update("OPEN", Some(json!([{ "quantity": 3 }])));
    assert_eq!(client.next_data("with", WAIT).await, with_items);
    assert_eq!(twin.next_data("with", WAIT).await, with_items);
    assert_eq!(client.next_data("without", WAIT).await, update("OPEN", None));
    assert_eq!(
        client.next_data("aliased", WAIT).await,
        json!({ "orderUpdates": { "v": 2, "kind": "ITEM_ADDED" } })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_and_skipped_subscriptions_run_unchanged() {
    let app = spawn_app().await;
    let token = app.token(app.new_customer().await);
    let (order, _) = create_order(&app, &token).await;
    let mut client = WsClient::connect(&app, &token).await.expect("connects");

    client
        .subscribe(
            "query",
            "query($o: ID!) { order(id: $o) { version } }",
            json!({ "o": order }),
        )
        .await;
    assert_eq!(
        client.next_data("query", WAIT).await,
        json!({ "order": { "version": 1 } })
    );
    assert!(matches!(client.next_event("query", WAIT).await, Event::Complete));

    client
        .subscribe(
            "skipped",
            "subscription($o: ID!) { orderUpdates(orderId: $o) @skip(if: true) { version } }",
            json!({ "o": order }),
        )
        .await;
    let skipped = client.next_event("skipped", WAIT).await;
    assert!(
        matches!(skipped, Event::Complete),
        "a subscription that selects nothing completes: {skipped:?}"
    );
}
