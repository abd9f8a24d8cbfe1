//! Recording a version at COMMIT was half of Postgres's CPU at 500 writes/s:
//!
//! - `order_state` was a `LANGUAGE sql` function that the planner does not inline (it is called
//!   from PL/pgSQL), so every call parsed and planned its query again. As PL/pgSQL, its plan is
//!   kept per session.
//! - The change kind compared the item lists with nested `EXISTS` over `jsonb_array_elements`;
//!   comparing arrays of item ids with `<@` gives the same answer without the nested subplans.
//! - `state` was compressed with pglz; lz4 compresses it several times faster.
//!
//! Same function signatures, same stored format, same change kinds.

use sea_orm_migration::prelude::*;

use crate::m20261125_000003_order_versions::{ORDER_STATE, RECORD_VERSION};

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE OR REPLACE FUNCTION order_state(target uuid) RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (
        SELECT to_jsonb(o) - 'version_xact' || jsonb_build_object('items', COALESCE((
            SELECT jsonb_agg(to_jsonb(i) || jsonb_build_object('product', to_jsonb(p)) ORDER BY i.created_at, i.id)
            FROM order_items i JOIN products p ON p.id = i.product_id
            WHERE i.order_id = o.id), '[]'::jsonb))
        FROM orders o WHERE o.id = target);
END $$;

CREATE OR REPLACE FUNCTION order_versions_record() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    current orders%ROWTYPE;
    state jsonb;
    previous jsonb;
    item_ids text[];
    previous_item_ids text[];
    kind text;
BEGIN
    SELECT * INTO current FROM orders WHERE id = NEW.id;
    IF NOT FOUND OR EXISTS (SELECT 1 FROM order_versions WHERE order_id = current.id AND version = current.version) THEN
        RETURN NULL; -- deleted later in the transaction, or already recorded
    END IF;
    state := order_state(current.id);
    SELECT v.state INTO previous FROM order_versions v WHERE v.order_id = current.id AND v.version = current.version - 1;
    item_ids := ARRAY(SELECT item->>'id' FROM jsonb_array_elements(state->'items') item);
    previous_item_ids := ARRAY(SELECT item->>'id' FROM jsonb_array_elements(previous->'items') item);
    kind := CASE
        WHEN current.version = 1 THEN 'CREATED'
        WHEN previous IS NULL THEN 'UPDATED'
        WHEN current.status <> previous->>'status' THEN
            CASE current.status WHEN 'cancelled' THEN 'CANCELLED' WHEN 'scheduled' THEN 'SCHEDULED' ELSE 'REOPENED' END
        WHEN current.status = 'scheduled'
             AND (state->'delivery_window_start', state->'delivery_window_end')
                 IS DISTINCT FROM (previous->'delivery_window_start', previous->'delivery_window_end') THEN 'SCHEDULED'
        WHEN NOT item_ids <@ previous_item_ids THEN 'ITEM_ADDED'
        WHEN NOT previous_item_ids <@ item_ids THEN 'ITEM_REMOVED'
        WHEN state->'items' IS DISTINCT FROM previous->'items' THEN 'ITEM_CHANGED'
        ELSE 'UPDATED'
    END;
    INSERT INTO order_versions (order_id, version, customer_id, change, state)
    VALUES (current.id, current.version, current.customer_id, kind, state);
    RETURN NULL;
END $$;

ALTER TABLE order_versions ALTER COLUMN state SET COMPRESSION lz4;
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(UP).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("ALTER TABLE order_versions ALTER COLUMN state SET COMPRESSION default")
            .await?;
        for statements in [RECORD_VERSION, ORDER_STATE] {
            db.execute_unprepared(statements).await?;
        }
        Ok(())
    }
}
