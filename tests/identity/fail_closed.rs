//! `serve` fails closed: without a provider key it refuses to start unless the
//! run says it is a development run, and tells the operator what to set.

use std::time::Duration;

use tokio::process::Command;

#[tokio::test]
async fn serve_refuses_to_start_without_a_real_key_outside_a_development_run() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ordercast"));
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_remove("ORDERCAST_DEV")
        .env_remove("ORDERCAST_JWT_JWKS_URL")
        .env_remove("ORDERCAST_JWT_PUBLIC_KEY_FILE")
        .env("DATABASE_URL", crate::common::database_url())
        .env("KAFKA_BROKERS", crate::common::kafka_brokers())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .expect("serve stops at once")
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    for hint in [
        "ORDERCAST_JWT_JWKS_URL",
        "ORDERCAST_JWT_PUBLIC_KEY_FILE",
        "ORDERCAST_DEV=1",
    ] {
        assert!(stderr.contains(hint), "the refusal names {hint}: {stderr}");
    }
}

#[tokio::test]
async fn a_public_key_file_that_is_not_a_key_stops_serve_with_its_path() {
    let not_a_key = crate::provider::fixture("README.md");
    let output = Command::new(env!("CARGO_BIN_EXE_ordercast"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("ORDERCAST_JWT_PUBLIC_KEY_FILE", &not_a_key)
        .env("DATABASE_URL", crate::common::database_url())
        .env("KAFKA_BROKERS", crate::common::kafka_brokers())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(30), output)
        .await
        .expect("serve stops at once")
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("is not a PEM public key") && stderr.contains("README.md"),
        "{stderr}"
    );
}
