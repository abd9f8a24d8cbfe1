//! History retention: `order_versions` keeps the versions younger than the
//! retention and always each order's latest one, which is all that resumes
//! and gap repairs read. A resume from before the retained history gets a
//! resync snapshot.
//!
//! A pass deletes in small transactions (one batch each), so it never holds
//! many row locks, never blocks a writer (nothing else locks version rows),
//! and can stop between any two batches. One instance at a time prunes: a
//! pass holds a session advisory lock on its own connection. Deletes never
//! reach a consumer of the versions topic: the publication sends inserts only.
//!
//! A pass reads what aged out since the previous pass of this process, plus
//! the older versions of orders that changed since then (a version that was
//! the latest when it aged out is removed once a newer one exists). The first
//! pass of a process, and `ordercast prune`, read all of the old history.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, Statement, TransactionTrait};
use uuid::Uuid;

use crate::config::{DatabaseConfig, HistoryConfig};
use crate::telemetry::metric;

/// Key of the session advisory lock held by the instance that prunes (visible in `pg_locks`).
pub const PRUNE_LOCK_KEY: i64 = 0x6f72_6465_7270_7275; // "orderpru"
/// Upper bound of one batch's statement: a batch that takes longer is rolled back, not left holding locks.
const BATCH_STATEMENT_TIMEOUT: &str = "10s";
/// Versions committed this long before a pass started still count as "new" for the next
/// pass: a version's `committed_at` is taken just before its transaction commits.
const COMMIT_SLACK: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

/// Whether a pass waits for another instance's pass to end.
#[derive(Debug, Clone, Copy)]
pub enum LockWait {
    /// Background passes: skip this pass when another instance is pruning.
    Skip,
    /// `ordercast prune`: wait up to this long, then fail.
    Wait(Duration),
}

/// What one pass did.
#[derive(Debug, Clone)]
pub struct PruneReport {
    /// Versions deleted.
    pub removed: u64,
    /// Transactions the pass ran.
    pub batches: u32,
    /// Versions committed before this instant were candidates (per the database's clock).
    pub cutoff: DateTime<Utc>,
    pub elapsed: Duration,
}

/// The result of a pass.
#[derive(Debug)]
pub enum PassOutcome {
    Pruned(PruneReport),
    /// Another instance holds the prune lock; nothing was done.
    Busy,
}

/// Where the previous complete pass of this process ended.
#[derive(Debug, Clone, Copy)]
struct Watermark {
    /// Everything older than this was read by a pass.
    cutoff: DateTime<Utc>,
    /// Versions committed since then may have superseded old ones.
    started: DateTime<Utc>,
}

/// Runs prune passes; remembers where the last one ended so that the next
/// reads only what changed since.
pub struct HistoryPruner {
    database: DatabaseConfig,
    batch: u32,
    pause_between_batches: Duration,
    watermark: Option<Watermark>,
}

impl HistoryPruner {
    pub fn new(database: DatabaseConfig, batch: u32) -> Self {
        Self {
            database,
            batch: batch.max(1),
            pause_between_batches: Duration::ZERO,
            watermark: None,
        }
    }

    /// Background pruners leave room to the request path between batches.
    pub fn with_pause(mut self, pause: Duration) -> Self {
        self.pause_between_batches = pause;
        self
    }

    /// Deletes every version committed more than `older_than` ago that is not
    /// its order's latest.
    pub async fn pass(&mut self, older_than: Duration, lock: LockWait) -> Result<PassOutcome, DbErr> {
        let started_at = Instant::now();
        let connection = super::single_connection(&self.database).await?;
        let outcome = self.locked_pass(&connection, older_than, lock, started_at).await;
        connection.close().await.ok();
        outcome
    }

    async fn locked_pass(
        &mut self,
        connection: &DatabaseConnection,
        older_than: Duration,
        lock: LockWait,
        started_at: Instant,
    ) -> Result<PassOutcome, DbErr> {
        if !acquire(connection, lock).await? {
            return Ok(PassOutcome::Busy);
        }
        let result = self.delete_batches(connection, older_than).await;
        connection
            .execute_unprepared(&format!("SELECT pg_advisory_unlock({PRUNE_LOCK_KEY})"))
            .await?;
        let (removed, batches, cutoff) = result?;
        Ok(PassOutcome::Pruned(PruneReport {
            removed,
            batches,
            cutoff,
            elapsed: started_at.elapsed(),
        }))
    }

