//! What a newcomer or an operator sees when something is wrong: within seconds, one line that
//! says what to do; readiness says why; the process keeps running (no crash loop) and librdkafka
//! does not flood the log.

use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;
use tokio::time::Instant;

use crate::common::process::{serve_command, ServeProcess};
use crate::{sasl_env, secured_brokers, stack_ca, tls_database_url, WRONG_CA};

fn serve() -> Command {
    serve_command(env!("CARGO_BIN_EXE_ordercast"))
}

/// Log entries at warn or error, as `(level, message)`.
fn complaints(instance: &ServeProcess) -> Vec<(String, String)> {
    instance
        .log_lines()
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|entry| matches!(entry["level"].as_str(), Some("WARN" | "ERROR")))
        .map(|entry| {
            (
                entry["level"].as_str().unwrap_or_default().to_owned(),
                entry["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Waits until `path` answers 503 with a body for which `explains` holds; returns that body.
async fn wait_for_refusal(instance: &ServeProcess, path: &str, explains: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let answer = instance.get(path).await;
        if let Some((503, body)) = &answer {
            if explains(body) {
                return body.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "{}: {path} answered {answer:?}",
            instance.name
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// After `settle`, exactly one complaint in the log, which contains every one of `words`, and the
/// instance still runs.
async fn one_clear_line(mut instance: ServeProcess, settle: Duration, words: &[&str]) {
    tokio::time::sleep(settle).await;
    let complaints = complaints(&instance);
    assert_eq!(complaints.len(), 1, "{}: one line, not {complaints:#?}", instance.name);
    let (level, message) = &complaints[0];
    assert_eq!(level, "ERROR", "{message}");
    for word in words {
        assert!(
            message.contains(word),
            "{}: `{word}` missing from: {message}",
            instance.name
        );
    }
    assert!(
        !instance.log_lines().iter().any(|l| l.contains("librdkafka")),
        "librdkafka's own lines stay at debug level"
    );
    assert!(instance.is_running(), "{}: no crash, no crash loop", instance.name);
}

#[tokio::test]
async fn a_wrong_sasl_password_is_one_line_and_cdc_not_ready() {
    let mut command = serve();
    command
        .env("KAFKA_BROKERS", secured_brokers())
        .envs(sasl_env("SCRAM-SHA-512", "not-the-password", &stack_ca()));
    let instance = ServeProcess::start("wrong-sasl-password", "secured", command).await;
    let body = wait_for_refusal(&instance, "/readyz/cdc", |b| {
        b["reason"] == "Kafka refused the SASL credentials"
    })
    .await;
    assert_eq!(body["status"], "down");
    one_clear_line(
        instance,
        Duration::from_secs(6),
        &[
            "Kafka refused the SASL credentials",
            "ORDERCAST_KAFKA_SASL_PASSWORD",
            &secured_brokers(),
        ],
    )
    .await;
}

#[tokio::test]
async fn a_wrong_kafka_root_certificate_is_one_line_and_cdc_not_ready() {
    let mut command = serve();
    command
        .env("KAFKA_BROKERS", secured_brokers())
        .envs(sasl_env("SCRAM-SHA-512", "ordercast", WRONG_CA));
    let instance = ServeProcess::start("wrong-kafka-ca", "secured", command).await;
    wait_for_refusal(&instance, "/readyz/cdc", |b| {
        b["reason"] == "the TLS handshake with Kafka failed"
    })
    .await;
    one_clear_line(
        instance,
        Duration::from_secs(6),
        &["TLS handshake with Kafka failed", "ORDERCAST_KAFKA_SSL_CA_LOCATION"],
    )
    .await;
}

#[tokio::test]
async fn a_wrong_postgres_root_certificate_is_one_line_and_not_ready() {
    let mut command = serve();
    command.env("DATABASE_URL", tls_database_url(WRONG_CA));
    let instance = ServeProcess::start("wrong-postgres-ca", "secured", command).await;
    let body = wait_for_refusal(&instance, "/readyz", |b| {
        b["reason"].as_str().is_some_and(|r| r.contains("cannot connect"))
    })
    .await;
    assert_eq!(body["status"], "postgres unreachable", "{body}");
    let reason = body["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("sslmode=verify-full") && reason.contains("TLS"),
        "{body}"
    );
    let graphql = reqwest::Client::new()
        .post(format!("{}/graphql", crate::common::Endpoint::base_url(&instance)))
        .json(&serde_json::json!({ "query": "{ __typename }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        graphql.status().as_u16(),
        503,
        "refused at once, not after a pool timeout"
    );
    assert!(graphql.headers().contains_key("retry-after"));
    let answer: Value = graphql.json().await.unwrap();
    assert_eq!(answer["errors"][0]["extensions"]["code"], "UNAVAILABLE", "{answer}");
    one_clear_line(
        instance,
        Duration::from_secs(5),
        &["cannot connect to Postgres at", "sslmode=verify-full", "sslrootcert"],
    )
    .await;
}

#[tokio::test]
async fn postgres_away_is_said_within_seconds_with_where_and_what_to_do() {
    let mut command = serve();
    command.env("DATABASE_URL", "postgres://ordercast:ordercast@127.0.0.1:9/ordercast");
    let started = Instant::now();
    let instance = ServeProcess::start("postgres-away", "secured", command).await;
    wait_for_refusal(&instance, "/readyz", |b| b["status"] == "postgres unreachable").await;
    while complaints(&instance).is_empty() {
        assert!(started.elapsed() < Duration::from_secs(5), "said within seconds");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    one_clear_line(
        instance,
        Duration::from_secs(5),
        &["127.0.0.1:9/ordercast", "Connection refused", "make stack"],
    )
    .await;
}

#[tokio::test]
async fn kafka_away_is_one_line_not_a_flood() {
    let mut command = serve();
    command.env("KAFKA_BROKERS", "127.0.0.1:9");
    let instance = ServeProcess::start("kafka-away", "secured", command).await;
    wait_for_refusal(&instance, "/readyz/cdc", |b| {
        b["reason"] == "all Kafka brokers are down"
    })
    .await;
    one_clear_line(instance, Duration::from_secs(8), &["127.0.0.1:9", "make stack"]).await;
}

#[tokio::test]
async fn logs_piped_to_a_file_carry_no_colour_codes() {
    let mut command = serve();
    command
        .args(["--log-format", "text"])
        .env("KAFKA_BROKERS", "127.0.0.1:9");
    let mut child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    child.start_kill().unwrap();
    let output = child.wait_with_output().await.unwrap();
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(text.contains("serving GraphQL"), "{text}");
    assert!(!text.contains('\u{1b}'), "no ANSI escape codes: {text:?}");
}

#[tokio::test]
async fn a_property_ordercast_owns_or_librdkafka_does_not_know_stops_serve_with_the_reason() {
    for (settings, expected) in [
        (
            &[("ORDERCAST_KAFKA_GROUP_ID", "mine")][..],
            "`group.id` is set by ordercast",
        ),
        (&[("ORDERCAST_KAFKA_NO_SUCH_THING", "1")], "`no.such.thing`"),
        (
            &[
                ("ORDERCAST_KAFKA_SECURITY_PROTOCOL", "SSL"),
                ("ORDERCAST_KAFKA_SSL_CA_LOCATION", "/nonexistent/ca.pem"),
            ],
            "ssl.ca.location",
        ),
    ] {
        let mut command = serve();
        command.envs(settings.iter().copied()).kill_on_drop(true);
        let output = tokio::time::timeout(Duration::from_secs(20), command.output())
            .await
            .unwrap_or_else(|_| panic!("{settings:?}: serve stops at once"))
            .unwrap();
        assert!(!output.status.success(), "{settings:?} refused");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{settings:?}: {stderr}");
    }
}
