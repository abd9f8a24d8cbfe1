//! Command line and environment: where Kafka and Postgres are, which group to join.

use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "loyalty", about = "Loyalty points from ordercast's order events")]
pub struct Config {
    /// Kafka bootstrap servers.
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:19092")]
    pub kafka_brokers: String,
    /// Any librdkafka property (`security.protocol=SASL_SSL`); repeatable.
    #[arg(long = "kafka-option", value_parser = property)]
    pub kafka_options: Vec<(String, String)>,
    /// The consumer group: replicas with the same group share the partitions.
    #[arg(long, env = "LOYALTY_GROUP", default_value = "loyalty")]
    pub group: String,
    /// The public order events topic.
    #[arg(long, env = "LOYALTY_TOPIC", default_value = "ordercast.order-events")]
    pub topic: String,
    /// Postgres URL of the service's own tables.
    #[arg(
        long,
        env = "LOYALTY_DATABASE_URL",
        default_value = "postgres://ordercast:ordercast@127.0.0.1:55432/ordercast",
        hide_env_values = true
    )]
    pub database_url: String,
    /// Schema of the service's tables (created if missing).
    #[arg(long, env = "LOYALTY_SCHEMA", default_value = "loyalty")]
    pub schema: String,
    /// Read the topic again from its beginning (a replay); already applied events change nothing.
    #[arg(long)]
    pub from_beginning: bool,
}

fn property(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| "expected `property=value`".to_owned())?;
    Ok((name.trim().to_owned(), value.to_owned()))
}
