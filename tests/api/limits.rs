//! Abusive or malformed requests get a typed error and change nothing.

use serde_json::{json, Value};

use crate::common::{error_code, spawn_app};

#[tokio::test]
async fn oversized_bodies_non_json_and_get_mutations_are_refused_with_graphql_errors() {
    let app = spawn_app().await;
    let customer = app.new_customer().await;
    let token = app.token(customer);
    let huge = format!("{{ me {{ id }} }} #{}", "x".repeat(128 * 1024));
    let response = app
        .http
        .post(format!("{}/graphql", app.base_url))
        .bearer_auth(&token)
        .json(&json!({ "query": huge }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");

    let response = app
        .http
        .post(format!("{}/graphql", app.base_url))
        .header("content-type", "application/json")
        .body("mutation { createOrder { id } }")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(
        error_code(&response.json::<Value>().await.unwrap()),
        Some("BAD_USER_INPUT")
    );

    let get = |query: &str| {
        app.http
            .get(format!("{}/graphql", app.base_url))
            .bearer_auth(&token)
            .query(&[("query", query)])
            .send()
    };
    let mutation = get("mutation { createOrder { id } }").await.unwrap();
    assert_eq!(mutation.status(), 405);
    let count = app
        .scalar_i64(
            "SELECT count(*) FROM orders o JOIN customers c ON c.id = o.customer_id WHERE c.id = $1",
            vec![customer.into()],
        )
        .await;
    assert_eq!(count, 0, "a GET never writes");
    let query = get("{ me { id } }").await.unwrap();
    assert_eq!(query.status(), 200);
    assert!(query.json::<Value>().await.unwrap()["data"]["me"]["id"].is_string());
}

#[tokio::test]
async fn deep_complex_and_oversized_pages_are_refused() {
    let app = spawn_app().await;
    let token = app.token(app.new_customer().await);
    // Only introspection nests without bound in this schema; GraphiQL's own query (depth 15) must pass.
    let nested = |depth: usize| {
        format!(
            "{{ __type(name: \"Order\") {{ {}name{} }} }}",
            "ofType { ".repeat(depth),
            " }".repeat(depth)
        )
    };
    let response = app.graphql(Some(&token), &nested(12), json!({})).await;
    assert!(response.get("errors").is_none(), "{response}");
    let response = app.graphql(Some(&token), &nested(30), json!({})).await;
    assert_eq!(error_code(&response), Some("BAD_USER_INPUT"), "{response}");
    assert!(
        response["errors"][0]["message"].as_str().unwrap().contains("too deep"),
        "{response}"
    );
    assert!(response["data"].is_null());

    let page = "orders(first: 100) { edges { node { items { product { id sku name priceCents available } quantity unitPriceCents lineTotalCents } id status version totalCents } } }";
    let aliased: String = (0..10).map(|i| format!("a{i}: {page} ")).collect();
    let response = app.graphql(Some(&token), &format!("{{ {aliased} }}"), json!({})).await;
    assert_eq!(error_code(&response), Some("BAD_USER_INPUT"), "too complex: {response}");

    for first in [0, -1, 101, 100_000] {
        let response = app
            .graphql(
                Some(&token),
                "query($n: Int!) { orders(first: $n) { edges { cursor } } }",
                json!({ "n": first }),
            )
            .await;
        assert_eq!(
            error_code(&response),
            Some("BAD_USER_INPUT"),
            "first: {first}: {response}"
        );
    }
    let syntax = app.graphql(Some(&token), "{ orders { edges ", json!({})).await;
    assert_eq!(error_code(&syntax), Some("BAD_USER_INPUT"));
    let unknown = app.graphql(Some(&token), "{ secrets }", json!({})).await;
    assert_eq!(error_code(&unknown), Some("BAD_USER_INPUT"));
}
