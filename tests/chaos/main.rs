//! The fault suite (`make chaos`): live updates stay exact, and no acknowledged write is lost,
//! through every fault the stack can have.
//!
//! A writer changes 16 orders at a steady rate through instance A, while every order is watched
//! (one `orderUpdates` each, plus `myOrderUpdates`) on instance W, a separate process. In turn:
//! kill -9 Kafka Connect, kill -9 Kafka, stop Postgres with `-m immediate`, terminate Debezium's
//! replication connection, and kill -9 W (its watchers resume on a new instance with
//! `afterVersion`). `stack/stack.sh up` or a new instance repairs each. The suite prints, per
//! fault, the writes acknowledged and refused by code, acknowledged writes never delivered,
//! contract violations, the time to converge after the repair and the worst staleness; it fails
//! on any lost write, any violation, any `INTERNAL`, or convergence slower than 10 s.
//!
//! It breaks the shared stack, so it is its own test binary and `#[ignore]`d: `make test` skips
//! it, `make chaos` runs it alone.

#[path = "../common/mod.rs"]
mod common;
#[path = "../live/support.rs"]
mod support;

mod instance;
mod ledger;
mod pipeline;
mod storm;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use tokio::sync::watch;
use tokio::time::Instant;

use common::stack::{stack_up, RestartStackOnDrop};
use common::{spawn_app, TestApp};
use instance::Instance;
use ledger::{Ledger, Shared};

const ORDERS: usize = 16;
const WRITES_PER_SECOND: u32 = 25;
/// How long each fault lasts before it is repaired.
const FAULT_HELD: Duration = Duration::from_secs(5);
const CONVERGENCE_LIMIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
enum Fault {
    KillConnect,
    KillKafka,
    CrashPostgres,
    TerminateWalsender,
    KillWatcherInstance,
}

impl Fault {
    const ALL: [Fault; 5] = [
        Fault::KillConnect,
        Fault::KillKafka,
        Fault::CrashPostgres,
        Fault::TerminateWalsender,
        Fault::KillWatcherInstance,
    ];

    fn name(self) -> &'static str {
        match self {
            Fault::KillConnect => "kill -9 Kafka Connect",
            Fault::KillKafka => "kill -9 Kafka",
            Fault::CrashPostgres => "Postgres stop -m immediate",
            Fault::TerminateWalsender => "terminate Debezium's walsender",
            Fault::KillWatcherInstance => "kill -9 the watching instance",
        }
    }

    /// The `stack/stack.sh crash` argument, for faults of the stack.
    fn crash(self) -> Option<&'static str> {
        match self {
            Fault::KillConnect => Some("connect"),
            Fault::KillKafka => Some("kafka"),
            Fault::CrashPostgres => Some("postgres"),
            Fault::TerminateWalsender => Some("walsender"),
            Fault::KillWatcherInstance => None,
        }
    }
}

fn crash(service: &str) {
    let status = std::process::Command::new("stack/stack.sh")
        .args(["crash", service])
        .current_dir(common::stack::repo())
        .status()
        .expect("run stack/stack.sh crash");
    assert!(status.success(), "stack/stack.sh crash {service} failed");
}

/// What one fault did.
struct Report {
    fault: Fault,
    window: (Instant, Instant),
    converged_in: Option<Duration>,
}

