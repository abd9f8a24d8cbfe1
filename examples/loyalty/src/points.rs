//! The points ledger and the one transaction that applies an event to it.

use serde::Deserialize;
use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgPool};
use uuid::Uuid;

/// The contract major version this service understands.
pub const SCHEMA_VERSION: i64 = 1;

/// The fields of an order event this service reads; the rest are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct OrderEvent {
    pub schema_version: i64,
    pub event_id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub version: i64,
    pub order: OrderState,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OrderState {
    pub status: String,
    pub total_cents: i64,
}

impl OrderEvent {
    /// Points the customer holds for this order after the event.
    pub fn points(&self) -> i64 {
        if self.order.status == "scheduled" {
            self.order.total_cents / 100
        } else {
            0
        }
    }
}

/// What applying an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The customer's balance moved by this many points (maybe zero).
    Changed(i64),
    /// The order's version was already applied: a redelivery or a replay.
    Duplicate,
}

/// The service's own tables, in their own schema (every connection's `search_path`).
pub struct PointsStore {
    pool: PgPool,
}

impl PointsStore {
    /// Connects and creates the service's tables if they are missing.
    pub async fn connect(url: &str, schema: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !schema.is_empty() && schema.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "the schema name must be letters, digits and underscores"
        );
        let options = PgConnectOptions::from_str(url)?.options([("search_path", schema)]);
        let pool = PgPoolOptions::new().max_connections(4).connect_with(options).await?;
        // The name was checked above: letters, digits and underscores only.
        let setup = format!(
            "CREATE SCHEMA IF NOT EXISTS {schema};
             CREATE TABLE IF NOT EXISTS {schema}.accounts (
                 customer_id uuid   PRIMARY KEY,
                 points      bigint NOT NULL
             );
             CREATE TABLE IF NOT EXISTS {schema}.order_points (
                 order_id    uuid   PRIMARY KEY,
                 customer_id uuid   NOT NULL,
                 version     bigint NOT NULL,
                 points      bigint NOT NULL CHECK (points >= 0)
             );"
        );
        sqlx::raw_sql(AssertSqlSafe(setup)).execute(&pool).await?;
        Ok(Self { pool })
    }

    /// Applies one event in one transaction: the order's points and version and the
    /// customer's balance move together, or not at all. A version at or below the
    /// recorded one is a duplicate and changes nothing.
    pub async fn apply(&self, event: &OrderEvent) -> Result<Applied, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let recorded: Option<(i64, i64)> =
            sqlx::query_as("SELECT version, points FROM order_points WHERE order_id = $1 FOR UPDATE")
                .bind(event.order_id)
                .fetch_optional(&mut *tx)
                .await?;
        let held = match recorded {
            Some((version, _)) if version >= event.version => return Ok(Applied::Duplicate),
            Some((_, points)) => points,
            None => 0,
        };
        let points = event.points();
        sqlx::query(
            "INSERT INTO order_points (order_id, customer_id, version, points) VALUES ($1, $2, $3, $4)
             ON CONFLICT (order_id) DO UPDATE SET version = EXCLUDED.version, points = EXCLUDED.points",
        )
        .bind(event.order_id)
        .bind(event.customer_id)
        .bind(event.version)
        .bind(points)
        .execute(&mut *tx)
        .await?;
        let delta = points - held;
        if delta != 0 {
            sqlx::query(
                "INSERT INTO accounts (customer_id, points) VALUES ($1, $2)
                 ON CONFLICT (customer_id) DO UPDATE SET points = accounts.points + EXCLUDED.points",
            )
            .bind(event.customer_id)
            .bind(delta)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Applied::Changed(delta))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(status: &str, total_cents: i64) -> OrderEvent {
        OrderEvent {
            schema_version: 1,
            event_id: Uuid::nil(),
            event_type: "OrderScheduled".into(),
            order_id: Uuid::nil(),
            customer_id: Uuid::nil(),
            version: 3,
            order: OrderState {
                status: status.into(),
                total_cents,
            },
        }
    }

    #[test]
    fn a_scheduled_order_is_worth_a_point_per_hundred_cents_and_nothing_else_is() {
        assert_eq!(event("scheduled", 1_299).points(), 12);
        assert_eq!(event("scheduled", 99).points(), 0);
        assert_eq!(event("open", 5_000).points(), 0);
        assert_eq!(event("cancelled", 5_000).points(), 0);
    }
}
