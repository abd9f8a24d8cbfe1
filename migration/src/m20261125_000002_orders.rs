//! Orders and their items, with invariants I1–I5 enforced by Postgres.
//!
//! How each rule is guarded, and why it holds under concurrency, is written down
//! in ARCHITECTURE.md ("Invariants"). Every rule violation is raised with SQLSTATE
//! 23xxx and a constraint name, which is all the application needs to map it to a
//! stable GraphQL error code.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE TABLE orders (
    id                    uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    customer_id           uuid        NOT NULL,
    status                text        NOT NULL DEFAULT 'open',
    delivery_window_start timestamptz,
    delivery_window_end   timestamptz,
    cancel_reason         text,
    version               bigint      NOT NULL DEFAULT 1,
    -- The transaction that produced `version`; lets a transaction that touches the
    -- order several times bump the version once (I4 counts committed changes).
    version_xact          bigint      NOT NULL DEFAULT 0,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT orders_customer_id_fkey FOREIGN KEY (customer_id) REFERENCES customers (id),
    -- Target of the items' composite foreign key (I2).
    CONSTRAINT orders_id_status_key UNIQUE (id, status),
    CONSTRAINT orders_status_valid CHECK (status IN ('open', 'scheduled', 'cancelled')),
    CONSTRAINT orders_version_positive CHECK (version >= 1),
    CONSTRAINT orders_window_complete CHECK ((delivery_window_start IS NULL) = (delivery_window_end IS NULL)),
    CONSTRAINT orders_window_ordered CHECK (delivery_window_end > delivery_window_start),
    CONSTRAINT orders_scheduled_has_window CHECK (status <> 'scheduled' OR delivery_window_start IS NOT NULL),
    CONSTRAINT orders_open_has_no_window CHECK (status <> 'open' OR delivery_window_start IS NULL),
    CONSTRAINT orders_cancel_reason_when_cancelled CHECK (cancel_reason IS NULL OR status = 'cancelled'),
    CONSTRAINT orders_cancel_reason_length CHECK (length(cancel_reason) <= 500)
);
CREATE INDEX orders_customer_recent_idx ON orders (customer_id, created_at DESC, id DESC);

CREATE TABLE order_items (
    id               uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    order_id         uuid        NOT NULL,
    -- Mirror of orders.status, kept equal by the composite foreign key's cascade (I2).
    order_status     text        NOT NULL DEFAULT 'open',
    product_id       uuid        NOT NULL,
    quantity         integer     NOT NULL,
    unit_price_cents bigint      NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT order_items_order_fkey FOREIGN KEY (order_id, order_status)
        REFERENCES orders (id, status) ON UPDATE CASCADE,
    CONSTRAINT order_items_product_id_fkey FOREIGN KEY (product_id) REFERENCES products (id),
    CONSTRAINT order_items_order_product_key UNIQUE (order_id, product_id),
    CONSTRAINT order_items_quantity_range CHECK (quantity BETWEEN 1 AND 999),
    CONSTRAINT order_items_unit_price_non_negative CHECK (unit_price_cents >= 0)
);
CREATE INDEX order_items_product_idx ON order_items (product_id);

-- Deletes and updates must carry every column (order_id above all) to CDC consumers.
ALTER TABLE orders REPLICA IDENTITY FULL;
ALTER TABLE order_items REPLICA IDENTITY FULL;

CREATE FUNCTION ordercast_current_xact() RETURNS bigint
LANGUAGE sql VOLATILE AS $$ SELECT pg_current_xact_id()::text::bigint $$;

-- I3 and I4 on the order row itself.
CREATE FUNCTION orders_guard_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status <> 'open' THEN
        RAISE EXCEPTION 'a new order must be open'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'orders_created_open';
    END IF;
    NEW.version := 1;
    NEW.version_xact := ordercast_current_xact();
    NEW.created_at := now();
    NEW.updated_at := now();
    RETURN NEW;
END $$;

CREATE FUNCTION orders_guard_update() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    xact bigint := ordercast_current_xact();
BEGIN
    IF OLD.status = 'cancelled' THEN
        RAISE EXCEPTION 'the order is cancelled and can no longer change'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'orders_cancelled_is_final';
    END IF;
    IF NEW.id <> OLD.id OR NEW.customer_id <> OLD.customer_id OR NEW.created_at <> OLD.created_at THEN
        RAISE EXCEPTION 'an order''s id, customer and creation time never change'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'orders_identity_immutable';
    END IF;
    IF NEW.status <> OLD.status AND NOT (
        (OLD.status = 'open' AND NEW.status IN ('scheduled', 'cancelled')) OR
        (OLD.status = 'scheduled' AND NEW.status IN ('open', 'cancelled'))
    ) THEN
        RAISE EXCEPTION 'an order cannot move from % to %', OLD.status, NEW.status
            USING ERRCODE = 'check_violation', CONSTRAINT = 'orders_status_transition';
    END IF;
    IF NEW.status = 'scheduled' AND (
        OLD.status <> 'scheduled'
        OR NEW.delivery_window_start IS DISTINCT FROM OLD.delivery_window_start
        OR NEW.delivery_window_end IS DISTINCT FROM OLD.delivery_window_end
    ) THEN
        IF NEW.delivery_window_start <= now() THEN
            RAISE EXCEPTION 'the delivery window must start in the future'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'orders_window_in_future';
        END IF;
        -- A fresh snapshot: sees every item committed before we locked this row.
        IF NOT EXISTS (SELECT 1 FROM order_items WHERE order_id = NEW.id) THEN
            RAISE EXCEPTION 'an order needs at least one item to be scheduled'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'orders_schedule_needs_items';
        END IF;
    END IF;
    NEW.version := CASE WHEN OLD.version_xact = xact THEN OLD.version ELSE OLD.version + 1 END;
    NEW.version_xact := xact;
    NEW.updated_at := now();
    RETURN NEW;
