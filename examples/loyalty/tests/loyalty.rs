//! The loyalty service against the real stack: orders written straight to
//! Postgres (events come from its trigger, whatever the writer), published by
//! Debezium on `ordercast.order-events`, consumed by `loyalty` processes. Each
//! test has its own consumer group, its own tables (a schema) and its own
//! customers, so the tests run in parallel. Needs `make stack` and ordercast's
//! migrations (`make test` runs them first).

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sqlx::PgPool;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use uuid::Uuid;

const TOPIC: &str = "ordercast.order-events";

fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://ordercast:ordercast@127.0.0.1:55432/ordercast".to_owned())
}

fn kafka_brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:19092".to_owned())
}

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", Uuid::now_v7().simple())
}

/// One `loyalty` process; its log lines are kept for assertions.
struct Loyalty {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Loyalty {
    async fn start(group: &str, schema: &str, extra: &[&str]) -> Loyalty {
        let mut child = Command::new(env!("CARGO_BIN_EXE_loyalty"))
            .args(["--group", group, "--schema", schema])
            .args(extra)
            .env("LOYALTY_DATABASE_URL", database_url())
            .env("KAFKA_BROKERS", kafka_brokers())
            .env("RUST_LOG", "info,sqlx=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the loyalty binary starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mut reader = BufReader::new(child.stderr.take().unwrap()).lines();
        let kept = lines.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = reader.next_line().await {
                kept.lock().unwrap().push(line);
            }
        });
        let loyalty = Loyalty { child, lines };
        loyalty
            .wait_for_log("assigned partitions", Duration::from_secs(60))
            .await;
        loyalty
    }

