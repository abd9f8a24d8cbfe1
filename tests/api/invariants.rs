//! The invariants hold for writers that bypass ordercast: raw SQL against Postgres.

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement, TransactionTrait};
use serde_json::json;
use uuid::Uuid;

use crate::common::{new_customer, new_product, scalar_i64, spawn_app};
use crate::orders::{add_item, cancel, version_of};

async fn exec(db: &impl ConnectionTrait, sql: &str, values: Vec<sea_orm::Value>) -> Result<u64, DbErr> {
    db.execute_raw(Statement::from_sql_and_values(DbBackend::Postgres, sql, values))
        .await
        .map(|r| r.rows_affected())
}

fn constraint_of(result: Result<u64, DbErr>) -> String {
    let err = result.expect_err("the database must refuse this write");
    ordercast::db::violation(&err)
        .and_then(|v| v.constraint)
        .unwrap_or_else(|| format!("no constraint: {err}"))
}

async fn raw_order(db: &DatabaseConnection) -> (Uuid, Uuid) {
    let customer = new_customer(db).await;
    let order = Uuid::now_v7();
    exec(
        db,
        "INSERT INTO orders (id, customer_id) VALUES ($1, $2)",
        vec![order.into(), customer.into()],
    )
    .await
    .unwrap();
    (order, customer)
}

#[tokio::test]
async fn i2_no_item_of_a_cancelled_order_can_be_inserted_changed_or_deleted() {
    let app = spawn_app().await;
    let db = &app.db;
    let (order, _) = raw_order(db).await;
    let kept = new_product(db, 250, true).await;
    let other = new_product(db, 100, true).await;
    exec(
        db,
        "INSERT INTO order_items (order_id, product_id, quantity) VALUES ($1, $2, 2)",
        vec![order.into(), kept.into()],
    )
    .await
    .unwrap();
    exec(
        db,
        "UPDATE orders SET status = 'cancelled' WHERE id = $1",
        vec![order.into()],
    )
    .await
    .unwrap();
    let status = scalar_i64(
        db,
        "SELECT count(*) FROM order_items WHERE order_id = $1 AND order_status = 'cancelled'",
        vec![order.into()],
    )
    .await;
    assert_eq!(status, 1, "the cancel cascades to the item's copy of the status");

    let insert = exec(
        db,
        "INSERT INTO order_items (order_id, product_id, quantity, order_status) VALUES ($1, $2, 1, 'open')",
        vec![order.into(), other.into()],
    )
    .await;
    assert_eq!(constraint_of(insert), "order_items_order_not_cancelled");
    let update = exec(
        db,
        "UPDATE order_items SET quantity = 5 WHERE order_id = $1",
        vec![order.into()],
    )
    .await;
    assert_eq!(constraint_of(update), "order_items_order_not_cancelled");
    let sneak = exec(
        db,
        "UPDATE order_items SET order_status = 'open' WHERE order_id = $1",
        vec![order.into()],
    )
    .await;
    assert_eq!(constraint_of(sneak), "order_items_order_not_cancelled");
    let delete = exec(db, "DELETE FROM order_items WHERE order_id = $1", vec![order.into()]).await;
    assert_eq!(constraint_of(delete), "order_items_order_not_cancelled");
    let reopen = exec(
        db,
        "UPDATE orders SET status = 'open' WHERE id = $1",
        vec![order.into()],
    )
    .await;
    assert_eq!(constraint_of(reopen), "orders_cancelled_is_final");

    let quantity = scalar_i64(
        db,
        "SELECT sum(quantity)::bigint FROM order_items WHERE order_id = $1",
        vec![order.into()],
    )
    .await;
    assert_eq!(quantity, 2, "the cancelled order's items are exactly as they were");
}

