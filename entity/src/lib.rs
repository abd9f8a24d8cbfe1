//! SeaORM entities for the ordercast schema (see the `migration` crate for the
//! tables and the invariants Postgres enforces on them).

pub mod customers;
pub mod order_items;
pub mod order_versions;
pub mod orders;
pub mod products;

pub use orders::OrderStatus;
