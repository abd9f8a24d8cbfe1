//! Who is calling. A bearer token is verified against the configured keys
//! (an identity provider's JWKS or PEM key in production, the HS256
//! development secret in development runs), then mapped to a customer: a
//! provider's subject through `customers.external_subject` (created on first
//! sight when provisioning is on), a development token's `sub` as the id itself.

mod claims;
mod development;
mod jwks;
mod keys;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::DecodingKey;
use sea_orm::DatabaseConnection;
use secrecy::ExposeSecret;
use serde_json::Value;
use uuid::Uuid;

use crate::config::{AuthConfig, ConfigError, KeySource};
use crate::db;
use crate::domain::CustomerId;

pub use development::DevelopmentTokens;
pub use jwks::JwksError;

use keys::{ClaimRules, KeySet, Verifier, VerifyingKey};

/// Why a request could not be authenticated. Each message tells the client
/// what to fix; only the two `Unavailable` kinds are worth retrying as is.
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
    #[error("the token is not valid yet (`nbf`)")]
    NotYetValid,
    #[error("the token was issued by another issuer (`iss`)")]
    WrongIssuer,
    #[error("the token is meant for another audience (`aud`)")]
    WrongAudience,
    #[error("the token's signing algorithm is not accepted for its key")]
    DisallowedAlgorithm,
    #[error("the token is signed with a key the identity provider does not publish (`kid`)")]
    UnknownKey,
    #[error("the token has no `{0}` claim")]
    MissingClaim(String),
    #[error("the token's subject is not a customer id")]
    BadSubject,
    #[error("the token's `{0}` claim must be a non-empty string of at most 255 characters")]
    BadCustomerClaim(String),
    #[error("no customer is linked to this identity")]
    UnknownCustomer,
    #[error("the identity provider's keys cannot be fetched right now; retry shortly")]
    KeysUnavailable,
    #[error("customers cannot be looked up right now; retry shortly")]
    DirectoryUnavailable,
}

impl AuthError {
    /// True when the same token may succeed later: the failure was ours, not the token's.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, AuthError::KeysUnavailable | AuthError::DirectoryUnavailable)
    }
}

/// Why `serve` cannot authenticate anyone with this configuration.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot read ORDERCAST_JWT_PUBLIC_KEY_FILE {path}: {source}")]
    UnreadableKey { path: PathBuf, source: std::io::Error },
    #[error("ORDERCAST_JWT_PUBLIC_KEY_FILE {path} is not a PEM public key (RSA, EC P-256/P-384 or Ed25519)")]
    NotAPublicKey { path: PathBuf },
    #[error("cannot read ORDERCAST_JWT_JWKS_CA_FILE {path}: {reason}")]
    UnusableCa { path: PathBuf, reason: String },
    #[error("cannot build the HTTP client for the JWKS: {0}")]
    HttpClient(#[from] reqwest::Error),
}

/// An authenticated customer and when their login stops being valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub customer_id: CustomerId,
    /// The token's `exp` plus the leeway.
    pub expires_at: SystemTime,
}

impl Caller {
    pub fn is_expired(&self) -> bool {
        SystemTime::now() >= self.expires_at
    }

    /// When the login expires, on tokio's clock.
    pub fn deadline(&self) -> tokio::time::Instant {
        let left = self
            .expires_at
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        tokio::time::Instant::now() + left
    }
}

/// How a verified token names its customer.
enum Identity {
    /// Development tokens: `sub` is the customer id.
    CustomerId,
    /// Provider tokens: a claim holds the provider's subject.
    Subject {
        claim: String,
        provision: bool,
        db: DatabaseConnection,
        /// Subject to customer id. A link never changes once made, so entries never go stale.
        known: quick_cache::sync::Cache<String, Uuid>,
    },
}

/// Turns bearer tokens into callers; one per instance, shared by HTTP and WebSocket.
pub struct Authenticator {
    verifier: Verifier,
    identity: Identity,
    /// What the keys are, for the startup log.
    pub description: String,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Authenticator({})", self.description)
    }
}

impl Authenticator {
    /// Reads the configured keys. Fails closed: outside a development run a
    /// provider key (JWKS or PEM) is required.
    pub fn from_config(config: &AuthConfig, db: DatabaseConnection) -> Result<Self, AuthSetupError> {
        let rules = ClaimRules {
            leeway_secs: config.jwt_leeway_secs,
            issuer: config.jwt_issuer.clone(),
            audience: config.jwt_audience.clone(),
        };
        let (keys, description) = match config.key_source()? {
            KeySource::DevelopmentSecret => {
                let secret = config.jwt_secret.expose_secret().as_bytes();
                let which = if config.is_development_secret() {
                    "the built-in development secret"
                } else {
                    "ORDERCAST_JWT_SECRET"
                };
                let description = format!("HS256 development tokens signed with {which}");
                return Ok(Self {
                    verifier: Verifier::new(KeySet::Secret(DecodingKey::from_secret(secret)), rules),
                    identity: Identity::CustomerId,
                    description,
                });
            }
            KeySource::PublicKeyFile(path) => {
                let pem = std::fs::read(&path).map_err(|source| AuthSetupError::UnreadableKey {
                    path: path.clone(),
                    source,
                })?;
                let key =
                    VerifyingKey::from_pem(&pem).ok_or_else(|| AuthSetupError::NotAPublicKey { path: path.clone() })?;
                (
                    KeySet::Fixed(Arc::new(vec![key])),
                    format!("public key {}", path.display()),
                )
            }
            KeySource::Jwks(url) => {
                let mut http = reqwest::Client::builder().user_agent(concat!("ordercast/", env!("CARGO_PKG_VERSION")));
                if let Some(path) = &config.jwt_jwks_ca_file {
                    let unusable = |reason: String| AuthSetupError::UnusableCa {
                        path: path.clone(),
                        reason,
                    };
                    let pem = std::fs::read(path).map_err(|e| unusable(e.to_string()))?;
                    let ca = reqwest::Certificate::from_pem(&pem).map_err(|e| unusable(e.to_string()))?;
                    http = http.add_root_certificate(ca);
                }
                let description = format!("JWKS {url}");
                let cache = jwks::JwksCache::new(url, http.build()?, config.jwt_jwks_refresh_interval);
                (KeySet::Jwks(cache), description)
            }
        };
        Ok(Self {
            verifier: Verifier::new(keys, rules),
            identity: Identity::Subject {
                claim: config.jwt_customer_claim.clone(),
                provision: config.jwt_provision,
                db,
                known: quick_cache::sync::Cache::new(100_000),
            },
            description,
        })
    }