#[tokio::test]
async fn i1_and_i5_references_and_bounds() {
    let app = spawn_app().await;
    let db = &app.db;
    let (order, _) = raw_order(db).await;
    let product = new_product(db, 100, true).await;
    let nowhere = Uuid::now_v7();
    let no_order = exec(
        db,
        "INSERT INTO order_items (order_id, product_id, quantity) VALUES ($1, $2, 1)",
        vec![nowhere.into(), product.into()],
    )
    .await;
    assert_eq!(constraint_of(no_order), "order_items_order_fkey");
    let no_product = exec(
        db,
        "INSERT INTO order_items (order_id, product_id, quantity) VALUES ($1, $2, 1)",
        vec![order.into(), nowhere.into()],
    )
    .await;
    assert_eq!(constraint_of(no_product), "order_items_product_id_fkey");
    for quantity in [0, -1, 1000] {
        let bad = exec(
            db,
            "INSERT INTO order_items (order_id, product_id, quantity) VALUES ($1, $2, $3)",
            vec![order.into(), product.into(), quantity.into()],
        )
        .await;
        assert_eq!(constraint_of(bad), "order_items_quantity_range", "quantity {quantity}");
    }
    let negative_price = exec(
        db,
        "INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents) VALUES ($1, $2, 1, -5)",
        vec![order.into(), product.into()],
    )
    .await;
    assert_eq!(constraint_of(negative_price), "order_items_unit_price_non_negative");
    let negative_product = exec(
        db,
        "UPDATE products SET price_cents = -1 WHERE id = $1",
        vec![product.into()],
    )
    .await;
    assert_eq!(constraint_of(negative_product), "products_price_non_negative");
    let no_customer = exec(db, "INSERT INTO orders (customer_id) VALUES ($1)", vec![nowhere.into()]).await;
    assert_eq!(constraint_of(no_customer), "orders_customer_id_fkey");
}

#[tokio::test]
async fn i3_status_moves_only_along_allowed_transitions() {
    let app = spawn_app().await;
    let db = &app.db;
    let customer = new_customer(db).await;
    let born_scheduled = exec(
        db,
        "INSERT INTO orders (customer_id, status) VALUES ($1, 'scheduled')",
        vec![customer.into()],
    )
    .await;
    assert_eq!(constraint_of(born_scheduled), "orders_created_open");

    let (order, _) = raw_order(db).await;
    let schedule = "UPDATE orders SET status = 'scheduled', delivery_window_start = now() + interval '1 day', \
                    delivery_window_end = now() + interval '1 day 2 hours' WHERE id = $1";
    assert_eq!(
        constraint_of(exec(db, schedule, vec![order.into()]).await),
        "orders_schedule_needs_items"
    );
    let product = new_product(db, 100, true).await;
    exec(
        db,
        "INSERT INTO order_items (order_id, product_id, quantity) VALUES ($1, $2, 1)",
        vec![order.into(), product.into()],
    )
    .await
    .unwrap();
    let no_window = exec(
        db,
        "UPDATE orders SET status = 'scheduled' WHERE id = $1",
        vec![order.into()],
    )
    .await;
    assert_eq!(constraint_of(no_window), "orders_scheduled_has_window");
    let past = exec(db, "UPDATE orders SET status = 'scheduled', delivery_window_start = now() - interval '1 hour', delivery_window_end = now() + interval '1 hour' WHERE id = $1", vec![order.into()]).await;
    assert_eq!(constraint_of(past), "orders_window_in_future");
    exec(db, schedule, vec![order.into()]).await.unwrap();
    let status_scheduled = scalar_i64(
        db,
        "SELECT count(*) FROM order_items WHERE order_id = $1 AND order_status = 'scheduled'",
        vec![order.into()],
    )
    .await;
    assert_eq!(status_scheduled, 1);
    let bogus = exec(
        db,
        "UPDATE orders SET status = 'delivered' WHERE id = $1",
        vec![order.into()],
    )
    .await;
    assert_eq!(constraint_of(bogus), "orders_status_transition");
    exec(
        db,
        "UPDATE orders SET status = 'open', delivery_window_start = NULL, delivery_window_end = NULL WHERE id = $1",
        vec![order.into()],
    )
    .await
    .unwrap();
    exec(
        db,
        "UPDATE orders SET status = 'cancelled' WHERE id = $1",
        vec![order.into()],
    )
    .await
    .unwrap();
    let back = exec(db, schedule, vec![order.into()]).await;
    assert_eq!(constraint_of(back), "orders_cancelled_is_final");
}

