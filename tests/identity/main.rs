//! Identity from a real identity provider's keys: RS256, ES256 and EdDSA tokens from a
//! JWKS served over HTTP (cached, rotated, never hammered), issuer, audience and
//! time checks, the attacks a token can try, claims mapped to customers and
//! provisioned once across instances, socket logins that expire with 4403, and
//! `serve` refusing to start without a real key. Needs the real stack (`make stack`).

#[path = "../common/mod.rs"]
mod common;

mod provider;

mod expiry;
mod fail_closed;
mod provisioning;
mod tokens;

use std::time::Duration;

use ordercast::config::AuthConfig;
use serde_json::{json, Value};

use common::{serve_config, spawn_app_with, TestApp};
use provider::{Provider, AUDIENCE, ISSUER};

/// A production configuration: the provider's JWKS, its issuer and our audience,
/// provisioning on, and a 1 s refresh interval so rotation tests are quick.
pub fn provider_auth(provider: &Provider) -> AuthConfig {
    let mut auth = AuthConfig::development("a secret no token here is signed with");
    auth.dev = false;
    auth.jwt_jwks_url = Some(provider.jwks_url.clone());
    auth.jwt_issuer = Some(ISSUER.to_owned());
    auth.jwt_audience = vec![AUDIENCE.to_owned()];
    auth.jwt_jwks_refresh_interval = Duration::from_secs(1);
    auth.jwt_provision = true;
    auth
}

pub async fn spawn_with_auth(auth: AuthConfig) -> TestApp {
    let mut config = serve_config();
    config.auth = auth;
    spawn_app_with(config).await
}

/// `{ me { id email displayName } }` with `token`: the whole response.
pub async fn me(app: &TestApp, token: &str) -> Value {
    app.graphql(Some(token), "{ me { id email displayName } }", json!({}))
        .await
}
