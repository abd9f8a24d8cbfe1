//! A stand-in identity provider: the JWKS of the fixture keys over real HTTP on
//! a random port (with the `Cache-Control` a real provider sends, and a count
//! of fetches), and tokens signed with the matching private keys.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

pub const ISSUER: &str = "https://id.test.example/";
pub const AUDIENCE: &str = "ordercast-api";

pub fn fixture(name: &str) -> PathBuf {
    crate::common::stack::repo().join("tests/fixtures/identity").join(name)
}

struct Published {
    kids: Vec<&'static str>,
    max_age_secs: u64,
}

#[derive(Clone)]
struct Shared {
    published: Arc<Mutex<Published>>,
    fetches: Arc<AtomicUsize>,
}

pub struct Provider {
    pub jwks_url: url::Url,
    shared: Shared,
}

impl Provider {
    /// Serves the JWKS of the fixture keys `kids` (`rsa-1`, `rsa-2`, `ec-1`, `ed-1`).
    pub async fn start(kids: &[&'static str], max_age_secs: u64) -> Provider {
        let shared = Shared {
            published: Arc::new(Mutex::new(Published {
                kids: kids.to_vec(),
                max_age_secs,
            })),
            fetches: Arc::default(),
        };
        let app = Router::new().route("/jwks", get(jwks)).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Provider {
            jwks_url: format!("http://{addr}/jwks").parse().unwrap(),
            shared,
        }
    }

    /// Rotates: from now on the JWKS lists exactly `kids`.
    pub fn publish(&self, kids: &[&'static str]) {
        self.shared.published.lock().unwrap().kids = kids.to_vec();
    }

    /// How many times the JWKS was fetched.
    pub fn fetches(&self) -> usize {
        self.shared.fetches.load(Ordering::SeqCst)
    }
}

async fn jwks(State(shared): State<Shared>) -> impl IntoResponse {
    shared.fetches.fetch_add(1, Ordering::SeqCst);
    let (kids, max_age) = {
        let published = shared.published.lock().unwrap();
        (published.kids.clone(), published.max_age_secs)
    };
    let keys: Vec<Value> = kids
        .iter()
        .map(|kid| serde_json::from_slice(&std::fs::read(fixture(&format!("{kid}.jwk.json"))).unwrap()).unwrap())
        .collect();
    (
        [(header::CACHE_CONTROL, format!("public, max-age={max_age}"))],
        axum::Json(json!({ "keys": keys })),
    )
}

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// Claims a provider would issue for `subject`: right issuer and audience, valid for 10 minutes.
pub fn claims(subject: &str) -> Value {
    json!({ "sub": subject, "iss": ISSUER, "aud": AUDIENCE, "iat": now(), "exp": now() + 600 })
}

/// `claims` signed by fixture key `kid` with its algorithm (RS256, ES256 or EdDSA), `kid` in the header.
pub fn sign(kid: &str, claims: &Value) -> String {
    sign_as(kid, kid, claims)
}

/// `claims` signed by fixture key `key` but naming `kid` in the header: a forgery, or a made-up key id.
pub fn sign_as(key: &str, kid: &str, claims: &Value) -> String {
    let pem = std::fs::read(fixture(&format!("{key}.key.pem"))).unwrap();
    let (algorithm, key) = if key.starts_with("ec") {
        (Algorithm::ES256, EncodingKey::from_ec_pem(&pem).unwrap())
    } else if key.starts_with("ed") {
        (Algorithm::EdDSA, EncodingKey::from_ed_pem(&pem).unwrap())
    } else {
        (Algorithm::RS256, EncodingKey::from_rsa_pem(&pem).unwrap())
    };
    let mut header = Header::new(algorithm);
    header.kid = Some(kid.to_owned());
    encode(&header, claims, &key).unwrap()
}

/// A token with `alg: none` and no signature, as an attacker would send it.
pub fn unsigned(claims: &Value) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let header = URL_SAFE_NO_PAD.encode(json!({ "alg": "none", "typ": "JWT", "kid": "rsa-1" }).to_string());
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{payload}.")
}

/// The algorithm-confusion attack: HS256 "signed" with the RSA public key's PEM as the secret.
pub fn hs256_with_public_key(kid: &str, claims: &Value) -> String {
    let public = std::fs::read(fixture(&format!("{kid}.pub.pem"))).unwrap();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.to_owned());
    encode(&header, claims, &EncodingKey::from_secret(&public)).unwrap()
}
