//! Recovery of 10,000 subscribers after a Kafka restart, measured: the database work it costs,
//! how long until every subscriber holds what Postgres committed, and what mutations on the same
//! instance see meanwhile. Only correctness is asserted; the numbers are printed (closing notes
//! and ARCHITECTURE.md quote them). `ORDERCAST_CHAOS_BIN` runs another build for comparison.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use crate::common::stack::{stack_up, RestartStackOnDrop};
use crate::common::ws::{Event, WsClient};
use crate::common::{scalar_i64, spawn_app, Endpoint};
use crate::instance::Instance;
use crate::ledger::set_quantity;
use crate::support::{order_updates, Update};

const ORDERS: usize = 1_000;
const SOCKETS: usize = 100;
const SUBSCRIPTIONS_PER_SOCKET: usize = 100;
/// Orders written while Kafka is down: the only ones whose subscribers have anything to catch up.
const MOVED: usize = 50;

/// What the subscribers received, shared by their reader tasks.
#[derive(Default)]
struct Received {
    /// Per subscription (socket, id): the last version it holds.
    held: HashMap<(usize, String), i64>,
    resyncs: usize,
    last_message: Option<Instant>,
}

/// Transactions of the database so far. Busy backends report theirs at most once a second, so a
/// reading taken under load lags by up to a second of traffic (±50 at the mutation rate here).
async fn transactions(db: &sea_orm::DatabaseConnection) -> i64 {
    scalar_i64(
        db,
        "SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database WHERE datname = current_database()",
        vec![],
    )
    .await
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "crashes Kafka of the shared stack: run alone by `make chaos`"]
async fn ten_thousand_subscribers_recover_from_a_kafka_restart_without_a_storm() {
    let setup = spawn_app().await;
    let watched = setup.new_customer().await;
    let token = setup.token(watched);
    let product = setup.new_product(120, true).await;
    crate::support::execute_sql(
        &setup,
        "WITH made AS (INSERT INTO orders (customer_id) SELECT $1 FROM generate_series(1, $2) RETURNING id) \
         INSERT INTO order_items (order_id, product_id, quantity) SELECT id, $3, 1 FROM made",
        vec![watched.into(), (ORDERS as i64).into(), product.into()],
    )
    .await;
    let orders: Vec<String> = {
        use sea_orm::{ConnectionTrait, DbBackend, Statement};
        let rows = setup
            .db
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT id::text FROM orders WHERE customer_id = $1 ORDER BY id",
                [watched.into()],
            ))
            .await
            .unwrap();
        rows.iter().map(|r| r.try_get_by_index(0).unwrap()).collect()
    };
    // Mutations during the recovery go to orders nobody watches, through the recovering instance.
    let other = setup.new_customer().await;
    let other_token = setup.token(other);
    let mut busy_lines = Vec::new();
    for _ in 0..20 {
        let (order, _) = crate::support::create_order(&setup, &other_token).await;
        crate::support::add_item(&setup, &other_token, &order, &product.to_string(), 1).await;
        busy_lines.push(order);
    }

    let instance = Instance::start("storm").await;
    let received = Arc::new(Mutex::new(Received::default()));
    let mut readers = Vec::new();
    let opened = Instant::now();
    for socket in 0..SOCKETS {
        let mut client = WsClient::connect(&instance, &token)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        for n in 0..SUBSCRIPTIONS_PER_SOCKET {
            let order = &orders[(socket * SUBSCRIPTIONS_PER_SOCKET + n) % ORDERS];
            client
                .subscribe(&format!("{n}"), &order_updates(), json!({ "o": order }))
                .await;
        }
        let received = received.clone();
        readers.push(tokio::spawn(async move {
            while let Ok(event) = client.poll_any(Duration::from_secs(1)).await {
                let Some((id, Event::Next(payload))) = event else {
                    continue;
                };
                let update = Update::from_data(&payload["data"]);
                let mut received = received.lock().unwrap();
                received.held.insert((socket, id), update.version);
                received.resyncs += usize::from(update.resync);
                received.last_message = Some(Instant::now());
            }
        }));
    }
    while received.lock().unwrap().held.len() < SOCKETS * SUBSCRIPTIONS_PER_SOCKET {
        assert!(
            opened.elapsed() < Duration::from_secs(300),
            "the snapshots did not all arrive"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "storm: {} subscriptions open in {:?}",
        SOCKETS * SUBSCRIPTIONS_PER_SOCKET,
        opened.elapsed()
    );

    // Steady mutations through the instance, before, during and after the fault.
    let mutations = Arc::new(Mutex::new(Vec::new()));
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let busy = tokio::spawn({
        let (url, token, product, mutations) = (
            format!("{}/graphql", instance.base_url()),
            other_token.clone(),
            product.to_string(),
            mutations.clone(),
        );
        async move {
            let http = reqwest::Client::new();
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            for n in 0.. {
                tokio::select! { _ = tick.tick() => {}, _ = stop_rx.changed() => return }
                let write = set_quantity(
                    http.clone(),
                    url.clone(),
                    token.clone(),
                    busy_lines[n % busy_lines.len()].clone(),
                    product.clone(),
                    1 + n as i64 % 5,
                );
                let mutations = mutations.clone();
                tokio::spawn(async move {
                    let write = write.await;
                    mutations.lock().unwrap().push(write);
                });
            }
        }
    });

    let mut guard = RestartStackOnDrop { armed: true };
    tokio::task::spawn_blocking(|| crate::crash("kafka")).await.unwrap();
    // Postgres still takes writes: these orders move while no change event can flow.
    let http = reqwest::Client::new();
    for order in orders.iter().take(MOVED) {
        let write = set_quantity(
            http.clone(),
            format!("{}/graphql", instance.base_url()),
            token.clone(),
            order.clone(),
            product.to_string(),
            3,
        )
        .await;
        assert!(write.outcome.is_ok(), "{write:?}");
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = transactions(&setup.db).await;
    let mutations_before = mutations.lock().unwrap().len();
    // The recovery starts when the instance consumes again: its CDC readiness turns green.
    let cdc_path = if instance.status("/readyz/cdc").await == Some(404) {
        "/readyz"
    } else {
        "/readyz/cdc"
    };
    assert_ne!(
        instance.status(cdc_path).await,
        Some(200),
        "the instance noticed the outage"
    );
    let up = tokio::task::spawn_blocking(stack_up);
    while instance.status(cdc_path).await != Some(200) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let repaired = Instant::now();

    let targets: HashMap<&str, i64> = orders.iter().take(MOVED).map(|o| (o.as_str(), 2)).collect();
    let caught_up = loop {
        let done = {
            let received = received.lock().unwrap();
            (0..SOCKETS).all(|socket| {
                (0..SUBSCRIPTIONS_PER_SOCKET).all(|n| {
                    let order = orders[(socket * SUBSCRIPTIONS_PER_SOCKET + n) % ORDERS].as_str();
                    let held = received.held.get(&(socket, n.to_string())).copied().unwrap_or(0);
                    held >= targets.get(order).copied().unwrap_or(1)
                })
            })
        };
        if done {
            break repaired.elapsed();
        }
        assert!(
            repaired.elapsed() < Duration::from_secs(120),
            "subscribers did not catch up within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // Let whatever the recovery still sends arrive (a reload storm would keep going).
    loop {
        let quiet_for = received
            .lock()
            .unwrap()
            .last_message
            .map_or(Duration::MAX, |at| at.elapsed());
        if quiet_for > Duration::from_secs(2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let last_message = received
        .lock()
        .unwrap()
        .last_message
        .unwrap()
        .saturating_duration_since(repaired);
    assert!(up.await.unwrap(), "stack/stack.sh up brings Kafka back");
    guard.armed = false;
    stop_tx.send_replace(true);
    busy.await.unwrap();
    // Backends report their counters to `pg_stat_database` when idle for a while (up to 10 s).
    tokio::time::sleep(Duration::from_secs(11)).await;
    let after = transactions(&setup.db).await;
    let mutations = mutations.lock().unwrap();
    // From just before the instance consumed again to a second after the recovery's last message.
    let window = (
        repaired - Duration::from_millis(500),
        repaired + caught_up.max(last_message) + Duration::from_secs(1),
    );
    let during: Vec<Duration> = {
        let mut during: Vec<Duration> = mutations[mutations_before..]
            .iter()
            .filter(|w| w.started >= window.0 && w.started <= window.1)
            .map(|w| w.finished - w.started)
            .collect();
        during.sort();
        during
    };
    let failed = mutations.iter().filter(|w| w.outcome.is_err()).count();
    let mutations_in_window = mutations.len() - mutations_before;
    eprintln!(
        "storm: after the Kafka restart: every subscriber caught up in {:.2} s, the last recovery message came at {:.2} s; \
         {} resync messages; {} database transactions (±50) besides the {} mutations; mutations in the {:.1} s around the recovery: {} (p50 {:?}, p99 {:?}, max {:?}); {failed} mutations failed",
        caught_up.as_secs_f64(),
        last_message.as_secs_f64(),
        received.lock().unwrap().resyncs,
        after - before - mutations_in_window as i64,
        mutations_in_window,
        (window.1 - window.0).as_secs_f64(),
        during.len(),
        percentile(&during, 0.5),
        percentile(&during, 0.99),
        during.last().copied().unwrap_or_default(),
    );
    assert_eq!(failed, 0, "no mutation failed during the recovery");
    for reader in readers {
        reader.abort();
    }
}
