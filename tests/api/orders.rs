//! Every mutation's success path and every error code it can return; queries and pagination.

use serde_json::{json, Value};

use crate::common::{error_code, spawn_app, TestApp};

pub const ORDER: &str = "id status version totalCents cancelReason deliveryWindow { start end } \
                         items { quantity unitPriceCents lineTotalCents product { id } }";

pub fn future_window(hours_from_now: i64) -> Value {
    let start = chrono::Utc::now() + chrono::Duration::hours(hours_from_now);
    json!({ "start": start.to_rfc3339(), "end": (start + chrono::Duration::hours(2)).to_rfc3339() })
}

pub async fn add_item(app: &TestApp, token: &str, order: &str, product: &str, quantity: i64) -> Value {
    app.graphql(
        Some(token),
        &format!("mutation($o: ID!, $p: ID!, $q: Int!) {{ addItem(orderId: $o, productId: $p, quantity: $q) {{ {ORDER} }} }}"),
        json!({ "o": order, "p": product, "q": quantity }),
    )
    .await
}

pub async fn cancel(app: &TestApp, token: &str, order: &str) -> Value {
    app.graphql(
        Some(token),
        &format!("mutation($o: ID!) {{ cancelOrder(orderId: $o, reason: \"changed my mind\") {{ {ORDER} }} }}"),
        json!({ "o": order }),
    )
    .await
}

pub async fn version_of(app: &TestApp, order: &str) -> i64 {
    app.scalar_i64("SELECT version FROM orders WHERE id = $1::uuid", vec![order.into()])
        .await
}

async fn item_count(app: &TestApp, order: &str) -> i64 {
    app.scalar_i64(
        "SELECT count(*) FROM order_items WHERE order_id = $1::uuid",
        vec![order.into()],
    )
    .await
}

#[tokio::test]
async fn an_order_goes_through_its_whole_life() {
    let app = spawn_app().await;
    let token = app.token(app.new_customer().await);
    let milk = app.new_product(129, true).await.to_string();
    let bread = app.new_product(450, true).await.to_string();

    let created = app
        .ok(&token, &format!("mutation {{ createOrder {{ {ORDER} }} }}"), json!({}))
        .await;
    let order = created["createOrder"]["id"].as_str().unwrap().to_owned();
    assert_eq!(created["createOrder"]["status"], "OPEN");
    assert_eq!(created["createOrder"]["version"], 1);

    let added = add_item(&app, &token, &order, &milk, 2).await;
    assert_eq!(added["data"]["addItem"]["version"], 2, "{added}");
    assert_eq!(added["data"]["addItem"]["totalCents"], 258);
    let again = add_item(&app, &token, &order, &milk, 3).await;
    assert_eq!(
        again["data"]["addItem"]["items"][0]["quantity"], 5,
        "adding again raises the quantity"
    );
    assert_eq!(again["data"]["addItem"]["version"], 3);
    add_item(&app, &token, &order, &bread, 1).await;

    let set = app
        .ok(
            &token,
            &format!("mutation($o: ID!, $p: ID!) {{ setItemQuantity(orderId: $o, productId: $p, quantity: 7, expectedVersion: 4) {{ {ORDER} }} }}"),
            json!({ "o": order, "p": milk }),
        )
        .await;
    assert_eq!(set["setItemQuantity"]["items"][0]["lineTotalCents"], 7 * 129);
    assert_eq!(set["setItemQuantity"]["version"], 5);

    let removed = app
        .ok(
            &token,
            &format!("mutation($o: ID!, $p: ID!) {{ removeItem(orderId: $o, productId: $p) {{ {ORDER} }} }}"),
            json!({ "o": order, "p": bread }),
        )
        .await;
    assert_eq!(removed["removeItem"]["items"].as_array().unwrap().len(), 1);

    let window = future_window(24);
    let scheduled = app
        .ok(
            &token,
            &format!("mutation($o: ID!, $w: DeliveryWindowInput!) {{ scheduleOrder(orderId: $o, window: $w) {{ {ORDER} }} }}"),
            json!({ "o": order, "w": window }),
        )
        .await;
    assert_eq!(scheduled["scheduleOrder"]["status"], "SCHEDULED");
    assert!(scheduled["scheduleOrder"]["deliveryWindow"]["start"].is_string());

    let reopened = app
        .ok(
            &token,
            &format!("mutation($o: ID!) {{ reopenOrder(orderId: $o) {{ {ORDER} }} }}"),
            json!({ "o": order }),
        )
        .await;
    assert_eq!(reopened["reopenOrder"]["status"], "OPEN");
    assert!(reopened["reopenOrder"]["deliveryWindow"].is_null());

    let cancelled = cancel(&app, &token, &order).await;
    assert_eq!(cancelled["data"]["cancelOrder"]["status"], "CANCELLED", "{cancelled}");
    assert_eq!(cancelled["data"]["cancelOrder"]["cancelReason"], "changed my mind");
    assert_eq!(cancelled["data"]["cancelOrder"]["version"], 9);

    let refused = add_item(&app, &token, &order, &milk, 1).await;
    assert_eq!(error_code(&refused), Some("ORDER_CANCELLED"), "{refused}");
    assert!(refused["data"].is_null());
    assert_eq!(version_of(&app, &order).await, 9, "a refused change writes nothing");
}

