//! Signature and claim checks of a token against the configured keys.
//!
//! Every key carries the algorithms it may verify, from an allowlist per key
//! type, so a token cannot pick its own: no `none`, no HS256 against an RSA
//! public key (the classic confusion), no RS256 against an EC key.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::jwks::JwksCache;
use super::AuthError;

const RSA_ALGORITHMS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// A public key and the algorithms it may verify.
#[derive(Clone)]
pub struct VerifyingKey {
    pub kid: Option<String>,
    key: DecodingKey,
    algorithms: Vec<Algorithm>,
}

impl VerifyingKey {
    /// A JWKS entry, if it is a signing key of a supported type. An entry's
    /// `alg`, when present, narrows the allowlist to that one algorithm.
    pub fn from_jwk(jwk: &Jwk) -> Option<Self> {
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            return None;
        }
        let by_type: Vec<Algorithm> = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => RSA_ALGORITHMS.to_vec(),
            AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
                EllipticCurve::P256 => vec![Algorithm::ES256],
                EllipticCurve::P384 => vec![Algorithm::ES384],
                _ => return None,
            },
            AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => vec![Algorithm::EdDSA],
            // Symmetric keys never verify provider tokens: whoever reads them could sign.
            _ => return None,
        };
        let algorithms = match jwk.common.key_algorithm {
            None => by_type,
            Some(declared) => {
                let declared = declared.to_string().parse::<Algorithm>().ok()?;
                by_type.into_iter().filter(|alg| *alg == declared).collect()
            }
        };
        if algorithms.is_empty() {
            return None;
        }
        Some(Self {
            kid: jwk.common.key_id.clone(),
            key: DecodingKey::from_jwk(jwk).ok()?,
            algorithms,
        })
    }

    /// A PEM public key (`BEGIN PUBLIC KEY`, or `BEGIN RSA PUBLIC KEY`).
    pub fn from_pem(pem: &[u8]) -> Option<Self> {
        let (key, algorithms) = if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            (key, RSA_ALGORITHMS.to_vec())
        } else if let Ok(key) = DecodingKey::from_ec_pem(pem) {
            (key, vec![Algorithm::ES256, Algorithm::ES384])
        } else if let Ok(key) = DecodingKey::from_ed_pem(pem) {
            (key, vec![Algorithm::EdDSA])
        } else {
            return None;
        };
        Some(Self {
            kid: None,
            key,
            algorithms,
        })
    }

    fn allows(&self, algorithm: Algorithm) -> bool {
        self.algorithms.contains(&algorithm)
    }
}

/// Claim rules shared by every key: expiry with leeway, `nbf`, and `iss`/`aud` when configured.
#[derive(Debug, Clone)]
pub struct ClaimRules {
    pub leeway_secs: u64,
    pub issuer: Option<String>,
    pub audience: Vec<String>,
}

impl ClaimRules {
    fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        validation.leeway = self.leeway_secs;
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        validation.validate_aud = !self.audience.is_empty();
        if validation.validate_aud {
            validation.set_audience(&self.audience);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        validation
    }
}

/// A token that passed every check.
#[derive(Debug)]
pub struct VerifiedToken {
    pub claims: Map<String, Value>,
    /// `exp` plus the leeway: the last moment the token is accepted.
    pub valid_until: SystemTime,
}

/// Where the keys come from.
pub enum KeySet {
    /// HS256 development secret.
    Secret(DecodingKey),
    /// Fixed public keys (a PEM file).
    Fixed(Arc<Vec<VerifyingKey>>),
    /// An identity provider's JWKS, cached and refreshed.
    Jwks(JwksCache),
}

/// Verifies tokens against a key set and the claim rules.
pub struct Verifier {
    keys: KeySet,
    rules: ClaimRules,
}

impl Verifier {
    pub fn new(keys: KeySet, rules: ClaimRules) -> Self {
        Self { keys, rules }
    }

    pub fn jwks(&self) -> Option<&JwksCache> {
        match &self.keys {
            KeySet::Jwks(cache) => Some(cache),
            _ => None,
        }
    }

    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, AuthError> {
        let header = decode_header(token).map_err(|_| unreadable_header(token))?;
        let algorithm = header.alg;
        let claims = match &self.keys {
            KeySet::Secret(key) => {
                if algorithm != Algorithm::HS256 {
                    return Err(AuthError::DisallowedAlgorithm);
                }
                let mut validation = self.rules.validation(Algorithm::HS256);
                // Development tokens carry neither; the provider's rules do not apply to them.
                validation.iss = None;
                validation.validate_aud = false;
                validation.set_required_spec_claims(&["exp", "sub"]);
                decode_claims(token, key, &validation)?
            }
            KeySet::Fixed(keys) => self.verify_with(token, algorithm, keys)?,
            KeySet::Jwks(cache) => {
                let keys = cache.keys_for(header.kid.as_deref()).await?;
                self.verify_with(token, algorithm, &keys)?
            }
        };
        let exp = claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or(AuthError::MalformedToken)?;
        Ok(VerifiedToken {
            claims,
            valid_until: UNIX_EPOCH + Duration::from_secs(exp.saturating_add(self.rules.leeway_secs)),
        })
    }

    /// Tries the keys that allow the token's algorithm; a bad signature with
    /// one of several kid-less keys moves on to the next.
    fn verify_with(
        &self,
        token: &str,
        algorithm: Algorithm,
        keys: &[VerifyingKey],
    ) -> Result<Map<String, Value>, AuthError> {
        let mut candidates = keys.iter().filter(|key| key.allows(algorithm)).peekable();
        if candidates.peek().is_none() {
            return Err(AuthError::DisallowedAlgorithm);
        }
        let validation = self.rules.validation(algorithm);
        let mut outcome = Err(AuthError::BadSignature);
        for key in candidates {
            outcome = decode_claims(token, &key.key, &validation);
            if outcome != Err(AuthError::BadSignature) {
                break;
            }
        }
        outcome
    }
}

/// A header jsonwebtoken cannot read: an algorithm it does not know (`none`
/// above all) is refused as such, anything else is malformed.
fn unreadable_header(token: &str) -> AuthError {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let header = token
        .split('.')
        .next()
        .and_then(|part| URL_SAFE_NO_PAD.decode(part).ok())
        .and_then(|json| serde_json::from_slice::<Value>(&json).ok());
    match header {
        Some(header)
            if header["alg"]
                .as_str()
                .is_some_and(|alg| alg.parse::<Algorithm>().is_err()) =>
        {
            AuthError::DisallowedAlgorithm
        }
        _ => AuthError::MalformedToken,
    }
}

fn decode_claims(token: &str, key: &DecodingKey, validation: &Validation) -> Result<Map<String, Value>, AuthError> {
    decode::<Map<String, Value>>(token, key, validation)
        .map(|data| data.claims)
        .map_err(|error| match error.kind() {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
            ErrorKind::InvalidAudience => AuthError::WrongAudience,
            ErrorKind::InvalidSignature => AuthError::BadSignature,
            ErrorKind::InvalidAlgorithm => AuthError::DisallowedAlgorithm,
            ErrorKind::MissingRequiredClaim(claim) => AuthError::MissingClaim(claim.clone()),
            _ => AuthError::MalformedToken,
        })
}
