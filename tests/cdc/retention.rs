//! History retention: old versions go, each order's latest stays, and no
//! consumer of the versions topic hears about it.

use std::time::Duration;

use ordercast::db::{HistoryPruner, LockWait, PassOutcome, PRUNE_LOCK_KEY};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use uuid::Uuid;

use crate::common::kafka::{consumer_at_end, read_until, Record};
use crate::common::{database_url, execute, new_customer, new_product, serve_config};

const VERSIONS_TOPIC: &str = "ordercast.public.order_versions";

async fn versions_kept(db: &DatabaseConnection, order: Uuid) -> Vec<i64> {
    db.query_all_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT version FROM order_versions WHERE order_id = $1 ORDER BY version",
        [order.into()],
    ))
    .await
    .unwrap()
    .iter()
    .map(|row| row.try_get_by_index(0).unwrap())
    .collect()
}

/// An order with versions 1..=`versions` (item quantity changes after the first two).
async fn order_with_versions(db: &DatabaseConnection, versions: i64) -> Uuid {
    let customer = new_customer(db).await;
    let product = new_product(db, 100, true).await;
    let order = Uuid::now_v7();
    execute(
        db,
        "INSERT INTO orders (id, customer_id) VALUES ($1, $2)",
        vec![order.into(), customer.into()],
    )
    .await;
    execute(
        db,
        "INSERT INTO order_items (order_id, product_id, quantity) VALUES ($1, $2, 1)",
        vec![order.into(), product.into()],
    )
    .await;
    for quantity in 3..=versions {
        execute(
            db,
            "UPDATE order_items SET quantity = $2 WHERE order_id = $1",
            vec![order.into(), (quantity as i32).into()],
        )
        .await;
    }
    assert_eq!(versions_kept(db, order).await, (1..=versions).collect::<Vec<_>>());
    order
}

/// Moves an order's recorded versions into the past (an UPDATE, which the publication does not send).
async fn age(db: &DatabaseConnection, order: Uuid, hours: i32) {
    execute(
        db,
        "UPDATE order_versions SET committed_at = committed_at - make_interval(hours => $2) WHERE order_id = $1",
        vec![order.into(), hours.into()],
    )
    .await;
}

async fn next_version(db: &DatabaseConnection, order: Uuid) {
    execute(
        db,
        "UPDATE order_items SET quantity = quantity + 1 WHERE order_id = $1",
        vec![order.into()],
    )
    .await;
}

fn pruned(outcome: PassOutcome) -> u64 {
    match outcome {
        PassOutcome::Pruned(report) => report.removed,
        PassOutcome::Busy => panic!("a waiting pass is never busy"),
    }
}

#[tokio::test]
async fn old_versions_are_pruned_the_latest_stays_and_the_topic_hears_nothing() {
    let config = serve_config();
    ordercast::db::migrate(&config.database).await.unwrap();
    let db = ordercast::db::connect(&config.database).await.unwrap();
    let busy = order_with_versions(&db, 5).await;
    let idle = order_with_versions(&db, 3).await;
    let fresh = order_with_versions(&db, 2).await;
    age(&db, busy, 3).await;
    age(&db, idle, 3).await;
    let consumer = consumer_at_end(&[VERSIONS_TOPIC]).await;

    // Batches of two: the pass needs several transactions.
    let mut pruner = HistoryPruner::new(config.database.clone(), 2);
    let wait = LockWait::Wait(Duration::from_secs(60));
    // Other tests prune too (what they remove of ours is gone either way): check what is left.
    pruned(pruner.pass(Duration::from_secs(3600), wait).await.unwrap());
    assert_eq!(
        versions_kept(&db, busy).await,
        [5],
        "the latest version is kept, however old"
    );
    assert_eq!(versions_kept(&db, idle).await, [3]);
    assert_eq!(versions_kept(&db, fresh).await, [1, 2], "younger than the retention");

    // The idle order changes again: its old latest version is superseded, and the next pass
    // of the same pruner (which reads only what changed since) removes it.
    next_version(&db, idle).await;
    next_version(&db, busy).await;
    pruned(pruner.pass(Duration::from_secs(3600), wait).await.unwrap());
    assert_eq!(versions_kept(&db, idle).await, [4]);
    assert_eq!(versions_kept(&db, busy).await, [6]);

    // Consumers of the topic saw the two new versions and nothing about the deletes.
    next_version(&db, fresh).await;
    // Per partition, a delete event would come before the order's new version: once all three
    // new versions are here, anything the prune published is here too.
    let records = read_until(&consumer, Duration::from_secs(60), |records| {
        [(idle, 4), (busy, 6), (fresh, 3)].iter().all(|(order, version)| {
            records.iter().any(|r| {
                r.key["order_id"] == order.to_string()
                    && r.value.as_ref().is_some_and(|v| v["after"]["version"] == *version)
            })
        })
    })
    .await;
    // (Older versions may show up too when Debezium was still behind as the test began.)
    let ours: Vec<&Record> = records
        .iter()
        .filter(|r| [busy, idle, fresh].iter().any(|o| r.key["order_id"] == o.to_string()))
        .collect();
    let not_inserts: Vec<&&Record> = ours
        .iter()
        .filter(|r| r.value.as_ref().is_none_or(|v| v["op"] != "c"))
        .collect();
    assert!(not_inserts.is_empty(), "the prune reached the topic: {not_inserts:#?}");
}