/// Current versions of the orders, read straight from Postgres (retrying while it is down).
async fn db_versions(app: &TestApp, orders: &[String]) -> HashMap<String, i64> {
    loop {
        let rows = app
            .db
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT id::text, version FROM orders WHERE id = ANY($1::uuid[])",
                [orders.to_vec().into()],
            ))
            .await;
        match rows {
            Ok(rows) => {
                return rows
                    .iter()
                    .map(|row| (row.try_get_by_index(0).unwrap(), row.try_get_by_index(1).unwrap()))
                    .collect()
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Time until both watchers of every order hold at least what Postgres has now; None after 60 s.
async fn converge(app: &TestApp, orders: &[String], ledger: &Shared) -> Option<Duration> {
    let started = Instant::now();
    let target = db_versions(app, orders).await;
    while started.elapsed() < Duration::from_secs(60) {
        let caught_up = {
            let ledger = ledger.lock().unwrap();
            target.iter().all(|(order, version)| {
                ledger.watched(order) >= *version && ledger.mine.get(order).is_some_and(|v| v >= version)
            })
        };
        if caught_up {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "crashes parts of the shared stack: run alone by `make chaos`"]
async fn no_fault_loses_a_write_or_breaks_the_live_contract() {
    let writer_app = spawn_app().await;
    let mut watcher_instance = Instance::start("watcher-1").await;
    let customer = writer_app.new_customer().await;
    let token = writer_app.token(customer);
    let product = writer_app.new_product(199, true).await.to_string();
    let mut orders = Vec::new();
    let mut lines = Vec::new();
    for _ in 0..ORDERS {
        let (order, _) = support::create_order(&writer_app, &token).await;
        support::add_item(&writer_app, &token, &order, &product, 1).await;
        lines.push((order.clone(), product.clone()));
        orders.push(order);
    }

    let ledger: Shared = Arc::new(std::sync::Mutex::new(Ledger::default()));
    let (target_tx, target_rx) = watch::channel(common::Endpoint::base_url(&watcher_instance).to_owned());
    let watcher = tokio::spawn(ledger::watch(token.clone(), orders.clone(), target_rx, ledger.clone()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let writer = tokio::spawn(ledger::write_steadily(
        writer_app.base_url.clone(),
        token.clone(),
        lines,
        WRITES_PER_SECOND,
        ledger.clone(),
        stop_rx,
    ));
    assert!(
        converge(&writer_app, &orders, &ledger).await.is_some(),
        "the watchers never caught up before any fault"
    );

    let mut guard = RestartStackOnDrop { armed: true };
    let mut reports = Vec::new();
    let mut readiness_failures = Vec::new();
    let mut instances = 1;
    for fault in Fault::ALL {
        let start = Instant::now();
        tokio::time::sleep(Duration::from_secs(2)).await;
        eprintln!("chaos: {}", fault.name());
        match fault.crash() {
            Some(service) => tokio::task::spawn_blocking(move || crash(service)).await.unwrap(),
            None => {
                let dead = std::mem::replace(&mut watcher_instance, Instance::start("watcher-spare").await);
                dead.kill9().await;
            }
        }
        tokio::time::sleep(FAULT_HELD).await;
        if let Fault::KillKafka = fault {
            // A CDC outage must not take the instance out of rotation: Postgres still takes writes.
            let serving = watcher_instance.status("/readyz").await;
            let live = watcher_instance.status("/readyz/cdc").await;
            eprintln!("chaos: while Kafka is down, /readyz {serving:?}, /readyz/cdc {live:?}");
            if (serving, live) != (Some(200), Some(503)) {
                readiness_failures.push(format!(
                    "while Kafka was down: /readyz {serving:?} (want 200), /readyz/cdc {live:?} (want 503)"
                ));
            }
        }
        match fault.crash() {
            Some(_) => assert!(
                tokio::task::spawn_blocking(stack_up).await.unwrap(),
                "stack/stack.sh up repairs {}",
                fault.name()
            ),
            None => {
                instances += 1;
                target_tx.send_replace(common::Endpoint::base_url(&watcher_instance).to_owned());
            }
        }
        let converged_in = converge(&writer_app, &orders, &ledger).await;
        eprintln!("chaos: {} repaired; converged in {converged_in:?}", fault.name());
        tokio::time::sleep(Duration::from_secs(1)).await;
        reports.push(Report {
            fault,
            window: (start, Instant::now()),
            converged_in,
        });
    }
    guard.armed = false;
    stop_tx.send_replace(true);
    writer.await.unwrap();
    let settled = converge(&writer_app, &orders, &ledger).await;
    target_tx.send_replace(String::new());
    let _ = tokio::time::timeout(Duration::from_secs(5), watcher).await;

    let ledger = ledger.lock().unwrap();
    let mut failures = print_table(&ledger, &reports, instances);
    failures.extend(readiness_failures);
    assert!(settled.is_some(), "the watchers did not catch up after the last fault");
    assert!(failures.is_empty(), "the fault suite failed:\n{}", failures.join("\n"));
}

/// Prints the table of the suite and returns what fails it.
fn print_table(ledger: &Ledger, reports: &[Report], instances: usize) -> Vec<String> {
    let mut failures = Vec::new();
    eprintln!();
    eprintln!(
        "| fault | writes acknowledged | writes failed (by code) | acknowledged, not delivered | violations | converged after repair | worst staleness |"
    );
    eprintln!("| --- | --- | --- | --- | --- | --- | --- |");
    for report in reports {
        let (from, to) = report.window;
        let writes: Vec<_> = ledger
            .writes
            .iter()
            .filter(|w| w.started >= from && w.started < to)
            .collect();
        let acknowledged: Vec<_> = writes
            .iter()
            .filter_map(|w| w.outcome.as_ref().ok().map(|v| (*w, *v)))
            .collect();
        let mut failed: BTreeMap<&str, usize> = BTreeMap::new();
        for write in &writes {
            if let Err(code) = &write.outcome {
                *failed.entry(code.as_str()).or_default() += 1;
            }
        }
        let lost: Vec<_> = acknowledged
            .iter()
            .filter(|(w, v)| ledger.reached_at(&w.order, *v).is_none())
            .collect();
        let worst = acknowledged
            .iter()
            .filter_map(|(w, v)| {
                ledger
                    .reached_at(&w.order, *v)
                    .map(|at| at.saturating_duration_since(w.finished))
            })
            .max()
            .unwrap_or_default();
        let violations: Vec<_> = ledger
            .violations
            .iter()
            .filter(|(at, _)| *at >= from && *at < to)
            .collect();
        let converged = match report.converged_in {
            Some(took) => format!("{:.2} s", took.as_secs_f64()),
            None => "never (60 s)".to_owned(),
        };
        let failed_text = if failed.is_empty() {
            "0".to_owned()
        } else {
            failed
                .iter()
                .map(|(code, n)| format!("{n} {code}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        eprintln!(
            "| {} | {} | {} | {} | {} | {} | {:.2} s |",
            report.fault.name(),
            acknowledged.len(),
            failed_text,
            lost.len(),
            violations.len(),
            converged,
            worst.as_secs_f64()
        );
        let name = report.fault.name();
        if !lost.is_empty() {
            failures.push(format!("{name}: {} acknowledged writes never delivered", lost.len()));
        }
        for (_, violation) in &violations {
            failures.push(format!("{name}: {violation}"));
        }
        if let Some(internal) = failed.get("INTERNAL") {
            failures.push(format!("{name}: {internal} writes answered INTERNAL"));
        }
        if report.converged_in.is_none_or(|took| took > CONVERGENCE_LIMIT) {
            failures.push(format!("{name}: converged in {converged}, over {CONVERGENCE_LIMIT:?}"));
        }
    }
    let mut codes: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, code) in &ledger.subscription_errors {
        *codes.entry(code.as_str()).or_default() += 1;
    }
    eprintln!(
        "\n{} writes in all; {} watcher instances; subscriptions ended by the server (then resumed): {codes:?}",
        ledger.writes.len(),
        instances
    );
    if let Some(internal) = codes.get("INTERNAL") {
        failures.push(format!("{internal} subscriptions ended with INTERNAL"));
    }
    failures
}
