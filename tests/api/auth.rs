//! Every resolver is scoped to the caller; bad credentials are UNAUTHENTICATED.

use std::time::{SystemTime, UNIX_EPOCH};

use ordercast::auth::DevelopmentTokens;
use serde_json::json;

use crate::common::{error_code, spawn_app};
use crate::orders::{add_item, cancel, version_of, ORDER};

#[tokio::test]
async fn bob_can_neither_read_change_nor_cancel_alices_order() {
    let app = spawn_app().await;
    let alice = app.token(app.new_customer().await);
    let bob = app.token(app.new_customer().await);
    let product = app.new_product(100, true).await.to_string();
    let order = app.new_order(&alice).await;
    add_item(&app, &alice, &order, &product, 1).await;

    let read = app
        .graphql(
            Some(&bob),
            &format!("query($id: ID!) {{ order(id: $id) {{ {ORDER} }} }}"),
            json!({ "id": order }),
        )
        .await;
    assert!(
        read["data"]["order"].is_null(),
        "bob sees nothing, not even that it exists: {read}"
    );
    assert!(read.get("errors").is_none());
    let listed = app.ok(&bob, "{ orders { edges { node { id } } } }", json!({})).await;
    assert_eq!(listed["orders"]["edges"], json!([]));

    let change = add_item(&app, &bob, &order, &product, 1).await;
    assert_eq!(error_code(&change), Some("NOT_FOUND"), "{change}");
    assert_eq!(change["errors"][0]["message"], "order not found");
    let cancelled = cancel(&app, &bob, &order).await;
    assert_eq!(error_code(&cancelled), Some("NOT_FOUND"));
    let quantity = app
        .graphql(
            Some(&bob),
            "mutation($o: ID!, $p: ID!) { setItemQuantity(orderId: $o, productId: $p, quantity: 5) { id } }",
            json!({ "o": order, "p": product }),
        )
        .await;
    assert_eq!(error_code(&quantity), Some("NOT_FOUND"));
    assert_eq!(version_of(&app, &order).await, 2, "alice's order is untouched");
}

#[tokio::test]
async fn missing_malformed_forged_and_expired_tokens_are_unauthenticated() {
    let app = spawn_app().await;
    let customer = app.new_customer().await;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let forged = DevelopmentTokens::new("not-the-server-secret").mint(customer, std::time::Duration::from_secs(600));
    let expired = app.keys.mint_with_times(customer, now - 7200, now - 3600);

    let missing = app.graphql(None, "{ me { id } }", json!({})).await;
    assert_eq!(error_code(&missing), Some("UNAUTHENTICATED"));
    let create = app.graphql(None, "mutation { createOrder { id } }", json!({})).await;
    assert_eq!(error_code(&create), Some("UNAUTHENTICATED"));

    for (token, why) in [
        ("garbage", "malformed"),
        (forged.as_str(), "wrong signature"),
        (expired.as_str(), "expired"),
    ] {
        for query in [
            "{ me { id } }",
            "mutation { createOrder { id } }",
            "{ products { edges { cursor } } }",
        ] {
            let response = app.graphql(Some(token), query, json!({})).await;
            assert_eq!(
                error_code(&response),
                Some("UNAUTHENTICATED"),
                "{why} on {query}: {response}"
            );
        }
    }
    let expired_message = app.graphql(Some(&expired), "{ me { id } }", json!({})).await;
    assert_eq!(expired_message["errors"][0]["message"], "the token has expired");

    let wrong_scheme = app
        .http
        .post(format!("{}/graphql", app.base_url))
        .header("Authorization", format!("Basic {}", app.token(customer)))
        .json(&json!({ "query": "{ me { id } }" }))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(error_code(&wrong_scheme), Some("UNAUTHENTICATED"));

    let unknown = app.token(uuid::Uuid::now_v7());
    let ghost = app
        .graphql(Some(&unknown), "mutation { createOrder { id } }", json!({}))
        .await;
    assert_eq!(
        error_code(&ghost),
        Some("UNAUTHENTICATED"),
        "a token for a deleted customer: {ghost}"
    );
}
