//! Claims to customers: the configured claim (a dotted path, or a namespaced
//! key) names the provider's subject; provisioning creates its customer once,
//! whichever instance sees it first; without provisioning only linked subjects get in.

use serde_json::json;

use crate::common::{error_code, unique};
use crate::provider::{claims, sign, Provider};
use crate::{me, provider_auth, spawn_with_auth};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_provisioning_one_newcomer_at_once_create_one_customer() {
    let provider = Provider::start(&["rsa-1"], 300).await;
    let first = spawn_with_auth(provider_auth(&provider)).await;
    let second = spawn_with_auth(provider_auth(&provider)).await;
    let subject = unique("provider|newcomer");
    let mut profile = claims(&subject);
    profile["email"] = json!(format!("{}@Test.Example", unique("Newcomer")));
    profile["name"] = json!("Nora Newcomer");
    let token = sign("rsa-1", &profile);

    let requests = (0..16).map(|i| {
        let app = if i % 2 == 0 { &first } else { &second };
        let token = token.clone();
        async move { me(app, &token).await }
    });
    let responses = futures::future::join_all(requests).await;
    let ids: std::collections::BTreeSet<String> = responses
        .iter()
        .map(|r| {
            assert!(r.get("errors").is_none(), "{r}");
            r["data"]["me"]["id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1, "every request names the same customer: {ids:?}");
    let rows = first
        .scalar_i64(
            "SELECT count(*) FROM customers WHERE external_subject = $1",
            vec![subject.into()],
        )
        .await;
    assert_eq!(rows, 1);
    let me = &responses[0]["data"]["me"];
    assert_eq!(me["displayName"], "Nora Newcomer");
    assert_eq!(me["email"], profile["email"].as_str().unwrap().to_lowercase());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_another_customer_holds_is_not_linked_to_a_new_subject() {
    let provider = Provider::start(&["rsa-1"], 300).await;
    let app = spawn_with_auth(provider_auth(&provider)).await;
    let existing = app.new_customer().await;
    let email = format!("{}@test.example", unique("taken"));
    app.scalar_i64(
        "WITH taken AS (UPDATE customers SET email = $1 WHERE id = $2 RETURNING 1) SELECT count(*) FROM taken",
        vec![email.clone().into(), existing.into()],
    )
    .await;
    let mut profile = claims(&unique("provider|impostor"));
    profile["email"] = json!(email);
    let response = me(&app, &sign("rsa-1", &profile)).await;
    assert!(response.get("errors").is_none(), "{response}");
    assert_ne!(response["data"]["me"]["id"], json!(existing.to_string()));
    assert!(response["data"]["me"]["email"].is_null(), "{response}");
    let still_unlinked = app
        .scalar_i64(
            "SELECT count(*) FROM customers WHERE id = $1 AND external_subject IS NULL",
            vec![existing.into()],
        )
        .await;
    assert_eq!(
        still_unlinked, 1,
        "the address's owner keeps their account to themselves"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_provisioning_only_linked_subjects_get_in_by_the_configured_claim() {
    let provider = Provider::start(&["ec-1"], 300).await;
    let mut auth = provider_auth(&provider);
    auth.jwt_provision = false;
    auth.jwt_customer_claim = "https://shop.example.com/claims.customer".to_owned();
    let app = spawn_with_auth(auth).await;
    let subject = unique("shop-customer");
    let mut token_claims = claims("the provider's own subject, not ours");
    token_claims["https://shop.example.com/claims"] = json!({ "customer": subject });
    let token = sign("ec-1", &token_claims);

    let response = me(&app, &token).await;
    assert_eq!(error_code(&response), Some("UNAUTHENTICATED"), "{response}");
    assert!(response["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("no customer is linked"));

    // An operator links an existing customer to the subject; the same token now gets in.
    let customer = app.new_customer().await;
    app.scalar_i64(
        "WITH linked AS (UPDATE customers SET external_subject = $1 WHERE id = $2 RETURNING 1) SELECT count(*) FROM linked",
        vec![subject.into(), customer.into()],
    )
    .await;
    let response = me(&app, &token).await;
    assert_eq!(response["data"]["me"]["id"], json!(customer.to_string()), "{response}");
}
