//! Live order updates over WebSocket (GraphQL subscriptions), end to end: mutations over HTTP or
//! raw SQL commit to Postgres, Debezium carries them through Kafka, and every ordercast instance
//! pushes them to its subscribers. Needs the real stack (`make stack`).

#[path = "../common/mod.rs"]
mod common;

mod support;

mod access;
mod fanout;
mod http_streams;
mod lagged;
mod latency;
mod protocol;
mod resume;
mod retention;
mod shared;
mod slow;
