//! `order_versions`: one row per committed version of an order, holding the
//! complete state that version had (order, items, products) and what changed.
//!
//! Written by a deferred constraint trigger at COMMIT, so a row is always a
//! whole committed transaction, never half of one, for every writer. Debezium
//! captures the inserts; live updates and reconnect resumes read these states.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const TABLE: &str = r#"
CREATE TABLE order_versions (
    order_id     uuid        NOT NULL,
    version      bigint      NOT NULL,
    customer_id  uuid        NOT NULL,
    change       text        NOT NULL,
    state        jsonb       NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT order_versions_pkey PRIMARY KEY (order_id, version),
    CONSTRAINT order_versions_order_id_fkey FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE CASCADE,
    CONSTRAINT order_versions_change_valid CHECK (change IN (
        'CREATED', 'ITEM_ADDED', 'ITEM_CHANGED', 'ITEM_REMOVED', 'SCHEDULED', 'REOPENED', 'CANCELLED', 'UPDATED'))
);
CREATE INDEX order_versions_customer_idx ON order_versions (customer_id, order_id);
"#;

/// The first definition of `order_state`; `m20261126_000004` replaces it and restores it on the way down.
pub(crate) const ORDER_STATE: &str = r#"
-- The order as one JSON document: the format live updates and resumes decode.
CREATE OR REPLACE FUNCTION order_state(target uuid) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT to_jsonb(o) - 'version_xact' || jsonb_build_object('items', COALESCE((
        SELECT jsonb_agg(to_jsonb(i) || jsonb_build_object('product', to_jsonb(p)) ORDER BY i.created_at, i.id)
        FROM order_items i JOIN products p ON p.id = i.product_id
        WHERE i.order_id = o.id), '[]'::jsonb))
    FROM orders o WHERE o.id = target
$$;
"#;

/// The first definition of `order_versions_record`; see `ORDER_STATE`.
pub(crate) const RECORD_VERSION: &str = r#"
CREATE OR REPLACE FUNCTION order_versions_record() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    current orders%ROWTYPE;
    state jsonb;
    previous jsonb;
    kind text;
BEGIN
    SELECT * INTO current FROM orders WHERE id = NEW.id;
    IF NOT FOUND OR EXISTS (SELECT 1 FROM order_versions WHERE order_id = current.id AND version = current.version) THEN
        RETURN NULL; -- deleted later in the transaction, or already recorded
    END IF;
    state := order_state(current.id);
    SELECT v.state INTO previous FROM order_versions v WHERE v.order_id = current.id AND v.version = current.version - 1;
    kind := CASE
        WHEN current.version = 1 THEN 'CREATED'
        WHEN previous IS NULL THEN 'UPDATED'
        WHEN current.status <> previous->>'status' THEN
            CASE current.status WHEN 'cancelled' THEN 'CANCELLED' WHEN 'scheduled' THEN 'SCHEDULED' ELSE 'REOPENED' END
        WHEN current.status = 'scheduled'
             AND (state->'delivery_window_start', state->'delivery_window_end')
                 IS DISTINCT FROM (previous->'delivery_window_start', previous->'delivery_window_end') THEN 'SCHEDULED'
        WHEN EXISTS (SELECT 1 FROM jsonb_array_elements(state->'items') n
                     WHERE NOT EXISTS (SELECT 1 FROM jsonb_array_elements(previous->'items') o WHERE o->'id' = n->'id'))
            THEN 'ITEM_ADDED'
        WHEN EXISTS (SELECT 1 FROM jsonb_array_elements(previous->'items') o
                     WHERE NOT EXISTS (SELECT 1 FROM jsonb_array_elements(state->'items') n WHERE o->'id' = n->'id'))
            THEN 'ITEM_REMOVED'
        WHEN state->'items' IS DISTINCT FROM previous->'items' THEN 'ITEM_CHANGED'
        ELSE 'UPDATED'
    END;
    INSERT INTO order_versions (order_id, version, customer_id, change, state)
    VALUES (current.id, current.version, current.customer_id, kind, state);
    RETURN NULL;
END $$;
"#;

const TRIGGER_AND_BACKFILL: &str = r#"
-- At COMMIT, after every statement of the transaction: the row records its final state.
CREATE CONSTRAINT TRIGGER order_versions_record AFTER INSERT OR UPDATE ON orders
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION order_versions_record();

-- Orders that exist already get their current version recorded once.
INSERT INTO order_versions (order_id, version, customer_id, change, state)
SELECT o.id, o.version, o.customer_id, CASE WHEN o.version = 1 THEN 'CREATED' ELSE 'UPDATED' END, order_state(o.id)
FROM orders o;
"#;

const DOWN: &str = r#"
DROP TRIGGER order_versions_record ON orders;
DROP FUNCTION order_versions_record();
DROP TABLE order_versions;
DROP FUNCTION order_state(uuid);
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for statements in [TABLE, ORDER_STATE, RECORD_VERSION, TRIGGER_AND_BACKFILL] {
            db.execute_unprepared(statements).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(DOWN).await?;
        Ok(())
    }
}
