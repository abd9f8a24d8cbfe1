//! Schema migrations for ordercast.
//!
//! The business rules (invariants I1–I5 of DESIGN.md) live here, in Postgres, so
//! they hold for every writer: any number of ordercast instances, other services,
//! or a person with `psql`. The application only maps a violated rule to a typed error.

pub use sea_orm_migration::prelude::*;

mod m20261125_000001_catalog;
mod m20261125_000002_orders;
mod m20261125_000003_order_versions;
mod m20261126_000004_cheaper_version_records;
mod m20261202_000005_bounded_history;
mod m20261203_000006_provider_identity;
mod m20261203_000007_order_events;

/// Applies the ordercast schema in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_catalog::Migration),
            Box::new(m20261125_000002_orders::Migration),
            Box::new(m20261125_000003_order_versions::Migration),
            Box::new(m20261126_000004_cheaper_version_records::Migration),
            Box::new(m20261202_000005_bounded_history::Migration),
            Box::new(m20261203_000006_provider_identity::Migration),
            Box::new(m20261203_000007_order_events::Migration),
        ]
    }
}