    async fn delete_batches(
        &mut self,
        connection: &DatabaseConnection,
        older_than: Duration,
    ) -> Result<(u64, u32, DateTime<Utc>), DbErr> {
        let now = database_now(connection).await?;
        let age = chrono::TimeDelta::from_std(older_than).unwrap_or(chrono::TimeDelta::MAX);
        let cutoff = now.checked_sub_signed(age).unwrap_or(DateTime::UNIX_EPOCH);
        let previous = self.watermark;
        let mut removed = 0;
        let mut batches = 0;

        // 1. Versions that aged out since the previous pass (all of them on a first pass).
        let from = previous.map_or(DateTime::UNIX_EPOCH, |w| w.cutoff.min(cutoff));
        let mut cursor = (from, Uuid::nil(), -1_i64);
        loop {
            let batch = self
                .run_batch(connection, aged_out_batch(cursor, cutoff, self.batch))
                .await?;
            batches += 1;
            removed += batch.removed;
            match batch.last {
                Some(last) if batch.scanned == u64::from(self.batch) => cursor = last,
                _ => break,
            }
            self.pause().await;
        }

        // 2. Older versions of orders that changed since the previous pass.
        if let Some(previous) = previous {
            let since = previous.started - COMMIT_SLACK;
            let mut after_order = Uuid::nil();
            loop {
                let sql = superseded_batch(since, after_order, cutoff, self.batch);
                let batch = self.run_batch(connection, sql).await?;
                batches += 1;
                removed += batch.removed;
                match batch.last {
                    Some((_, order, _)) if batch.scanned == u64::from(self.batch) => after_order = order,
                    _ => break,
                }
                self.pause().await;
            }
        }

        self.watermark = Some(Watermark { cutoff, started: now });
        metrics::counter!(metric::HISTORY_PRUNED_VERSIONS).increment(removed);
        Ok((removed, batches, cutoff))
    }

    async fn run_batch(&self, connection: &DatabaseConnection, statement: Statement) -> Result<Batch, DbErr> {
        let txn = connection.begin().await?;
        txn.execute_unprepared(&format!("SET LOCAL statement_timeout = '{BATCH_STATEMENT_TIMEOUT}'"))
            .await?;
        let row = txn
            .query_one_raw(statement)
            .await?
            .ok_or_else(|| DbErr::Custom("a prune batch returned no row".into()))?;
        txn.commit().await?;
        let last = match row.try_get::<Option<Uuid>>("", "last_order")? {
            Some(order) => Some((
                row.try_get::<Option<DateTime<Utc>>>("", "last_committed_at")?
                    .unwrap_or(DateTime::UNIX_EPOCH),
                order,
                row.try_get::<Option<i64>>("", "last_version")?.unwrap_or(-1),
            )),
            None => None,
        };
        Ok(Batch {
            scanned: row.try_get::<i64>("", "scanned")?.max(0) as u64,
            removed: row.try_get::<i64>("", "removed")?.max(0) as u64,
            last,
        })
    }

    async fn pause(&self) {
        if !self.pause_between_batches.is_zero() {
            tokio::time::sleep(self.pause_between_batches).await;
        }
    }
}

/// Prunes in the background for as long as the instance lives. Every
/// instance runs this; the advisory lock makes one of them do the work.
pub async fn prune_forever(database: DatabaseConfig, history: HistoryConfig) {
    let mut pruner = HistoryPruner::new(database, history.history_prune_batch).with_pause(Duration::from_millis(10));
    let first = tokio::time::Instant::now() + history.history_prune_interval;
    let mut tick = tokio::time::interval_at(first, history.history_prune_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match pruner.pass(history.history_retention, LockWait::Skip).await {
            Ok(PassOutcome::Pruned(report)) => {
                metrics::gauge!(metric::HISTORY_LAST_PRUNE).set(Utc::now().timestamp() as f64);
                if report.removed > 0 {
                    tracing::info!(
                        removed = report.removed,
                        batches = report.batches,
                        cutoff = %report.cutoff,
                        elapsed_ms = report.elapsed.as_millis() as u64,
                        "pruned order history"
                    );
                }
            }
            Ok(PassOutcome::Busy) => tracing::debug!("another instance is pruning the order history"),
            Err(error) => tracing::warn!(%error, "pruning the order history failed; retrying on the next tick"),
        }
    }
}

