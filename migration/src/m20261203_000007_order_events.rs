//! The public order events: one per committed order version, for other services.
//!
//! `order_events` is an outbox that stays empty: when `order_versions` records a version, the
//! trigger below builds the event from it and inserts it into `order_events` and deletes it again,
//! in the same transaction. The insert is in the WAL, so Debezium captures it (the publication
//! publishes inserts only; the delete never leaves Postgres), and its outbox event router puts the
//! `payload` on the topic `ordercast.order-events`, keyed by order id. Because the event comes from
//! the trigger on `order_versions`, it exists for every writer, and only for committed changes.
//!
//! The payload is the contract in `contracts/order-events/` (`schema_version` 1): no Debezium
//! envelope and nothing internal. It is stored as bytes (UTF-8 JSON text) because Connect's
//! `BinaryDataConverter` writes bytes to Kafka exactly as they are, while re-encoding a JSON
//! column through Connect's schemas would drop its empty arrays. `event_id` is derived from (order id, version), so a redelivery
//! or a replay carries the same id.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE TABLE order_events (
    event_id   uuid  PRIMARY KEY,
    order_id   uuid  NOT NULL,
    event_type text  NOT NULL,
    payload    bytea NOT NULL
);
COMMENT ON TABLE order_events IS
    'Outbox of the public order events (topic ordercast.order-events): each row is inserted and deleted by the transaction that records an order version, so Debezium reads it from the WAL and the table stays empty.';

CREATE FUNCTION order_event(v order_versions) RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    state jsonb := v.state;
    items jsonb;
    item_count bigint;
    total_cents bigint;
BEGIN
    SELECT COALESCE(jsonb_agg(jsonb_build_object(
               'item_id', i->'id',
               'product_id', i->'product_id',
               'sku', i->'product'->'sku',
               'name', i->'product'->'name',
               'quantity', i->'quantity',
               'unit_price_cents', i->'unit_price_cents',
               'line_total_cents', (i->>'quantity')::bigint * (i->>'unit_price_cents')::bigint)
             ORDER BY ordinality), '[]'::jsonb),
           COALESCE(sum((i->>'quantity')::bigint), 0),
           COALESCE(sum((i->>'quantity')::bigint * (i->>'unit_price_cents')::bigint), 0)
      INTO items, item_count, total_cents
      FROM jsonb_array_elements(state->'items') WITH ORDINALITY AS e(i, ordinality);
    RETURN jsonb_build_object(
        'schema_version', 1,
        'event_id', md5(v.order_id::text || '/' || v.version::text)::uuid,
        'type', CASE v.change
            WHEN 'CREATED' THEN 'OrderCreated'
            WHEN 'ITEM_ADDED' THEN 'ItemAdded'
            WHEN 'ITEM_CHANGED' THEN 'ItemChanged'
            WHEN 'ITEM_REMOVED' THEN 'ItemRemoved'
            WHEN 'SCHEDULED' THEN 'OrderScheduled'
            WHEN 'REOPENED' THEN 'OrderReopened'
            WHEN 'CANCELLED' THEN 'OrderCancelled'
            ELSE 'OrderUpdated'
        END,
        'order_id', v.order_id,
        'customer_id', v.customer_id,
        'version', v.version,
        'occurred_at', to_char(v.committed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'order', jsonb_build_object(
            'status', state->'status',
            'items', items,
            'item_count', item_count,
            'total_cents', total_cents,
            'delivery_window', CASE WHEN state->>'delivery_window_start' IS NULL THEN NULL ELSE jsonb_build_object(
                'start', to_char((state->>'delivery_window_start')::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                'end', to_char((state->>'delivery_window_end')::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')) END,
            'cancel_reason', state->'cancel_reason',
            'created_at', to_char((state->>'created_at')::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')));
END $$;

CREATE FUNCTION order_versions_publish_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    event jsonb := order_event(NEW);
    id uuid := (event->>'event_id')::uuid;
BEGIN
    INSERT INTO order_events (event_id, order_id, event_type, payload)
        VALUES (id, NEW.order_id, event->>'type', convert_to(event::text, 'UTF8'));
    DELETE FROM order_events WHERE event_id = id;
    RETURN NULL;
END $$;

CREATE TRIGGER order_versions_publish_event AFTER INSERT ON order_versions
    FOR EACH ROW EXECUTE FUNCTION order_versions_publish_event();

DO $$
DECLARE
    owner oid;
BEGIN
    SELECT pubowner INTO owner FROM pg_publication WHERE pubname = 'ordercast_cdc';
    IF NOT FOUND THEN
        CREATE PUBLICATION ordercast_cdc FOR TABLE order_versions, cdc_gaps, order_events WITH (publish = 'insert');
    ELSIF pg_has_role(owner, 'USAGE') THEN
        ALTER PUBLICATION ordercast_cdc SET TABLE order_versions, cdc_gaps, order_events;
    ELSE
        RAISE WARNING 'publication ordercast_cdc belongs to another role: add order_events to it for the topic ordercast.order-events';
    END IF;
END $$;
"#;

const DOWN: &str = r#"
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_publication WHERE pubname = 'ordercast_cdc' AND pg_has_role(pubowner, 'USAGE')) THEN
        ALTER PUBLICATION ordercast_cdc SET TABLE order_versions, cdc_gaps;
    END IF;
END $$;
DROP TRIGGER order_versions_publish_event ON order_versions;
DROP FUNCTION order_versions_publish_event();
DROP FUNCTION order_event(order_versions);
DROP TABLE order_events;
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
