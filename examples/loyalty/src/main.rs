//! `loyalty`: an example service downstream of ordercast. It consumes the
//! public topic `ordercast.order-events` in a consumer group and keeps loyalty
//! points in its own tables: while an order is scheduled its customer holds
//! 1 point per 100 cents of the order's total; a cancel (or a reopen) takes
//! them back. Each event is applied exactly once in effect: the transaction
//! that changes the points also records the order's version, and the offset is
//! stored only after that transaction committed, so a redelivery is skipped.

mod config;
mod consumer;
mod points;

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn")),
        )
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .init();
    let config = config::Config::parse();
    let store = points::PointsStore::connect(&config.database_url, &config.schema).await?;
    consumer::run(&config, store).await
}