#[tokio::test]
async fn i4_version_grows_by_one_per_committed_transaction() {
    let app = spawn_app().await;
    let db = &app.db;
    let (order, _) = raw_order(db).await;
    let version = |db: &DatabaseConnection| {
        let db = db.clone();
        async move { scalar_i64(&db, "SELECT version FROM orders WHERE id = $1", vec![order.into()]).await }
    };
    assert_eq!(version(db).await, 1);
    let forged = exec(db, "UPDATE orders SET version = 100 WHERE id = $1", vec![order.into()])
        .await
        .unwrap();
    assert_eq!(forged, 1);
    assert_eq!(
        version(db).await,
        2,
        "writers cannot set the version; any change counts once"
    );

    let a = new_product(db, 100, true).await;
    let b = new_product(db, 100, true).await;
    let txn = db.begin().await.unwrap();
    exec(
        &txn,
        "INSERT INTO order_items (order_id, product_id, quantity) VALUES ($1, $2, 1)",
        vec![order.into(), a.into()],
    )
    .await
    .unwrap();
    exec(
        &txn,
        "INSERT INTO order_items (order_id, product_id, quantity) VALUES ($1, $2, 1)",
        vec![order.into(), b.into()],
    )
    .await
    .unwrap();
    exec(
        &txn,
        "UPDATE order_items SET quantity = 3 WHERE order_id = $1",
        vec![order.into()],
    )
    .await
    .unwrap();
    txn.commit().await.unwrap();
    assert_eq!(
        version(db).await,
        3,
        "one transaction, one version, however many rows it touched"
    );

    let txn = db.begin().await.unwrap();
    exec(
        &txn,
        "DELETE FROM order_items WHERE order_id = $1 AND product_id = $2",
        vec![order.into(), a.into()],
    )
    .await
    .unwrap();
    txn.rollback().await.unwrap();
    assert_eq!(version(db).await, 3, "a rolled-back change does not count");

    exec(
        db,
        "UPDATE order_items SET quantity = 4 WHERE order_id = $1 AND product_id = $2",
        vec![order.into(), b.into()],
    )
    .await
    .unwrap();
    exec(
        db,
        "DELETE FROM order_items WHERE order_id = $1 AND product_id = $2",
        vec![order.into(), a.into()],
    )
    .await
    .unwrap();
    assert_eq!(version(db).await, 5, "item changes count too");
}

#[tokio::test]
async fn i4_through_the_api_a_stale_expected_version_writes_nothing() {
    let app = spawn_app().await;
    let token = app.token(app.new_customer().await);
    let order = app.new_order(&token).await;
    let product = app.new_product(100, true).await.to_string();
    for expected_version in 1..=4 {
        let response = app
            .graphql(
                Some(&token),
                "mutation($o: ID!, $p: ID!, $v: Int) { addItem(orderId: $o, productId: $p, expectedVersion: $v) { version } }",
                json!({ "o": order, "p": product, "v": expected_version }),
            )
            .await;
        assert_eq!(
            response["data"]["addItem"]["version"],
            expected_version + 1,
            "{response}"
        );
    }
    let stale = app
        .graphql(
            Some(&token),
            "mutation($o: ID!, $p: ID!) { setItemQuantity(orderId: $o, productId: $p, quantity: 9, expectedVersion: 4) { version } }",
            json!({ "o": order, "p": product }),
        )
        .await;
    assert_eq!(stale["errors"][0]["extensions"]["code"], "VERSION_CONFLICT", "{stale}");
    assert!(stale["errors"][0]["message"].as_str().unwrap().contains("version 5"));
    assert_eq!(version_of(&app, &order).await, 5);
    let quantity = app
        .scalar_i64(
            "SELECT quantity::bigint FROM order_items WHERE order_id = $1::uuid",
            vec![order.as_str().into()],
        )
        .await;
    assert_eq!(quantity, 4);

    let cancelled = cancel(&app, &token, &order).await;
    assert_eq!(cancelled["data"]["cancelOrder"]["version"], 6);
    let refused = add_item(&app, &token, &order, &product, 1).await;
    assert_eq!(refused["errors"][0]["extensions"]["code"], "ORDER_CANCELLED");
}
