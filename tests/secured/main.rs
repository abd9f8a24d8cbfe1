//! ordercast on secured infrastructure, as production runs it: Kafka over SASL_SSL (the local
//! stack's listener on 19094) and Postgres over TLS with `sslmode=verify-full`, both verified
//! against the CA `make stack` generates. And what an operator sees when a credential or a
//! certificate is wrong, or a service is away: one clear line, a readiness reason, no crash loop,
//! and never a secret. Needs the real stack (`make stack`).

#[path = "../common/mod.rs"]
mod common;

mod failures;
mod secrets;
mod tls;

use ordercast::config::KafkaConfig;

/// The CA that signed the stack's Postgres and Kafka certificates.
pub fn stack_ca() -> String {
    let ca = common::stack::repo().join(".stack/tls/ca.pem");
    assert!(ca.exists(), "{} is missing: run `make stack`", ca.display());
    ca.display().to_string()
}

/// A CA bundle that did not sign the stack's certificates (the public roots).
pub const WRONG_CA: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The stack's SASL_SSL listener.
pub fn secured_brokers() -> String {
    let port = std::env::var("ORDERCAST_STACK_KAFKA_SASL_PORT").unwrap_or_else(|_| "19094".to_owned());
    format!("127.0.0.1:{port}")
}

/// The stack's database over TLS, its certificate verified against `root` (host name included).
pub fn tls_database_url(root: &str) -> String {
    let url = common::database_url();
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}sslmode=verify-full&sslrootcert={root}")
}

/// `(name, value)` pairs of the librdkafka properties for the secured listener, as environment
/// variables would carry them.
pub fn sasl_env(mechanism: &str, password: &str, ca: &str) -> Vec<(String, String)> {
    [
        ("ORDERCAST_KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
        ("ORDERCAST_KAFKA_SASL_MECHANISM", mechanism),
        ("ORDERCAST_KAFKA_SASL_USERNAME", "ordercast"),
        ("ORDERCAST_KAFKA_SASL_PASSWORD", password),
        ("ORDERCAST_KAFKA_SSL_CA_LOCATION", ca),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The same properties as an in-process configuration.
pub fn sasl_kafka_config(mechanism: &str, password: &str, ca: &str) -> KafkaConfig {
    let mut kafka = KafkaConfig::new(secured_brokers());
    kafka
        .add_env_options(
            sasl_env(mechanism, password, ca)
                .into_iter()
                .map(|(k, v)| (k.into(), v.into())),
        )
        .expect("valid properties");
    kafka
}
