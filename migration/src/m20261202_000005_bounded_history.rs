//! Bounded history and a lean change capture.
//!
//! - `order_versions` is pruned after a retention (see `ordercast::db::history`): an index on
//!   `committed_at` lets a pass find the versions that aged out without reading the table.
//! - Only what a consumer reads goes to Kafka. The publication `ordercast_cdc` covers
//!   `order_versions` and `cdc_gaps` and publishes inserts only, so pruning (a `DELETE`) never
//!   reaches a consumer of the versions topic, and no customer data leaves Postgres.
//! - `orders` and `order_items` are no longer captured: their old rows need not be logged in
//!   full (`REPLICA IDENTITY DEFAULT`), which makes every update's WAL record smaller.
//! - `cdc_gaps`: one row per known hole in the change stream (a replication slot recreated after
//!   it lost WAL). Its insert travels the same path as every change, so each instance learns
//!   about the hole in stream order and compares its subscribers with Postgres.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE INDEX order_versions_committed_at_idx ON order_versions (committed_at);

CREATE TABLE cdc_gaps (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    reason      text        NOT NULL,
    detected_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT cdc_gaps_reason_not_blank CHECK (btrim(reason) <> '')
);
COMMENT ON TABLE cdc_gaps IS
    'A row per hole in the change stream (changes committed but never captured); inserting one makes every ordercast instance compare its subscribers with Postgres.';

ALTER TABLE orders REPLICA IDENTITY DEFAULT;
ALTER TABLE order_items REPLICA IDENTITY DEFAULT;

-- Create the publication, or narrow the one the local stack created for us. A publication
-- owned by another role (a DBA's) is left as it is: its owner keeps it right.
DO $$
DECLARE
    owner oid;
BEGIN
    SELECT pubowner INTO owner FROM pg_publication WHERE pubname = 'ordercast_cdc';
    IF NOT FOUND THEN
        CREATE PUBLICATION ordercast_cdc FOR TABLE order_versions, cdc_gaps WITH (publish = 'insert');
    ELSIF pg_has_role(owner, 'USAGE') THEN
        ALTER PUBLICATION ordercast_cdc SET TABLE order_versions, cdc_gaps;
        ALTER PUBLICATION ordercast_cdc SET (publish = 'insert');
    ELSE
        RAISE WARNING 'publication ordercast_cdc belongs to another role: make sure it covers order_versions and cdc_gaps and publishes inserts only';
    END IF;
END $$;
"#;

const DOWN: &str = r#"
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_publication WHERE pubname = 'ordercast_cdc' AND pg_has_role(pubowner, 'USAGE')) THEN
        ALTER PUBLICATION ordercast_cdc SET TABLE order_versions, orders, order_items, customers, products;
        ALTER PUBLICATION ordercast_cdc SET (publish = 'insert, update, delete, truncate');
    END IF;
END $$;
ALTER TABLE orders REPLICA IDENTITY FULL;
ALTER TABLE order_items REPLICA IDENTITY FULL;
DROP TABLE cdc_gaps;
DROP INDEX order_versions_committed_at_idx;
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(UP).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(DOWN).await?;
        Ok(())
    }
}