    async fn wait_for_log(&self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(line) = self.lines.lock().unwrap().iter().find(|l| l.contains(needle)) {
                return line.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in the loyalty log within {limit:?}: {:#?}",
                self.lines.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The partitions of the latest assignment, from the log (`assigned=[0, 2]`).
    fn assignment(&self) -> Vec<i32> {
        let lines = self.lines.lock().unwrap();
        let latest = lines
            .iter()
            .rev()
            .find(|l| l.contains("assigned partitions"))
            .expect("an assignment was logged");
        let list = latest
            .split("assigned=[")
            .nth(1)
            .and_then(|rest| rest.split(']').next())
            .unwrap_or_default();
        list.split(',').filter_map(|p| p.trim().parse().ok()).collect()
    }

    /// SIGKILL: no shutdown, no final offset commit.
    async fn kill_9(mut self) {
        self.child.kill().await.unwrap();
    }

    /// SIGTERM: commits and leaves the group, as a deployment stops it.
    async fn stop(mut self) {
        let pid = self.child.id().expect("running").to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().await.unwrap();
        assert!(sent.success());
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("loyalty stops within 30 s of SIGTERM")
            .unwrap();
        assert!(status.success(), "a stopped loyalty exits 0: {status}");
    }
}

/// Customers, a product, and orders written with plain SQL.
struct Shop {
    db: PgPool,
    customers: Vec<Uuid>,
    product: Uuid,
}

impl Shop {
    async fn open(customers: usize) -> Shop {
        let database = ordercast::config::DatabaseConfig {
            database_url: database_url().parse().unwrap(),
            db_max_connections: 2,
        };
        ordercast::db::migrate(&database)
            .await
            .expect("ordercast's schema is in place");
        ensure_topic().await;
        let db = PgPool::connect(&database_url()).await.unwrap();
        let mut ids = Vec::new();
        for _ in 0..customers {
            let id = Uuid::now_v7();
            sqlx::query("INSERT INTO customers (id, email, display_name) VALUES ($1, $2, 'Loyal')")
                .bind(id)
                .bind(format!("{}@loyalty.example", unique("c")))
                .execute(&db)
                .await
                .unwrap();
            ids.push(id);
        }
        let product = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO products (id, sku, name, price_cents, available) VALUES ($1, $2, 'Loyalty tea', 1234, true)",
        )
        .bind(product)
        .bind(unique("TEA"))
        .execute(&db)
        .await
        .unwrap();
        Shop {
            db,
            customers: ids,
            product,
        }
    }

    /// Order `n` of a burst: created with `n % 4 + 1` items' worth, scheduled; every third
    /// is then cancelled, every fifth reopened.
    async fn order(&self, n: usize) {
        let customer = self.customers[n % self.customers.len()];
        let order: Uuid = sqlx::query_scalar("INSERT INTO orders (customer_id) VALUES ($1) RETURNING id")
            .bind(customer)
            .fetch_one(&self.db)
            .await
            .unwrap();
        sqlx::query("INSERT INTO order_items (order_id, product_id, quantity) VALUES ($1, $2, $3)")
            .bind(order)
            .bind(self.product)
            .bind((n % 4 + 1) as i32)
            .execute(&self.db)
            .await
            .unwrap();
        sqlx::query(
            "UPDATE orders SET status = 'scheduled', delivery_window_start = now() + interval '1 day',
                    delivery_window_end = now() + interval '1 day 2 hours' WHERE id = $1",
        )
        .bind(order)
        .execute(&self.db)
        .await
        .unwrap();
        if n % 3 == 0 {
            sqlx::query("UPDATE orders SET status = 'cancelled', cancel_reason = 'changed my mind' WHERE id = $1")
                .bind(order)
                .execute(&self.db)
                .await
                .unwrap();
        } else if n % 5 == 0 {
            sqlx::query("UPDATE orders SET status = 'open', delivery_window_start = NULL, delivery_window_end = NULL WHERE id = $1")
                .bind(order)
                .execute(&self.db)
                .await
                .unwrap();
        }
    }

    /// What every customer should hold: 1 point per 100 cents of each scheduled order, from Postgres.
    async fn expected_points(&self) -> BTreeMap<Uuid, i64> {
        let rows: Vec<(Uuid, i64)> = sqlx::query_as(
            "SELECT o.customer_id, COALESCE(sum(t.total::bigint / 100), 0)::bigint
               FROM orders o
               CROSS JOIN LATERAL (SELECT COALESCE(sum(i.quantity * i.unit_price_cents), 0) AS total
                                     FROM order_items i WHERE i.order_id = o.id) t
              WHERE o.customer_id = ANY($1) AND o.status = 'scheduled'
              GROUP BY o.customer_id",
        )
        .bind(&self.customers)
        .fetch_all(&self.db)
        .await
        .unwrap();
        self.customers
            .iter()
            .map(|c| (*c, rows.iter().find(|(id, _)| id == c).map_or(0, |(_, p)| *p)))
            .collect()
    }

    async fn points(&self, schema: &str) -> BTreeMap<Uuid, i64> {
        let sql = format!("SELECT customer_id, points FROM {schema}.accounts WHERE customer_id = ANY($1)");
        let rows: Vec<(Uuid, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(&self.customers)
            .fetch_all(&self.db)
            .await
            .unwrap_or_default();
        self.customers
            .iter()
            .map(|c| (*c, rows.iter().find(|(id, _)| id == c).map_or(0, |(_, p)| *p)))
            .collect()
    }

    /// Waits until the service's balances equal Postgres's truth.
    async fn converge(&self, schema: &str, limit: Duration) -> BTreeMap<Uuid, i64> {
        let expected = self.expected_points().await;
        assert!(expected.values().any(|p| *p > 0), "the burst schedules some orders");
        let deadline = Instant::now() + limit;
        loop {
            let points = self.points(schema).await;
            if points == expected {
                return points;
            }
            assert!(
                Instant::now() < deadline,
                "points never matched: expected {expected:?}, have {points:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// Creates the events topic as Debezium would (3 partitions, the stack's default) if no event
/// has created it yet, so that replicas have partitions to share from the start.
async fn ensure_topic() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .create()
        .unwrap();
    let topic = NewTopic::new(TOPIC, 3, TopicReplication::Fixed(1));
    // "already exists" is the usual answer; anything else shows up as a test that never converges.
    let _ = admin.create_topics([&topic], &AdminOptions::new()).await;
}

/// A client of `group` that only reads offsets and commits them; it never joins the group.
fn group_client(group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .set("group.id", group)
        .create()
        .unwrap()
}

/// The end (high watermark) of every partition of the topic.
fn topic_ends(consumer: &BaseConsumer) -> BTreeMap<i32, i64> {
    let metadata = consumer.fetch_metadata(Some(TOPIC), Duration::from_secs(10)).unwrap();
    metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions())
        .map(|partition| {
            let (_, high) = consumer
                .fetch_watermarks(TOPIC, partition.id(), Duration::from_secs(10))
                .unwrap();
            (partition.id(), high)
        })
        .collect()
}

/// Commits a new group's offsets at the topic's current end, so the service reads only what
/// is published from now on: a topic that earlier runs (or `make bench`) filled would otherwise
/// be read from its oldest event first, and the test would wait for all of it.
async fn start_at_the_end(group: &str) {
    let consumer = group_client(group);
    let mut ends = TopicPartitionList::new();
    for (partition, high) in topic_ends(&consumer) {
        ends.add_partition_offset(TOPIC, partition, Offset::Offset(high))
            .unwrap();
    }
    consumer.commit(&ends, CommitMode::Sync).unwrap();
}

/// Waits until `group` has committed offsets at the end of every partition of the topic.
async fn wait_until_caught_up(group: &str, limit: Duration) {
    let consumer = group_client(group);
    let deadline = Instant::now() + limit;
    loop {
        let ends = topic_ends(&consumer);
        let mut wanted = TopicPartitionList::new();
        for &partition in ends.keys() {
            wanted.add_partition(TOPIC, partition);
        }
        let committed = consumer.committed_offsets(wanted, Duration::from_secs(10)).unwrap();
        let behind: Vec<_> = committed
            .elements()
            .iter()
            .filter(|e| match e.offset() {
                Offset::Offset(at) => at < ends[&e.partition()],
                _ => ends[&e.partition()] > 0,
            })
            .map(|e| e.partition())
            .collect();
        if behind.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "group {group} still behind on partitions {behind:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_burst_and_restarted_it_still_awards_each_event_once() {
    let (group, schema) = (unique("loyalty_test"), unique("loyalty_test"));
    let shop = Shop::open(5).await;
    start_at_the_end(&group).await;
    let first = Loyalty::start(&group, &schema, &[]).await;
    for n in 0..20 {
        shop.order(n).await;
    }
    first.kill_9().await;
    for n in 20..40 {
        shop.order(n).await;
    }
    let _second = Loyalty::start(&group, &schema, &[]).await;
    shop.converge(&schema, Duration::from_secs(120)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_split_the_partitions_and_a_replay_changes_nothing() {
    let (group, schema) = (unique("loyalty_test"), unique("loyalty_test"));
    let shop = Shop::open(6).await;
    let started = chrono::Utc::now();
    start_at_the_end(&group).await;
    let one = Loyalty::start(&group, &schema, &[]).await;
    let two = Loyalty::start(&group, &schema, &[]).await;
    for n in 0..30 {
        shop.order(n).await;
    }
    let points = shop.converge(&schema, Duration::from_secs(120)).await;
    wait_until_caught_up(&group, Duration::from_secs(120)).await;
    // The second member's join rebalanced the group: each replica owns a share, none the same.
    let (mine, theirs) = (one.assignment(), two.assignment());
    assert!(
        !mine.is_empty() && !theirs.is_empty(),
        "both replicas consume: {mine:?} {theirs:?}"
    );
    assert!(
        mine.iter().all(|p| !theirs.contains(p)),
        "no partition twice: {mine:?} {theirs:?}"
    );
    one.stop().await;
    two.stop().await;

    // Everything since the test began, this test's events among them, is read again.
    let since = started.to_rfc3339();
    let replay = Loyalty::start(&group, &schema, &["--replay-since", &since]).await;
    replay.wait_for_log("rewound the group", Duration::from_secs(5)).await;
    wait_until_caught_up(&group, Duration::from_secs(180)).await;
    assert_eq!(shop.points(&schema).await, points, "a replay applies nothing twice");
}
