//! Customers and products: the reference data orders point at.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE TABLE customers (
    id           uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    email        text        NOT NULL,
    display_name text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT customers_email_key UNIQUE (email),
    CONSTRAINT customers_email_valid CHECK (email = lower(email) AND email LIKE '_%@_%' AND length(email) <= 320),
    CONSTRAINT customers_display_name_valid CHECK (length(display_name) BETWEEN 1 AND 200)
);

-- I5: prices are non-negative integers of cents.
CREATE TABLE products (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    sku         text        NOT NULL,
    name        text        NOT NULL,
    price_cents bigint      NOT NULL,
    available   boolean     NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT products_sku_key UNIQUE (sku),
    CONSTRAINT products_sku_valid CHECK (length(sku) BETWEEN 1 AND 64),
    CONSTRAINT products_name_valid CHECK (length(name) BETWEEN 1 AND 200),
    CONSTRAINT products_price_non_negative CHECK (price_cents >= 0)
);
"#;

const DOWN: &str = r#"
DROP TABLE products;
DROP TABLE customers;
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