END $$;

CREATE TRIGGER orders_guard_insert BEFORE INSERT ON orders
    FOR EACH ROW EXECUTE FUNCTION orders_guard_insert();
CREATE TRIGGER orders_guard_update BEFORE UPDATE ON orders
    FOR EACH ROW EXECUTE FUNCTION orders_guard_update();

-- I1, I2, I5 on items: an item is written only while its order is not cancelled.
CREATE FUNCTION order_items_guard_write() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    current_status text;
    product record;
BEGIN
    IF TG_OP = 'INSERT' THEN
        -- KEY SHARE conflicts with the key update a cancel makes (status is part of
        -- orders_id_status_key): a cancel in flight makes us wait, and we then read
        -- the status it committed.
        SELECT o.status INTO current_status FROM orders o WHERE o.id = NEW.order_id FOR KEY SHARE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'the order does not exist'
                USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'order_items_order_fkey';
        END IF;
        IF current_status = 'cancelled' THEN
            RAISE EXCEPTION 'the order is cancelled; no item can be added'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'order_items_order_not_cancelled';
        END IF;
        NEW.order_status := current_status;
        SELECT p.price_cents, p.available INTO product FROM products p WHERE p.id = NEW.product_id FOR KEY SHARE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'the product does not exist'
                USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'order_items_product_id_fkey';
        END IF;
        IF NOT product.available THEN
            RAISE EXCEPTION 'the product is not available'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'order_items_product_available';
        END IF;
        NEW.unit_price_cents := COALESCE(NEW.unit_price_cents, product.price_cents);
        NEW.created_at := now();
        NEW.updated_at := now();
        RETURN NEW;
    END IF;

    IF OLD.order_status = 'cancelled' THEN
        RAISE EXCEPTION 'the order is cancelled; its items can no longer change'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'order_items_order_not_cancelled';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;

    IF NEW.order_status IS DISTINCT FROM OLD.order_status THEN
        -- Only the cascade from orders(id, status) changes this column, alone.
        IF (NEW.id, NEW.order_id, NEW.product_id, NEW.quantity, NEW.unit_price_cents, NEW.created_at)
           IS DISTINCT FROM
           (OLD.id, OLD.order_id, OLD.product_id, OLD.quantity, OLD.unit_price_cents, OLD.created_at) THEN
            RAISE EXCEPTION 'order_status is maintained by the database'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'order_items_order_status_managed';
        END IF;
        RETURN NEW;
    END IF;
    IF NEW.id <> OLD.id OR NEW.order_id <> OLD.order_id OR NEW.product_id <> OLD.product_id THEN
        RAISE EXCEPTION 'an item''s id, order and product never change'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'order_items_identity_immutable';
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END $$;

-- I4 for item changes: the order's version moves in the same transaction, through
-- orders_guard_update (which also takes the order's row lock).
CREATE FUNCTION order_items_touch_order() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    target uuid := CASE WHEN TG_OP = 'DELETE' THEN OLD.order_id ELSE NEW.order_id END;
    current_status text;
BEGIN
    UPDATE orders SET updated_at = now() WHERE id = target RETURNING status INTO current_status;
    IF TG_OP = 'DELETE' AND current_status = 'scheduled'
       AND NOT EXISTS (SELECT 1 FROM order_items WHERE order_id = target) THEN
        RAISE EXCEPTION 'a scheduled order keeps at least one item; reopen or cancel it instead'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'orders_schedule_needs_items';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER order_items_guard_write BEFORE INSERT OR UPDATE OR DELETE ON order_items
    FOR EACH ROW EXECUTE FUNCTION order_items_guard_write();
CREATE TRIGGER order_items_touch_order AFTER INSERT OR DELETE ON order_items
    FOR EACH ROW EXECUTE FUNCTION order_items_touch_order();
-- The status cascade is part of the order's own change, so it does not count twice.
CREATE TRIGGER order_items_touch_order_on_update AFTER UPDATE ON order_items
    FOR EACH ROW WHEN (OLD.order_status IS NOT DISTINCT FROM NEW.order_status)
    EXECUTE FUNCTION order_items_touch_order();
"#;

const DOWN: &str = r#"
DROP TABLE order_items;
DROP TABLE orders;
DROP FUNCTION order_items_touch_order();
DROP FUNCTION order_items_guard_write();
DROP FUNCTION orders_guard_update();
DROP FUNCTION orders_guard_insert();
DROP FUNCTION ordercast_current_xact();
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