#[tokio::test]
async fn one_instance_prunes_at_a_time() {
    let config = serve_config();
    ordercast::db::migrate(&config.database).await.unwrap();
    let mut options = sea_orm::ConnectOptions::new(database_url());
    options.max_connections(1);
    let holder = sea_orm::Database::connect(options).await.unwrap();
    holder
        .execute_unprepared(&format!("SELECT pg_advisory_lock({PRUNE_LOCK_KEY})"))
        .await
        .unwrap();

    let mut pruner = HistoryPruner::new(config.database.clone(), 100);
    let outcome = pruner.pass(Duration::from_secs(86_400), LockWait::Skip).await.unwrap();
    assert!(matches!(outcome, PassOutcome::Busy), "{outcome:?}");
    let waited = pruner
        .pass(Duration::from_secs(86_400), LockWait::Wait(Duration::from_millis(300)))
        .await;
    assert!(waited.is_err(), "a waiting pass gives up after its lock timeout");

    holder
        .execute_unprepared(&format!("SELECT pg_advisory_unlock({PRUNE_LOCK_KEY})"))
        .await
        .unwrap();
    // Other tests' instances prune the same shared database meanwhile; a pass of theirs may hold
    // the lock (or rows) past one lock timeout on a large development database, so try thrice.
    let mut attempts = Vec::new();
    for _ in 0..3 {
        let outcome = pruner
            .pass(Duration::from_secs(86_400), LockWait::Wait(Duration::from_secs(60)))
            .await;
        if let Ok(PassOutcome::Pruned(_)) = outcome {
            return;
        }
        attempts.push(format!("{outcome:?}"));
    }
    panic!("no pass pruned once the lock was free: {attempts:#?}");
}

#[tokio::test]
async fn the_prune_command_runs_one_pass_and_says_what_it_removed() {
    let db = ordercast::db::connect(&serve_config().database).await.unwrap();
    ordercast::db::migrate(&serve_config().database).await.unwrap();
    let order = order_with_versions(&db, 4).await;
    age(&db, order, 2).await;

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_ordercast"))
        .args(["prune", "--older-than", "90m"])
        .env("DATABASE_URL", database_url())
        .output()
        .await
        .expect("ordercast runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.starts_with("removed ")
            && stdout.contains("older than 1h 30m")
            && stdout.contains("latest version is kept"),
        "{stdout}"
    );
    let removed: Result<u64, _> = stdout.split_whitespace().nth(1).unwrap().parse();
    assert!(removed.is_ok(), "{stdout}");
    assert_eq!(versions_kept(&db, order).await, [4]);

    let refused = tokio::process::Command::new(env!("CARGO_BIN_EXE_ordercast"))
        .args(["prune", "--older-than", "0s"])
        .output()
        .await
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("longer than zero"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}
