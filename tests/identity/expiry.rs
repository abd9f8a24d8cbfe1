//! A socket login lasts as long as its token: at expiry the open operations
//! hear UNAUTHENTICATED and the socket closes with 4403, on both protocols, so
//! clients reconnect with a fresh token (and resume with `afterVersion`).

use std::time::Duration;

use ordercast::config::AuthConfig;
use serde_json::json;

use crate::common::ws::{Event, WsClient};
use crate::common::TEST_JWT_SECRET;
use crate::provider::now;
use crate::spawn_with_auth;

const SUBSCRIPTION: &str = "subscription($id: ID!) { orderUpdates(orderId: $id) { version change } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_login_closes_the_socket_with_4403_on_both_protocols() {
    let mut auth = AuthConfig::development(TEST_JWT_SECRET);
    auth.jwt_leeway_secs = 0;
    let app = spawn_with_auth(auth).await;
    let customer = app.new_customer().await;
    let order = app.new_order(&app.token(customer)).await;

    // graphql-transport-ws: the subscription says why it ends, then the socket closes.
    let short = app.keys.mint_with_times(customer, now(), now() + 3);
    let mut client = WsClient::connect(&app, &short).await.unwrap_or_else(|e| panic!("{e}"));
    client.subscribe("1", SUBSCRIPTION, json!({ "id": order })).await;
    let snapshot = client.next_event("1", Duration::from_secs(10)).await;
    assert!(matches!(snapshot, Event::Next(_)), "{snapshot:?}");
    let ended = client.next_event("1", Duration::from_secs(15)).await;
    assert_eq!(ended.error_code().as_deref(), Some("UNAUTHENTICATED"), "{ended:?}");
    let closed = client.wait_closed(Duration::from_secs(5)).await;
    assert!(
        closed.as_deref().is_some_and(|why| why.contains("code 4403")),
        "graphql-transport-ws: {closed:?}"
    );

    // The legacy protocol has no operation to tell; the socket closes all the same.
    let short = app.keys.mint_with_times(customer, now(), now() + 3);
    let mut legacy = WsClient::connect_legacy(&app, &short)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let closed = legacy.wait_closed(Duration::from_secs(15)).await;
    assert!(
        closed.as_deref().is_some_and(|why| why.contains("code 4403")),
        "graphql-ws: {closed:?}"
    );

    // A fresh token gets a new socket at once.
    let client = WsClient::connect(&app, &app.token(customer))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    client.close().await;
}