    /// True for a development run's HS256 secret.
    pub fn is_development(&self) -> bool {
        matches!(self.identity, Identity::CustomerId)
    }

    /// Fetches the JWKS now (if one is configured), so the first request does not wait for it.
    pub async fn warm_up(&self) {
        if let Some(cache) = self.verifier.jwks() {
            cache.refresh_if_allowed().await;
        }
    }

    /// Verifies an `Authorization` header value (`Bearer <token>`, scheme case-insensitive).
    pub async fn authenticate_header(&self, value: &str) -> Result<Caller, AuthError> {
        let (scheme, token) = value.trim().split_once(' ').ok_or(AuthError::MalformedHeader)?;
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(AuthError::MalformedHeader);
        }
        self.authenticate(token.trim()).await
    }

    pub async fn authenticate(&self, token: &str) -> Result<Caller, AuthError> {
        let verified = self.verifier.verify(token).await?;
        let customer_id = match &self.identity {
            Identity::CustomerId => verified
                .claims
                .get("sub")
                .and_then(Value::as_str)
                .and_then(|sub| Uuid::parse_str(sub).ok())
                .ok_or(AuthError::BadSubject)?,
            Identity::Subject {
                claim,
                provision,
                db,
                known,
            } => {
                let subject =
                    claims::claim_at(&verified.claims, claim).ok_or_else(|| AuthError::MissingClaim(claim.clone()))?;
                let subject = claims::subject_of(subject).ok_or_else(|| AuthError::BadCustomerClaim(claim.clone()))?;
                match known.get(&subject) {
                    Some(id) => id,
                    None => {
                        let id = customer_of(db, &subject, *provision, &verified.claims).await?;
                        known.insert(subject, id);
                        id
                    }
                }
            }
        };
        Ok(Caller {
            customer_id,
            expires_at: verified.valid_until,
        })
    }
}

async fn customer_of(
    db: &DatabaseConnection,
    subject: &str,
    provision: bool,
    claims: &serde_json::Map<String, Value>,
) -> Result<Uuid, AuthError> {
    let unavailable = |error: crate::domain::DomainError| {
        tracing::warn!(%error, "cannot look up the customer of a provider subject");
        AuthError::DirectoryUnavailable
    };
    if let Some(id) = db::customer_of_subject(db, subject).await.map_err(unavailable)? {
        return Ok(id);
    }
    if !provision {
        return Err(AuthError::UnknownCustomer);
    }
    let id = db::provision_customer(db, subject, &claims::profile_of(claims))
        .await
        .map_err(unavailable)?;
    tracing::info!(customer = %id, "provisioned a customer for a new provider subject");
    Ok(id)
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn development(secret: &str) -> Authenticator {
        let db = sea_orm::DatabaseConnection::default();
        Authenticator::from_config(&AuthConfig::development(secret), db).unwrap()
    }

    #[tokio::test]
    async fn a_development_token_names_its_customer() {
        let tokens = DevelopmentTokens::new("secret");
        let customer = Uuid::now_v7();
        let header = format!("Bearer {}", tokens.mint(customer, Duration::from_secs(60)));
        let caller = development("secret").authenticate_header(&header).await.unwrap();
        assert_eq!(caller.customer_id, customer);
        assert!(!caller.is_expired());
    }

    #[tokio::test]
    async fn every_bad_token_has_its_own_reason() {
        let auth = development("secret");
        let customer = Uuid::now_v7();
        let other = DevelopmentTokens::new("another secret").mint(customer, Duration::from_secs(60));
        assert_eq!(auth.authenticate(&other).await, Err(AuthError::BadSignature));
        let now = unix_now();
        let expired = DevelopmentTokens::new("secret").mint_with_times(customer, now - 7200, now - 3600);
        assert_eq!(auth.authenticate(&expired).await, Err(AuthError::Expired));
        assert_eq!(auth.authenticate("not.a.jwt").await, Err(AuthError::MalformedToken));
        assert_eq!(
            auth.authenticate_header("Basic abc").await,
            Err(AuthError::MalformedHeader)
        );
        assert_eq!(
            auth.authenticate_header("Bearer").await,
            Err(AuthError::MalformedHeader)
        );
    }

    #[test]
    fn outside_a_development_run_a_provider_key_is_required() {
        let mut config = AuthConfig::development("secret");
        config.dev = false;
        let refused = Authenticator::from_config(&config, sea_orm::DatabaseConnection::default()).unwrap_err();
        assert!(refused.to_string().contains("ORDERCAST_JWT_JWKS_URL"), "{refused}");
    }
}
