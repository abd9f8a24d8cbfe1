//! Failures a retry can fix are `UNAVAILABLE`, never `INTERNAL`, and say whether the write may
//! have been applied: here a real Postgres loses the connection of a mutation before its COMMIT
//! (the backend is terminated), and during it (the network is cut after the COMMIT was sent).

use std::time::Duration;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, Statement, TransactionTrait};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::{error_code, serve_config, spawn_app, spawn_app_with, TestApp};

const SET_QUANTITY: &str =
    "mutation($o: ID!, $p: ID!) { setItemQuantity(orderId: $o, productId: $p, quantity: 5) { version } }";

/// The backend pid of a transaction's connection.
async fn backend_pid(txn: &DatabaseTransaction) -> i32 {
    let row = txn
        .query_one_raw(Statement::from_string(DbBackend::Postgres, "SELECT pg_backend_pid()"))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index(0).unwrap()
}

/// Waits until some backend waits for `blocker`'s locks, then terminates it; returns its query.
async fn terminate_the_backend_blocked_by(app: &TestApp, blocker: i32) -> String {
    for _ in 0..200 {
        let row = app
            .db
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT pid, query FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
                [blocker.into()],
            ))
            .await
            .unwrap();
        if let Some(row) = row {
            let pid: i32 = row.try_get_by_index(0).unwrap();
            let query: String = row.try_get_by_index(1).unwrap();
            app.db
                .execute_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "SELECT pg_terminate_backend($1)",
                    [pid.into()],
                ))
                .await
                .unwrap();
            return query;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no backend ever waited for pid {blocker}");
}

async fn order_with_an_item(app: &TestApp) -> (String, String, String, i64) {
    let customer = app.new_customer().await;
    let token = app.token(customer);
    let order = app.new_order(&token).await;
    let product = app.new_product(300, true).await.to_string();
    let added = app
        .ok(
            &token,
            "mutation($o: ID!, $p: ID!) { addItem(orderId: $o, productId: $p) { version } }",
            json!({ "o": order, "p": product }),
        )
        .await;
    (token, order, product, added["addItem"]["version"].as_i64().unwrap())
}

fn assert_unavailable(response: &Value, may_have_applied: bool) {
    assert_eq!(error_code(response), Some("UNAVAILABLE"), "{response}");
    assert_eq!(
        response["errors"][0]["extensions"]["mayHaveApplied"], may_have_applied,
        "{response}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_lost_before_commit_is_unavailable_and_changed_nothing() {
    let app = spawn_app().await;
    let (token, order, product, version) = order_with_an_item(&app).await;
    // Another session holds the order's row lock, so the mutation waits inside its transaction.
    let holder = app.db.begin().await.unwrap();
    holder
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT 1 FROM orders WHERE id = $1::uuid FOR UPDATE",
            [order.clone().into()],
        ))
        .await
        .unwrap();
    let blocker = backend_pid(&holder).await;
    let mutation = tokio::spawn({
        let (http, url) = (app.http.clone(), format!("{}/graphql", app.base_url));
        let body = json!({ "query": SET_QUANTITY, "variables": { "o": order, "p": product } });
        async move {
            let response = http.post(url).bearer_auth(token).json(&body).send().await.unwrap();
            response.json::<Value>().await.unwrap()
        }
    });
    let query = terminate_the_backend_blocked_by(&app, blocker).await;
    assert!(query.contains("FOR UPDATE"), "it waited for the row lock: {query}");
    let response = mutation.await.unwrap();
    holder.rollback().await.unwrap();
    assert_unavailable(&response, false);
    let message = response["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("nothing was changed"), "{message}");
    let now = app
        .scalar_i64("SELECT version FROM orders WHERE id = $1::uuid", vec![order.into()])
        .await;
    assert_eq!(now, version, "the interrupted transaction wrote nothing");
}

/// A TCP relay in front of the real Postgres that, once armed, forwards the next COMMIT and then
/// cuts the connection before Postgres's answer comes back: the transaction commits, and the
/// client cannot know it.
struct CommitCutter {
    address: std::net::SocketAddr,
    armed: Arc<AtomicBool>,
}

impl CommitCutter {
    async fn start(upstream: String) -> CommitCutter {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let armed = Arc::new(AtomicBool::new(false));
        let relay_armed = armed.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(relay(client, upstream.clone(), relay_armed.clone()));
            }
        });
        CommitCutter { address, armed }
    }
}

async fn relay(client: TcpStream, upstream: String, armed: Arc<AtomicBool>) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let (mut from_client, mut from_server) = (vec![0; 64 * 1024], vec![0; 64 * 1024]);
    loop {
        tokio::select! {
            read = client_read.read(&mut from_client) => {
                let Ok(n @ 1..) = read else { return };
                let chunk = &from_client[..n];
                if server_write.write_all(chunk).await.is_err() {
                    return;
                }
                let is_commit = chunk.windows(6).any(|w| w == b"COMMIT");
                if is_commit && armed.swap(false, Ordering::AcqRel) {
                    // Postgres commits; its answer is dropped with both sockets.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    return;
                }
            }
            read = server_read.read(&mut from_server) => {
                let Ok(n @ 1..) = read else { return };
                if client_write.write_all(&from_server[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_lost_during_commit_is_unavailable_and_may_have_applied() {
    let url = crate::common::database_url();
    let (head, rest) = url.split_once('@').expect("user@host in DATABASE_URL");
    let (host, tail) = rest.split_once('/').expect("host/database in DATABASE_URL");
    let cutter = CommitCutter::start(host.to_owned()).await;
    let mut config = serve_config();
    // The relay reads the protocol to find the COMMIT: no TLS on this connection.
    let separator = if tail.contains('?') { '&' } else { '?' };
    config.database.database_url = format!("{head}@{}/{tail}{separator}sslmode=disable", cutter.address)
        .parse()
        .unwrap();
    let app = spawn_app_with(config).await;
    let (token, order, product, version) = order_with_an_item(&app).await;

    cutter.armed.store(true, Ordering::Release);
    let response = app
        .graphql(Some(&token), SET_QUANTITY, json!({ "o": order, "p": product }))
        .await;
    assert!(!cutter.armed.load(Ordering::Acquire), "the mutation's COMMIT was cut");
    assert_unavailable(&response, true);
    let message = response["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("may have been applied"), "{message}");
    let now = app
        .scalar_i64("SELECT version FROM orders WHERE id = $1::uuid", vec![order.into()])
        .await;
    assert_eq!(now, version + 1, "it was applied indeed: hence `mayHaveApplied`");
}