#[tokio::test]
async fn add_item_errors() {
    let app = spawn_app().await;
    let token = app.token(app.new_customer().await);
    let order = app.new_order(&token).await;
    let product = app.new_product(100, true).await.to_string();
    let unavailable = app.new_product(100, false).await.to_string();
    let missing = uuid::Uuid::now_v7().to_string();

    for (quantity, what) in [(0, "zero"), (-1, "negative"), (1000, "too many")] {
        let response = add_item(&app, &token, &order, &product, quantity).await;
        assert_eq!(error_code(&response), Some("BAD_USER_INPUT"), "{what}: {response}");
        assert!(response["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("between 1 and 999"));
    }
    add_item(&app, &token, &order, &product, 998).await;
    let over = add_item(&app, &token, &order, &product, 2).await;
    assert_eq!(
        error_code(&over),
        Some("BAD_USER_INPUT"),
        "the sum is bounded too: {over}"
    );

    let response = add_item(&app, &token, &order, &missing, 1).await;
    assert_eq!(error_code(&response), Some("NOT_FOUND"));
    assert_eq!(response["errors"][0]["message"], "product not found");
    let response = add_item(&app, &token, &order, &unavailable, 1).await;
    assert_eq!(error_code(&response), Some("PRODUCT_UNAVAILABLE"));
    let response = add_item(&app, &token, &missing, &product, 1).await;
    assert_eq!(error_code(&response), Some("NOT_FOUND"));
    for bad_id in ["42", "", "'; DROP TABLE orders; --"] {
        let response = add_item(&app, &token, bad_id, &product, 1).await;
        assert_eq!(error_code(&response), Some("BAD_USER_INPUT"), "{bad_id:?}: {response}");
        let response = add_item(&app, &token, &order, bad_id, 1).await;
        assert_eq!(error_code(&response), Some("BAD_USER_INPUT"), "{bad_id:?}: {response}");
    }
    let stale = app
        .graphql(
            Some(&token),
            "mutation($o: ID!, $p: ID!) { addItem(orderId: $o, productId: $p, expectedVersion: 1) { id } }",
            json!({ "o": order, "p": product }),
        )
        .await;
    assert_eq!(error_code(&stale), Some("VERSION_CONFLICT"), "{stale}");

    assert_eq!(version_of(&app, &order).await, 2, "only the one good add was written");
    assert_eq!(item_count(&app, &order).await, 1);
    let quantity = app
        .scalar_i64(
            "SELECT quantity::bigint FROM order_items WHERE order_id = $1::uuid",
            vec![order.as_str().into()],
        )
        .await;
    assert_eq!(quantity, 998);
}

#[tokio::test]
async fn item_change_errors() {
    let app = spawn_app().await;
    let token = app.token(app.new_customer().await);
    let order = app.new_order(&token).await;
    let product = app.new_product(100, true).await.to_string();
    let absent = app.new_product(100, true).await.to_string();
    add_item(&app, &token, &order, &product, 1).await;

    let set = |product: String, quantity: i64, expected: Option<i64>| {
        let app = &app;
        let token = &token;
        let order = &order;
        async move {
            app.graphql(
                Some(token),
                "mutation($o: ID!, $p: ID!, $q: Int!, $v: Int) { setItemQuantity(orderId: $o, productId: $p, quantity: $q, expectedVersion: $v) { version } }",
                json!({ "o": order, "p": product, "q": quantity, "v": expected }),
            )
            .await
        }
    };
    assert_eq!(error_code(&set(absent.clone(), 2, None).await), Some("NOT_FOUND"));
    assert_eq!(error_code(&set(product.clone(), 0, None).await), Some("BAD_USER_INPUT"));
    assert_eq!(
        error_code(&set(product.clone(), 1000, None).await),
        Some("BAD_USER_INPUT")
    );
    assert_eq!(
        error_code(&set(product.clone(), 2, Some(1)).await),
        Some("VERSION_CONFLICT")
    );

    let remove = |product: String, expected: Option<i64>| {
        let app = &app;
        let token = &token;
        let order = &order;
        async move {
            app.graphql(
                Some(token),
                "mutation($o: ID!, $p: ID!, $v: Int) { removeItem(orderId: $o, productId: $p, expectedVersion: $v) { version } }",
                json!({ "o": order, "p": product, "v": expected }),
            )
            .await
        }
    };
    assert_eq!(error_code(&remove(absent.clone(), None).await), Some("NOT_FOUND"));
    assert_eq!(
        error_code(&remove(product.clone(), Some(7)).await),
        Some("VERSION_CONFLICT")
    );

    let schedule = app
        .graphql(
            Some(&token),
            "mutation($o: ID!, $w: DeliveryWindowInput!) { scheduleOrder(orderId: $o, window: $w) { status } }",
            json!({ "o": order, "w": future_window(3) }),
        )
        .await;
    assert_eq!(schedule["data"]["scheduleOrder"]["status"], "SCHEDULED");
    let last = remove(product.clone(), None).await;
    assert_eq!(
        error_code(&last),
        Some("INVALID_TRANSITION"),
        "a scheduled order keeps an item: {last}"
    );
    assert_eq!(version_of(&app, &order).await, 3);

    cancel(&app, &token, &order).await;
    assert_eq!(
        error_code(&set(product.clone(), 2, None).await),
        Some("ORDER_CANCELLED")
    );
    assert_eq!(
        error_code(&remove(product.clone(), None).await),
        Some("ORDER_CANCELLED")
    );
    assert_eq!(item_count(&app, &order).await, 1);
}

#[tokio::test]
async fn status_change_errors() {
    let app = spawn_app().await;
    let token = app.token(app.new_customer().await);
    let order = app.new_order(&token).await;
    let product = app.new_product(100, true).await.to_string();
    let schedule = |window: Value, expected: Option<i64>| {
        let app = &app;
        let token = &token;
        let order = &order;
        async move {
            app.graphql(
                Some(token),
                "mutation($o: ID!, $w: DeliveryWindowInput!, $v: Int) { scheduleOrder(orderId: $o, window: $w, expectedVersion: $v) { status version } }",
                json!({ "o": order, "w": window, "v": expected }),
            )
            .await
        }
    };
    let empty = schedule(future_window(5), None).await;
    assert_eq!(error_code(&empty), Some("INVALID_TRANSITION"), "needs an item: {empty}");
    add_item(&app, &token, &order, &product, 1).await;

    let past = schedule(future_window(-5), None).await;
    assert_eq!(error_code(&past), Some("BAD_USER_INPUT"), "{past}");
    let start = chrono::Utc::now() + chrono::Duration::hours(5);
    let backwards = json!({ "start": start.to_rfc3339(), "end": (start - chrono::Duration::hours(1)).to_rfc3339() });
    assert_eq!(error_code(&schedule(backwards, None).await), Some("BAD_USER_INPUT"));
    assert_eq!(
        error_code(&schedule(json!({ "start": "tomorrow", "end": "later" }), None).await),
        Some("BAD_USER_INPUT")
    );
    assert_eq!(
        error_code(&schedule(future_window(5), Some(1)).await),
        Some("VERSION_CONFLICT")
    );

    let reopen = app
        .graphql(
            Some(&token),
            "mutation($o: ID!) { reopenOrder(orderId: $o) { status } }",
            json!({ "o": order }),
        )
        .await;
    assert_eq!(
        error_code(&reopen),
        Some("INVALID_TRANSITION"),
        "an open order cannot reopen: {reopen}"
    );

    let long_reason = "x".repeat(501);
    let too_long = app
        .graphql(
            Some(&token),
            "mutation($o: ID!, $r: String) { cancelOrder(orderId: $o, reason: $r) { status } }",
            json!({ "o": order, "r": long_reason }),
        )
        .await;
    assert_eq!(error_code(&too_long), Some("BAD_USER_INPUT"), "{too_long}");
    let stale = app
        .graphql(
            Some(&token),
            "mutation($o: ID!) { cancelOrder(orderId: $o, expectedVersion: 1) { status } }",
            json!({ "o": order }),
        )
        .await;
    assert_eq!(error_code(&stale), Some("VERSION_CONFLICT"));
    assert_eq!(version_of(&app, &order).await, 2, "no refused change was written");

    cancel(&app, &token, &order).await;
    assert_eq!(error_code(&cancel(&app, &token, &order).await), Some("ORDER_CANCELLED"));
    assert_eq!(
        error_code(&schedule(future_window(5), None).await),
        Some("ORDER_CANCELLED")
    );
    let reopen = app
        .graphql(
            Some(&token),
            "mutation($o: ID!) { reopenOrder(orderId: $o) { status } }",
            json!({ "o": order }),
        )
        .await;
    assert_eq!(error_code(&reopen), Some("ORDER_CANCELLED"));
    assert_eq!(version_of(&app, &order).await, 3);
}

#[tokio::test]
async fn queries_list_and_page_the_callers_data() {
    let app = spawn_app().await;
    let customer = app.new_customer().await;
    let token = app.token(customer);
    let me = app.ok(&token, "{ me { id email displayName } }", json!({})).await;
    assert_eq!(me["me"]["id"], customer.to_string());

    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(app.new_order(&token).await);
    }
    cancel(&app, &token, &created[0]).await;

    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = app
            .ok(
                &token,
                "query($a: String) { orders(first: 2, after: $a) { edges { cursor node { id } } pageInfo { hasNextPage endCursor } } }",
                json!({ "a": after }),
            )
            .await;
        let connection = &page["orders"];
        seen.extend(
            connection["edges"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["node"]["id"].as_str().unwrap().to_owned()),
        );
        if !connection["pageInfo"]["hasNextPage"].as_bool().unwrap() {
            break;
        }
        after = connection["pageInfo"]["endCursor"].as_str().map(str::to_owned);
    }
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);

    let cancelled = app
        .ok(
            &token,
            "{ orders(status: CANCELLED) { edges { node { id status } } } }",
            json!({}),
        )
        .await;
    assert_eq!(cancelled["orders"]["edges"].as_array().unwrap().len(), 1);
    assert_eq!(cancelled["orders"]["edges"][0]["node"]["id"], created[0].as_str());

    let one = app
        .ok(
            &token,
            &format!("query($id: ID!) {{ order(id: $id) {{ {ORDER} }} }}"),
            json!({ "id": created[1] }),
        )
        .await;
    assert_eq!(one["order"]["status"], "OPEN");
    let missing = app
        .ok(
            &token,
            "query($id: ID!) { order(id: $id) { id } }",
            json!({ "id": uuid::Uuid::now_v7() }),
        )
        .await;
    assert!(missing["order"].is_null());

    let products = app
        .graphql(
            None,
            "{ products(first: 3) { edges { node { sku priceCents available } } pageInfo { hasNextPage endCursor } } }",
            json!({}),
        )
        .await;
    assert!(
        products.get("errors").is_none(),
        "the catalogue needs no token: {products}"
    );
    let bad_cursor = app
        .graphql(None, "{ products(after: \"nope\") { edges { cursor } } }", json!({}))
        .await;
    assert_eq!(error_code(&bad_cursor), Some("BAD_USER_INPUT"));
}
