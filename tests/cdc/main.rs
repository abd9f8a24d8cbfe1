//! Integration tests of the change-data-capture path with the real Postgres,
//! Debezium (Kafka Connect) and Kafka of `make stack`.

#[path = "../common/mod.rs"]
mod common;

mod pipe;
mod retention;
