//! Secrets never reach a log line or `--help`: database, JWT and SASL passwords.

use std::time::Duration;

use tokio::process::Command;

use crate::{secured_brokers, stack_ca};

const DB_PASSWORD: &str = "db-secret-4f1c2a";
const JWT_SECRET: &str = "jwt-secret-9b7e3d";
const SASL_PASSWORD: &str = "sasl-secret-2c8d5e";
const SASL_FLAG_PASSWORD: &str = "sasl-flag-secret-7a6f1b";

fn with_secrets(command: &mut Command) -> &mut Command {
    command
        .env("DATABASE_URL", database_url_with_password(DB_PASSWORD))
        .env("ORDERCAST_DEV", "1")
        .env("ORDERCAST_JWT_SECRET", JWT_SECRET)
        .env("KAFKA_BROKERS", secured_brokers())
        .env("ORDERCAST_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
        .env("ORDERCAST_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
        .env("ORDERCAST_KAFKA_SASL_USERNAME", "ordercast")
        .env("ORDERCAST_KAFKA_SASL_PASSWORD", SASL_PASSWORD)
        .env("ORDERCAST_KAFKA_SSL_CA_LOCATION", stack_ca())
}

/// The stack's database with a password it refuses.
fn database_url_with_password(password: &str) -> String {
    let mut url = url::Url::parse(&crate::common::database_url()).unwrap();
    url.set_password(Some(password)).unwrap();
    url.into()
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in [DB_PASSWORD, JWT_SECRET, SASL_PASSWORD, SASL_FLAG_PASSWORD] {
        assert!(!text.contains(secret), "{what} printed {secret}:\n{text}");
    }
}

#[tokio::test]
async fn help_never_shows_a_secret() {
    for args in [vec!["serve", "--help"], vec!["token", "--help"], vec!["--help"]] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ordercast"));
        let output = with_secrets(command.args(&args)).output().await.unwrap();
        assert!(output.status.success());
        let help = String::from_utf8_lossy(&output.stdout);
        assert_no_secret(&format!("ordercast {}", args.join(" ")), &help);
    }
}

#[tokio::test]
async fn debug_logs_of_failing_logins_never_show_a_secret() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ordercast"));
    with_secrets(&mut command)
        .args(["serve", "--listen", "127.0.0.1:0", "--kafka-option"])
        .arg(format!("ssl.key.password={SASL_FLAG_PASSWORD}"))
        // Everything, librdkafka's and sqlx's lines included.
        .env("RUST_LOG", "trace")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    child.start_kill().unwrap();
    let output = child.wait_with_output().await.unwrap();
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        logs.contains("password authentication failed"),
        "the database refused the login (and said so): {logs}"
    );
    assert!(logs.contains("Kafka refused the SASL credentials"), "{logs}");
    assert!(
        logs.contains("sasl.username=ordercast"),
        "non-secret options are shown: {logs}"
    );
    assert_no_secret("serve at trace level", &logs);
}
