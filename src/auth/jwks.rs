//! The identity provider's JWKS, cached for as long as its `Cache-Control`
//! allows and fetched again early when a token names a `kid` it lacks (the
//! provider rotated its keys). Fetches are single-flight and at most one per
//! refresh interval, so tokens with made-up `kid`s cannot hammer the provider;
//! if the provider is unreachable the last keys stay in use.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::jwk::Jwk;
use reqwest::header::{ACCEPT, CACHE_CONTROL};
use serde::Deserialize;
use tokio::time::Instant;

use super::keys::VerifyingKey;
use super::AuthError;

/// Used when the provider sends no `max-age`.
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);
/// Keys are fetched again at least this often, whatever the provider says.
const LONGEST_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_JWKS_BYTES: usize = 1 << 20;

/// Why the JWKS could not be used; logged, and the request is told to retry.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("fetching the JWKS failed: {0}")]
    Fetch(#[from] reqwest::Error),
    #[error("the JWKS answered HTTP {0}")]
    Status(reqwest::StatusCode),
    #[error("the JWKS is larger than 1 MiB")]
    TooLarge,
    #[error("the JWKS is not a JSON object with a `keys` array: {0}")]
    NotJwks(serde_json::Error),
    #[error("the JWKS has no signing key of a supported type (RSA, EC P-256/P-384, Ed25519)")]
    NoUsableKey,
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<serde_json::Value>,
}

struct Cached {
    keys: Arc<Vec<VerifyingKey>>,
    fresh_until: Instant,
}

#[derive(Default)]
struct State {
    cached: Option<Cached>,
    last_attempt: Option<Instant>,
}

pub struct JwksCache {
    url: url::Url,
    http: reqwest::Client,
    refresh_interval: Duration,
    state: RwLock<State>,
    fetching: tokio::sync::Mutex<()>,
}

