//! ordercast: a database-first GraphQL backend for orders.
//!
//! Writes go through SeaORM into Postgres, which enforces the business rules;
//! live updates come back out of Postgres through Debezium and Kafka. See
//! ARCHITECTURE.md for the module map and the path of a change.

pub mod app;
pub mod auth;
pub mod cdc;
pub mod config;
pub mod db;
pub mod demo;
pub mod domain;
pub mod graphql;
pub mod http;
pub mod live;
pub mod playground;
pub mod server;
mod static_assets;
pub mod telemetry;
pub mod ws;
