//! Persisted operations: Automatic Persisted Queries as Apollo Client and urql
//! send them, and trusted documents, on HTTP and both WebSocket protocols.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::common::ws::{ConnectOptions, Event, Protocol, WsClient, WAIT};
use crate::common::{error_code, serve_config, spawn_app, spawn_app_with, unique, TestApp};

const ORDER_STATUS: &str = "query OrderStatus($o: ID!) { order(id: $o) { status } }";
const ORDER_UPDATES: &str = "subscription OrderUpdates($o: ID!) { orderUpdates(orderId: $o) { version } }";

fn sha256(document: &str) -> String {
    format!("{:x}", Sha256::digest(document.as_bytes()))
}

fn apq(document: &str) -> Value {
    json!({ "persistedQuery": { "version": 1, "sha256Hash": sha256(document) } })
}

async fn post(app: &TestApp, token: &str, body: Value) -> (u16, Value) {
    let response = app
        .http
        .post(format!("{}/graphql", app.base_url))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn automatic_persisted_queries_take_the_apollo_handshake_over_post_and_get() {
    let app = spawn_app().await;
    let token = app.token(app.new_customer().await);
    let order = app.new_order(&token).await;
    // A document nobody registered yet: unique per test run.
    let document = format!("{ORDER_STATUS} # {}", unique("apq"));
    let by_hash = json!({ "extensions": apq(&document), "variables": { "o": order } });

    let (status, body) = post(&app, &token, by_hash.clone()).await;
    assert_eq!(
        (status, error_code(&body)),
        (200, Some("PERSISTED_QUERY_NOT_FOUND")),
        "{body}"
    );
    assert_eq!(body["errors"][0]["message"], "PersistedQueryNotFound");

    let mut register = by_hash.clone();
    register["query"] = document.clone().into();
    let (status, body) = post(&app, &token, register).await;
    assert_eq!(
        (status, &body["data"]["order"]["status"]),
        (200, &json!("OPEN")),
        "{body}"
    );

    let (status, body) = post(&app, &token, by_hash).await;
    assert_eq!(
        (status, &body["data"]["order"]["status"]),
        (200, &json!("OPEN")),
        "{body}"
    );

    // Apollo Client's useGETForHashedQueries.
    let response = app
        .http
        .get(format!("{}/graphql", app.base_url))
        .bearer_auth(&token)
        .query(&[
            ("extensions", apq(&document).to_string()),
            ("variables", json!({ "o": order }).to_string()),
        ])
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"]["order"]["status"], "OPEN", "{body}");

    let wrong = json!({ "query": "{ me { id } }", "extensions": apq(&document) });
    let (status, body) = post(&app, &token, wrong).await;
    assert_eq!((status, error_code(&body)), (400, Some("BAD_USER_INPUT")), "{body}");
}

#[tokio::test]
async fn with_trusted_documents_only_the_manifest_runs_on_every_transport() {
    let manifest = json!({
        "format": "apollo-persisted-query-manifest", "version": 1,
        "operations": [
            { "id": sha256(ORDER_STATUS), "name": "OrderStatus", "type": "query", "body": ORDER_STATUS },
            { "id": "order-updates-1", "name": "OrderUpdates", "type": "subscription", "body": ORDER_UPDATES },
        ],
    });
    let path = std::env::temp_dir().join(format!("{}.json", unique("trusted-documents")));
    std::fs::write(&path, manifest.to_string()).unwrap();
    let mut config = serve_config();
    config.documents.trusted_documents = Some(path.clone());
    let app = spawn_app_with(config).await;
    std::fs::remove_file(&path).unwrap();
    let customer = app.new_customer().await;
    let token = app.token(customer);
    // createOrder is not in the manifest: the order is made behind the API's back.
    let (_, body) = post(&app, &token, json!({ "query": "mutation { createOrder { id } }" })).await;
    assert_eq!(error_code(&body), Some("PERSISTED_QUERY_NOT_IN_LIST"), "{body}");
    let order = ordercast::db::create_order(&app.db, customer).await.unwrap();
    let variables = json!({ "o": order.order.id.to_string() });

    // HTTP: by APQ hash, by exact text; anything else is refused.
    let (status, body) = post(
        &app,
        &token,
        json!({ "extensions": apq(ORDER_STATUS), "variables": variables }),
    )
    .await;
    assert_eq!(
        (status, &body["data"]["order"]["status"]),
        (200, &json!("OPEN")),
        "{body}"
    );
    let (_, body) = post(&app, &token, json!({ "query": ORDER_STATUS, "variables": variables })).await;
    assert_eq!(body["data"]["order"]["status"], "OPEN", "{body}");
    let (status, body) = post(&app, &token, json!({ "query": "{ me { id } }" })).await;
    assert_eq!(
        (status, error_code(&body)),
        (400, Some("PERSISTED_QUERY_NOT_IN_LIST")),
        "{body}"
    );

    // graphql-transport-ws and the legacy protocol: by documentId, and refused otherwise.
    for protocol in [Protocol::TransportWs, Protocol::LegacyWs] {
        let options = ConnectOptions {
            protocol,
            ..ConnectOptions::default()
        };
        let mut socket = WsClient::connect_with(&app, &token, options).await.unwrap();
        let start = if protocol == Protocol::TransportWs {
            "subscribe"
        } else {
            "start"
        };
        socket
            .send(json!({ "id": "trusted", "type": start, "payload": { "documentId": "order-updates-1", "variables": variables } }))
            .await;
        let snapshot = socket.next_data("trusted", WAIT).await;
        assert_eq!(snapshot["orderUpdates"]["version"], 1, "{protocol:?}");
        socket
            .send(json!({ "id": "ad-hoc", "type": start, "payload": { "query": "subscription { orderUpdates(orderId: \"x\") { version } }" } }))
            .await;
        let refused = socket.next_event("ad-hoc", WAIT).await;
        assert!(matches!(refused, Event::Error(_)), "{protocol:?}: {refused:?}");
        assert_eq!(
            refused.error_code().as_deref(),
            Some("PERSISTED_QUERY_NOT_IN_LIST"),
            "{protocol:?}"
        );
        socket.close().await;
    }
}
