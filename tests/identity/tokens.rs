//! Which provider tokens get in, and the precise reason each bad one is refused,
//! over HTTP and at `connection_init`.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::ws::{ConnectError, ConnectOptions, Protocol, WsClient};
use crate::common::{error_code, unique, TestApp};
use crate::provider::{self, claims, hs256_with_public_key, now, sign, sign_as, unsigned, Provider};
use crate::{me, provider_auth, spawn_with_auth};

/// HTTP answers UNAUTHENTICATED with `reason` in the message; both WebSocket protocols refuse the login.
async fn assert_refused(app: &TestApp, what: &str, token: &str, reason: &str) {
    let response = me(app, token).await;
    assert_eq!(error_code(&response), Some("UNAUTHENTICATED"), "{what}: {response}");
    let message = response["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains(reason), "{what}: expected {reason:?} in {message:?}");
    assert!(
        response["data"].is_null() || response["data"]["me"].is_null(),
        "{what}: {response}"
    );
    for protocol in [Protocol::TransportWs, Protocol::LegacyWs] {
        let options = ConnectOptions {
            protocol,
            ..ConnectOptions::default()
        };
        match WsClient::connect_with(app, token, options).await {
            Ok(_) => panic!("{what}: {protocol:?} acknowledged the login"),
            Err(ConnectError::Closed { code, .. }) if protocol == Protocol::TransportWs => {
                assert_eq!(code, Some(4403), "{what}: graphql-transport-ws closes with 4403")
            }
            Err(refused) => assert!(refused.is_refusal(), "{what}: {protocol:?}: {refused}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_es256_and_eddsa_tokens_from_the_jwks_sign_in_over_http_and_websocket() {
    let provider = Provider::start(&["rsa-1", "ec-1", "ed-1"], 300).await;
    let app = spawn_with_auth(provider_auth(&provider)).await;
    for kid in ["rsa-1", "ec-1", "ed-1"] {
        let subject = unique("provider|user");
        let token = sign(kid, &claims(&subject));
        let response = me(&app, &token).await;
        assert!(response.get("errors").is_none(), "{kid}: {response}");
        let id = response["data"]["me"]["id"].as_str().unwrap().to_owned();
        let client = WsClient::connect(&app, &token)
            .await
            .unwrap_or_else(|e| panic!("{kid}: the socket accepts the token: {e}"));
        client.close().await;
        let linked = app
            .scalar_i64(
                "SELECT count(*) FROM customers WHERE external_subject = $1 AND id::text = $2",
                vec![subject.into(), id.into()],
            )
            .await;
        assert_eq!(linked, 1, "{kid}: the customer carries the provider's subject");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_forged_misdirected_or_stale_token_is_unauthenticated_with_its_reason() {
    let provider = Provider::start(&["rsa-1", "ec-1"], 300).await;
    let app = spawn_with_auth(provider_auth(&provider)).await;
    let subject = unique("provider|user");
    let with = |change: Value| {
        let mut c = claims(&subject);
        c.as_object_mut().unwrap().extend(change.as_object().unwrap().clone());
        c
    };
    // The control: the same subject with good claims gets in (and is provisioned).
    let good = sign("rsa-1", &claims(&subject));
    assert!(me(&app, &good).await.get("errors").is_none());

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "wrong issuer",
            sign("rsa-1", &with(json!({ "iss": "https://evil.example/" }))),
            "issuer",
        ),
        (
            "wrong audience",
            sign("rsa-1", &with(json!({ "aud": "another-api" }))),
            "audience",
        ),
        (
            "expired beyond the leeway",
            sign("rsa-1", &with(json!({ "exp": now() - 60 }))),
            "expired",
        ),
        (
            "not valid yet",
            sign("ec-1", &with(json!({ "nbf": now() + 600 }))),
            "not valid yet",
        ),
        ("alg none", unsigned(&claims(&subject)), "algorithm"),
        (
            "HS256 signed with the RSA public key",
            hs256_with_public_key("rsa-1", &claims(&subject)),
            "algorithm",
        ),
        (
            "a key the provider does not publish",
            sign("rsa-2", &claims(&subject)),
            "does not publish",
        ),
        (
            "no customer claim",
            sign("rsa-1", &with(json!({ "sub": null }))),
            "`sub`",
        ),
        (
            "no expiry",
            sign(
                "rsa-1",
                &json!({ "sub": subject, "iss": provider::ISSUER, "aud": provider::AUDIENCE }),
            ),
            "`exp`",
        ),
        ("not a JWT", "abc.def".to_owned(), "malformed"),
    ];
    for (what, token, reason) in cases {
        assert_refused(&app, what, &token, reason).await;
    }

    // A token signed by another key with the right `kid` fails on its signature.
    let forged = sign_as("rsa-2", "rsa-1", &claims(&subject));
    assert_refused(&app, "signed by another key", &forged, "signature").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_is_accepted_after_a_refresh_and_a_removed_one_rejected_once_the_cache_expires() {
    let provider = Provider::start(&["rsa-1"], 2).await;
    let app = spawn_with_auth(provider_auth(&provider)).await;
    let old = sign("rsa-1", &claims(&unique("provider|user")));
    let new = sign("rsa-2", &claims(&unique("provider|user")));
    assert!(me(&app, &old).await.get("errors").is_none());

    // The provider adds rsa-2: an unknown kid makes the instance fetch again (once the
    // refresh interval has passed since the last fetch) and the new key gets in.
    provider.publish(&["rsa-1", "rsa-2"]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let response = me(&app, &new).await;
    assert!(
        response.get("errors").is_none(),
        "the new key after a refresh: {response}"
    );

    // The provider drops rsa-1: it works until the cache (max-age=2) expires, then never again.
    provider.publish(&["rsa-2"]);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let response = me(&app, &old).await;
    assert_eq!(error_code(&response), Some("UNAUTHENTICATED"), "{response}");
    assert!(me(&app, &new).await.get("errors").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_with_made_up_kids_cannot_hammer_the_provider() {
    let provider = Provider::start(&["rsa-1"], 300).await;
    let mut auth = provider_auth(&provider);
    auth.jwt_jwks_refresh_interval = Duration::from_secs(60);
    let app = spawn_with_auth(auth).await;
    assert!(me(&app, &sign("rsa-1", &claims(&unique("provider|user"))))
        .await
        .get("errors")
        .is_none());
    let before = provider.fetches();
    let attacks = (0..50).map(|i| {
        let token = sign_as("rsa-2", &format!("made-up-{i}"), &claims("x"));
        let app = &app;
        async move { error_code(&me(app, &token).await).map(str::to_owned) }
    });
    let codes = futures::future::join_all(attacks).await;
    assert!(
        codes.iter().all(|code| code.as_deref() == Some("UNAUTHENTICATED")),
        "{codes:?}"
    );
    let fetched = provider.fetches() - before;
    assert!(
        fetched <= 1,
        "50 unknown kids caused {fetched} JWKS fetches within one refresh interval"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pem_public_key_verifies_its_own_tokens_only() {
    let mut auth = crate::provider_auth(&Provider::start(&[], 300).await);
    auth.jwt_jwks_url = None;
    auth.jwt_public_key_file = Some(provider::fixture("ec-1.pub.pem"));
    let app = spawn_with_auth(auth).await;
    let subject = unique("provider|user");
    assert!(me(&app, &sign("ec-1", &claims(&subject))).await.get("errors").is_none());
    assert_refused(&app, "another key", &sign("rsa-1", &claims(&subject)), "algorithm").await;
}
