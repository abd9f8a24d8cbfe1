//! A change travels end to end while ordercast reaches Kafka only through SASL_SSL and Postgres
//! only with `verify-full`.

use std::time::Duration;

use serde_json::json;

use crate::common::ws::WsClient;
use crate::common::{serve_config, spawn_app_with};
use crate::{sasl_kafka_config, stack_ca, tls_database_url};

const ORDER_UPDATES: &str =
    "subscription($o: ID!) { orderUpdates(orderId: $o) { version change order { items { quantity } } } }";

async fn delivers_a_change_end_to_end(mechanism: &str) {
    let ca = stack_ca();
    let mut config = serve_config();
    config.database.database_url = tls_database_url(&ca).parse().unwrap();
    config.kafka = sasl_kafka_config(mechanism, "ordercast", &ca);
    let app = spawn_app_with(config).await;

    let tls_in_use: bool = app
        .scalar_i64(
            "SELECT count(*) FROM pg_stat_ssl WHERE pid = pg_backend_pid() AND ssl",
            vec![],
        )
        .await
        == 1;
    assert!(tls_in_use, "connections made with this DATABASE_URL use TLS");

    let customer = app.new_customer().await;
    let token = app.token(customer);
    let product = app.new_product(250, true).await;
    let order = app.new_order(&token).await;
    let mut device = WsClient::connect(&app, &token).await.expect("the socket opens");
    device.subscribe("1", ORDER_UPDATES, json!({ "o": order })).await;
    let snapshot = device.next_data("1", Duration::from_secs(10)).await;
    assert_eq!(snapshot["orderUpdates"]["change"], "SNAPSHOT", "{snapshot}");

    app.ok(
        &token,
        "mutation($o: ID!, $p: ID!) { addItem(orderId: $o, productId: $p, quantity: 3) { version } }",
        json!({ "o": order, "p": product.to_string() }),
    )
    .await;
    let update = device.next_data("1", Duration::from_secs(20)).await;
    assert_eq!(update["orderUpdates"]["change"], "ITEM_ADDED", "{update}");
    assert_eq!(update["orderUpdates"]["order"]["items"][0]["quantity"], 3, "{update}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_reaches_a_subscriber_over_sasl_ssl_scram_and_postgres_verify_full() {
    delivers_a_change_end_to_end("SCRAM-SHA-512").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_plain_works_too() {
    delivers_a_change_end_to_end("PLAIN").await;
}
