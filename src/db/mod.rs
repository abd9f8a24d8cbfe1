//! Postgres access: the pool, migrations, and the transactions behind every
//! query and mutation.

mod catalog;
mod errors;
mod history;
mod identity;
mod orders;
mod probe;
mod seed;
mod versions;

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr};

pub use catalog::{find_customer, find_customer_by_email, list_products, ProductPage};
pub use errors::{classify, classify_commit, rule_error, violation, Violation};
pub use history::{prune_forever, HistoryPruner, LockWait, PassOutcome, PruneReport, PRUNE_LOCK_KEY};
pub use identity::{customer_of_subject, provision_customer, NewCustomerProfile};
pub use orders::{
    add_item, cancel_order, create_order, find_order, list_orders, remove_item, reopen_order, schedule_order,
    set_item_quantity, OrderCursor, OrderPage,
};
pub use probe::{prepare, probe, DatabaseStatus, Unreachable};
pub use seed::{seed, DEMO_CUSTOMERS, DEMO_PRODUCTS};
pub use versions::{
    current_versions_of, customer_versions, order_versions_between, orders_by_ids, MAX_REPLAY, STATES_PER_QUERY,
};

use crate::config::DatabaseConfig;

/// Key of the session advisory lock that serialises migrations across instances.
const MIGRATION_LOCK_KEY: i64 = 0x6f72_6465_7263_6173; // "ordercas"

/// Opens this instance's connection pool. Connections are made on first use,
/// so a pool exists while Postgres is away; `probe` says why it is.
pub async fn connect(config: &DatabaseConfig) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(config.database_url.expose());
    options
        .max_connections(config.db_max_connections)
        .min_connections(1)
        .connect_lazy(true)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging_level(log::LevelFilter::Debug);
    Database::connect(options).await
}

/// A pool of exactly one connection, for work that holds a session advisory
/// lock (migrations, history pruning): every statement runs in that session.
async fn single_connection(config: &DatabaseConfig) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(config.database_url.expose());
    options
        .max_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .sqlx_logging_level(log::LevelFilter::Debug);
    Database::connect(options).await
}

/// Applies pending migrations. Several instances may start at once: a session
/// advisory lock on a dedicated connection lets exactly one of them migrate.
pub async fn migrate(config: &DatabaseConfig) -> Result<(), DbErr> {
    let connection = single_connection(config).await?;
    connection
        .execute_unprepared(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
        .await?;
    let result = Migrator::up(&connection, None).await;
    let unlocked = connection
        .execute_unprepared(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))
        .await;
    connection.close().await?;
    result?;
    unlocked.map(|_| ())
}

/// True when Postgres answers a trivial query.
pub async fn ping(db: &DatabaseConnection) -> bool {
    db.execute_unprepared("SELECT 1").await.is_ok()
}
