//! Command line and environment: where Kafka and Postgres are, which group to join.

use chrono::{DateTime, Utc};
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
    #[arg(long, conflicts_with = "replay_since")]
    pub from_beginning: bool,
    /// Read the topic again from its first event at or after this time (RFC 3339, e.g.
    /// `2026-12-04T09:00:00Z`): a replay since an incident, without the whole retention.
    #[arg(long, value_parser = timestamp)]
    pub replay_since: Option<DateTime<Utc>>,
}

impl Config {
    /// Where the group's offsets go before it starts consuming, if anywhere.
    pub fn replay_from(&self) -> Option<ReplayFrom> {
        match (self.from_beginning, self.replay_since) {
            (true, _) => Some(ReplayFrom::Beginning),
            (false, Some(since)) => Some(ReplayFrom::Time(since)),
            (false, None) => None,
        }
    }
}

/// The start of a replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayFrom {
    Beginning,
    Time(DateTime<Utc>),
}

fn timestamp(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&Utc))
        .map_err(|error| format!("`{text}` is not an RFC 3339 time ({error}), e.g. 2026-12-04T09:00:00Z"))
}

fn property(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| "expected `property=value`".to_owned())?;
    Ok((name.trim().to_owned(), value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Config::try_parse_from(std::iter::once("loyalty").chain(args.iter().copied()))
    }

    #[test]
    fn a_replay_starts_at_the_beginning_or_at_a_time() {
        assert_eq!(parse(&[]).unwrap().replay_from(), None);
        assert_eq!(
            parse(&["--from-beginning"]).unwrap().replay_from(),
            Some(ReplayFrom::Beginning)
        );
        let since = parse(&["--replay-since", "2026-12-04T10:00:00+01:00"]).unwrap();
        let expected = DateTime::parse_from_rfc3339("2026-12-04T09:00:00Z").unwrap();
        assert_eq!(
            since.replay_from(),
            Some(ReplayFrom::Time(expected.with_timezone(&Utc)))
        );
    }

    #[test]
    fn a_replay_time_must_be_rfc_3339_and_alone() {
        let error = parse(&["--replay-since", "yesterday"]).unwrap_err().to_string();
        assert!(error.contains("not an RFC 3339 time"), "{error}");
        assert!(parse(&["--from-beginning", "--replay-since", "2026-12-04T09:00:00Z"]).is_err());
    }
}