struct Batch {
    /// Candidate rows (or orders) the batch looked at; a full batch means there may be more.
    scanned: u64,
    removed: u64,
    /// Where the next batch starts.
    last: Option<(DateTime<Utc>, Uuid, i64)>,
}

/// One batch of versions older than `cutoff`, in commit-time order after
/// `cursor`: each one that has a newer version of its order is deleted.
fn aged_out_batch(cursor: (DateTime<Utc>, Uuid, i64), cutoff: DateTime<Utc>, limit: u32) -> Statement {
    let (at, order, version) = cursor;
    Statement::from_sql_and_values(
        sea_orm::DbBackend::Postgres,
        r#"
WITH candidates AS (
    SELECT order_id, version, committed_at FROM order_versions
    WHERE committed_at >= $1 AND committed_at < $4
      AND (committed_at, order_id, version) > ($1, $2, $3)
    ORDER BY committed_at, order_id, version
    LIMIT $5
), removed AS (
    DELETE FROM order_versions v USING candidates c
    WHERE v.order_id = c.order_id AND v.version = c.version
      AND EXISTS (SELECT 1 FROM order_versions newer WHERE newer.order_id = v.order_id AND newer.version > v.version)
    RETURNING 1
), last AS (
    SELECT committed_at, order_id, version FROM candidates
    ORDER BY committed_at DESC, order_id DESC, version DESC LIMIT 1
)
SELECT (SELECT count(*) FROM candidates) AS scanned,
       (SELECT count(*) FROM removed) AS removed,
       last.committed_at AS last_committed_at, last.order_id AS last_order, last.version AS last_version
FROM (SELECT) AS one LEFT JOIN last ON true
"#,
        [
            at.into(),
            order.into(),
            version.into(),
            cutoff.into(),
            i64::from(limit).into(),
        ],
    )
}

/// One batch of orders with a version committed since `since` (after
/// `after_order`): their versions older than `cutoff` and than the first of
/// those new versions are deleted.
fn superseded_batch(since: DateTime<Utc>, after_order: Uuid, cutoff: DateTime<Utc>, limit: u32) -> Statement {
    Statement::from_sql_and_values(
        sea_orm::DbBackend::Postgres,
        r#"
WITH changed AS (
    SELECT order_id, min(version) AS first_new FROM order_versions
    WHERE committed_at >= $1 AND order_id > $2
    GROUP BY order_id ORDER BY order_id LIMIT $4
), removed AS (
    DELETE FROM order_versions v USING changed c
    WHERE v.order_id = c.order_id AND v.version < c.first_new AND v.committed_at < $3
    RETURNING 1
)
SELECT (SELECT count(*) FROM changed) AS scanned,
       (SELECT count(*) FROM removed) AS removed,
       NULL::timestamptz AS last_committed_at,
       (SELECT order_id FROM changed ORDER BY order_id DESC LIMIT 1) AS last_order,
       NULL::bigint AS last_version
"#,
        [since.into(), after_order.into(), cutoff.into(), i64::from(limit).into()],
    )
}

/// Takes the prune lock on this connection's session; false when another
/// instance holds it and the caller does not wait.
async fn acquire(connection: &DatabaseConnection, lock: LockWait) -> Result<bool, DbErr> {
    let sql = match lock {
        LockWait::Skip => format!("SELECT pg_try_advisory_lock({PRUNE_LOCK_KEY}) AS locked"),
        LockWait::Wait(limit) => {
            connection
                .execute_unprepared(&format!("SET lock_timeout = '{}ms'", limit.as_millis().max(1)))
                .await?;
            format!("SELECT true AS locked FROM pg_advisory_lock({PRUNE_LOCK_KEY})")
        }
    };
    let row = connection
        .query_one_raw(Statement::from_string(sea_orm::DbBackend::Postgres, sql))
        .await?
        .ok_or_else(|| DbErr::Custom("the prune lock query returned no row".into()))?;
    let locked = row.try_get::<bool>("", "locked")?;
    connection.execute_unprepared("SET lock_timeout = 0").await?;
    Ok(locked)
}

async fn database_now(connection: &DatabaseConnection) -> Result<DateTime<Utc>, DbErr> {
    let row = connection
        .query_one_raw(Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT clock_timestamp() AS now",
        ))
        .await?
        .ok_or_else(|| DbErr::Custom("clock_timestamp() returned no row".into()))?;
    row.try_get("", "now")
}
