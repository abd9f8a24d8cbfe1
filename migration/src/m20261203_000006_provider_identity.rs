//! Customers from an identity provider.
//!
//! - `external_subject`: the provider's stable identifier of the person (the claim named by
//!   `ORDERCAST_JWT_CUSTOMER_CLAIM`, `sub` by default). Unique, so two instances provisioning the
//!   same newcomer at once create one customer: the loser's insert conflicts and it reads the
//!   winner's row.
//! - `email` becomes optional: many providers' access tokens carry no email (Auth0, Cognito), and
//!   an address already held by another customer is never linked to a new subject.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
ALTER TABLE customers
    ADD COLUMN external_subject text,
    ADD CONSTRAINT customers_external_subject_key UNIQUE (external_subject),
    ADD CONSTRAINT customers_external_subject_valid CHECK (length(external_subject) BETWEEN 1 AND 255),
    ALTER COLUMN email DROP NOT NULL;
COMMENT ON COLUMN customers.external_subject IS
    'The identity provider''s subject of this customer (ORDERCAST_JWT_CUSTOMER_CLAIM); NULL for customers that only sign in with development tokens.';
"#;

const DOWN: &str = r#"
ALTER TABLE customers
    DROP COLUMN external_subject,
    ALTER COLUMN email SET NOT NULL;
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
