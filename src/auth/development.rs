//! Development tokens: HS256 with a shared secret, naming the customer id in
//! `sub`. `ordercast token`, `make run`, the tests and the bench mint them; a
//! server accepts them only in a development run.

use std::time::Duration;

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde::Serialize;

use super::unix_now;
use crate::domain::CustomerId;

#[derive(Serialize)]
struct DevelopmentClaims {
    sub: String,
    iat: u64,
    exp: u64,
}

/// Mints development tokens with the HS256 secret.
#[derive(Clone)]
pub struct DevelopmentTokens {
    key: EncodingKey,
}

impl std::fmt::Debug for DevelopmentTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DevelopmentTokens(..)")
    }
}

impl DevelopmentTokens {
    pub fn new(secret: &str) -> Self {
        Self {
            key: EncodingKey::from_secret(secret.as_bytes()),
        }
    }

    /// A token for `customer` valid for `ttl` from now.
    pub fn mint(&self, customer: CustomerId, ttl: Duration) -> String {
        let now = unix_now();
        self.mint_with_times(customer, now, now.saturating_add(ttl.as_secs()))
    }

    /// A token with explicit issue and expiry times (seconds since the epoch); tests use it for expired tokens.
    pub fn mint_with_times(&self, customer: CustomerId, iat: u64, exp: u64) -> String {
        let claims = DevelopmentClaims {
            sub: customer.to_string(),
            iat,
            exp,
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.key).expect("HS256 signing cannot fail")
    }
}