impl JwksCache {
    pub fn new(url: url::Url, http: reqwest::Client, refresh_interval: Duration) -> Self {
        Self {
            url,
            http,
            refresh_interval,
            state: RwLock::default(),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// The keys a token with this `kid` may be verified with (all of them when
    /// it names none). `UnknownKey` when even fresh keys lack it.
    pub async fn keys_for(&self, kid: Option<&str>) -> Result<Arc<Vec<VerifyingKey>>, AuthError> {
        let (keys, fresh) = self.snapshot();
        let keys = match keys {
            Some(keys) if fresh => keys,
            stale => self
                .refresh_if_allowed()
                .await
                .or(stale)
                .ok_or(AuthError::KeysUnavailable)?,
        };
        let Some(kid) = kid else {
            return Ok(keys);
        };
        if has_kid(&keys, kid) {
            return Ok(keys);
        }
        match self.refresh_if_allowed().await {
            Some(refreshed) if has_kid(&refreshed, kid) => Ok(refreshed),
            _ => Err(AuthError::UnknownKey),
        }
    }

    /// Fetches now, unless a fetch happened within the refresh interval; returns the current keys.
    pub async fn refresh_if_allowed(&self) -> Option<Arc<Vec<VerifyingKey>>> {
        let _single_flight = self.fetching.lock().await;
        let recent = {
            let state = self.state.read().expect("JWKS state lock");
            state
                .last_attempt
                .is_some_and(|at| at.elapsed() < self.refresh_interval)
        };
        if !recent {
            self.state.write().expect("JWKS state lock").last_attempt = Some(Instant::now());
            match self.fetch().await {
                Ok((keys, max_age)) => {
                    let count = keys.len();
                    let max_age = max_age.clamp(self.refresh_interval, LONGEST_MAX_AGE);
                    self.state.write().expect("JWKS state lock").cached = Some(Cached {
                        keys: Arc::new(keys),
                        fresh_until: Instant::now() + max_age,
                    });
                    tracing::debug!(url = %self.url, keys = count, ?max_age, "fetched the JWKS");
                }
                Err(error) => tracing::warn!(url = %self.url, %error, "cannot refresh the identity provider's keys"),
            }
        }
        self.snapshot().0
    }

    fn snapshot(&self) -> (Option<Arc<Vec<VerifyingKey>>>, bool) {
        let state = self.state.read().expect("JWKS state lock");
        match &state.cached {
            Some(cached) => (Some(cached.keys.clone()), Instant::now() < cached.fresh_until),
            None => (None, false),
        }
    }

    async fn fetch(&self) -> Result<(Vec<VerifyingKey>, Duration), JwksError> {
        let response = self
            .http
            .get(self.url.clone())
            .header(ACCEPT, "application/json")
            .timeout(FETCH_TIMEOUT)
            .send()
            .await?;
        if !response.status().is_success() {
            return Err(JwksError::Status(response.status()));
        }
        let max_age = response
            .headers()
            .get(CACHE_CONTROL)
            .and_then(|value| value.to_str().ok())
            .map_or(DEFAULT_MAX_AGE, max_age_of);
        if response.content_length().is_some_and(|len| len > MAX_JWKS_BYTES as u64) {
            return Err(JwksError::TooLarge);
        }
        let body = response.bytes().await?;
        if body.len() > MAX_JWKS_BYTES {
            return Err(JwksError::TooLarge);
        }
        Ok((usable_keys(&body)?, max_age))
    }
}

fn has_kid(keys: &[VerifyingKey], kid: &str) -> bool {
    keys.iter().any(|key| key.kid.as_deref() == Some(kid))
}

/// The signing keys of a JWKS document. Entries of other kinds (encryption
/// keys, unsupported curves) are skipped rather than failing the whole set.
fn usable_keys(body: &[u8]) -> Result<Vec<VerifyingKey>, JwksError> {
    let raw: RawJwks = serde_json::from_slice(body).map_err(JwksError::NotJwks)?;
    let keys: Vec<VerifyingKey> = raw
        .keys
        .into_iter()
        .filter_map(|entry| serde_json::from_value::<Jwk>(entry).ok())
        .filter_map(|jwk| VerifyingKey::from_jwk(&jwk))
        .collect();
    if keys.is_empty() {
        return Err(JwksError::NoUsableKey);
    }
    Ok(keys)
}

/// `max-age` of a `Cache-Control` value; `no-cache` and `no-store` mean zero
/// (the caller raises it to the refresh interval).
fn max_age_of(cache_control: &str) -> Duration {
    let mut max_age = DEFAULT_MAX_AGE;
    for directive in cache_control.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-cache" || lower == "no-store" {
            return Duration::ZERO;
        }
        if let Some(seconds) = lower.strip_prefix("max-age=") {
            if let Ok(seconds) = seconds.trim_matches('"').parse::<u64>() {
                max_age = Duration::from_secs(seconds);
            }
        }
    }
    max_age
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_sets_the_lifetime() {
        assert_eq!(max_age_of("public, max-age=600"), Duration::from_secs(600));
        assert_eq!(max_age_of("Max-Age=\"60\", must-revalidate"), Duration::from_secs(60));
        assert_eq!(max_age_of("no-store"), Duration::ZERO);
        assert_eq!(max_age_of("max-age=60, no-cache"), Duration::ZERO);
        assert_eq!(max_age_of("public"), DEFAULT_MAX_AGE);
        assert_eq!(max_age_of("max-age=soon"), DEFAULT_MAX_AGE);
    }

    #[test]
    fn a_jwks_keeps_its_signing_keys_and_skips_the_rest() {
        let body = serde_json::json!({ "keys": [
            { "kty": "RSA", "kid": "enc", "use": "enc", "alg": "RSA-OAEP", "n": "sXch", "e": "AQAB" },
            { "kty": "EC", "kid": "p256", "crv": "P-256",
              "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0" },
            { "kty": "oct", "kid": "secret", "k": "c2VjcmV0" },
            { "kty": "weird" }
        ]});
        let keys = usable_keys(body.to_string().as_bytes()).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("p256"));
        assert!(matches!(usable_keys(b"{\"keys\":[]}"), Err(JwksError::NoUsableKey)));
        assert!(matches!(usable_keys(b"[]"), Err(JwksError::NotJwks(_))));
    }
}
