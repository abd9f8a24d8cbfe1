//! Bearer tokens: HS256 JWTs whose `sub` is the customer id.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{decode, encode, errors::ErrorKind, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::CustomerId;

/// Why a request could not be authenticated. Each message tells the client what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("authentication required: send `Authorization: Bearer <token>`")]
    Missing,
    #[error("the authorization header must be `Bearer <token>`")]
    MalformedHeader,
    #[error("the token is malformed")]
    MalformedToken,
    #[error("the token signature is invalid")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token's subject is not a customer id")]
    BadSubject,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iat: u64,
    exp: u64,
}

/// An authenticated customer and when their token stops being valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub customer_id: CustomerId,
    pub expires_at: SystemTime,
}

/// Signs and verifies tokens with one shared secret.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKeys(..)")
    }
}

impl TokenKeys {
    pub fn new(secret: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 5;
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    /// A token for `customer` valid for `ttl` from now.
    pub fn mint(&self, customer: CustomerId, ttl: Duration) -> String {
        let now = unix_now();
        self.mint_with_times(customer, now, now.saturating_add(ttl.as_secs()))
    }

    /// A token with explicit issue and expiry times (seconds since the epoch); tests use it for expired tokens.
    pub fn mint_with_times(&self, customer: CustomerId, iat: u64, exp: u64) -> String {
        let claims = Claims {
            sub: customer.to_string(),
            iat,
            exp,
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).expect("HS256 signing cannot fail")
    }

    pub fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let data = decode::<Claims>(token, &self.decoding, &self.validation).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::InvalidSignature => AuthError::BadSignature,
            _ => AuthError::MalformedToken,
        })?;
        let customer_id = Uuid::parse_str(&data.claims.sub).map_err(|_| AuthError::BadSubject)?;
        Ok(Caller {
            customer_id,
            expires_at: UNIX_EPOCH + Duration::from_secs(data.claims.exp),
        })
    }

    /// Verifies an `Authorization` header value (`Bearer <token>`, scheme case-insensitive).
    pub fn verify_header(&self, value: &str) -> Result<Caller, AuthError> {
        let (scheme, token) = value.trim().split_once(' ').ok_or(AuthError::MalformedHeader)?;
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(AuthError::MalformedHeader);
        }
        self.verify(token.trim())
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minted_token_verifies_to_its_customer() {
        let keys = TokenKeys::new("secret");
        let customer = Uuid::now_v7();
        let caller = keys
            .verify_header(&format!("Bearer {}", keys.mint(customer, Duration::from_secs(60))))
            .unwrap();
        assert_eq!(caller.customer_id, customer);
    }

    #[test]
    fn every_bad_token_has_its_own_reason() {
        let keys = TokenKeys::new("secret");
        let customer = Uuid::now_v7();
        let other = TokenKeys::new("another secret").mint(customer, Duration::from_secs(60));
        assert_eq!(keys.verify(&other), Err(AuthError::BadSignature));
        let now = unix_now();
        let expired = keys.mint_with_times(customer, now - 7200, now - 3600);
        assert_eq!(keys.verify(&expired), Err(AuthError::Expired));
        assert_eq!(keys.verify("not.a.jwt"), Err(AuthError::MalformedToken));
        assert_eq!(keys.verify_header("Basic abc"), Err(AuthError::MalformedHeader));
        assert_eq!(keys.verify_header("Bearer"), Err(AuthError::MalformedHeader));
    }
}
