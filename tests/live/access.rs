//! Who may subscribe: another customer's order is NOT_FOUND; bad tokens are refused at connection_init.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ordercast::auth::DevelopmentTokens;
use uuid::Uuid;

use crate::common::spawn_app;
use crate::common::ws::{ConnectOptions, Event, Protocol, WsClient, WAIT};
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bob_cannot_subscribe_to_alices_order() {
    let app = spawn_app().await;
    let alice = app.token(app.new_customer().await);
    let bob = app.token(app.new_customer().await);
    let product = app.new_product(100, true).await.to_string();
    let (order, _) = create_order(&app, &alice).await;
    let (bobs, _) = create_order(&app, &bob).await;

    let mut client = WsClient::connect(&app, &bob).await.unwrap_or_else(|e| panic!("{e}"));
    for (id, target) in [("alices", order.clone()), ("missing", Uuid::now_v7().to_string())] {
        subscribe_order(&mut client, id, &target, None).await;
        let event = client.next_event(id, WAIT).await;
        assert_eq!(
            event.error_code().as_deref(),
            Some("NOT_FOUND"),
            "{id}: another customer's order looks exactly like a missing one; got {event:?}"
        );
        if let Event::Next(payload) = &event {
            assert!(payload["data"].is_null(), "{id}: no data with the error: {payload}");
        }
    }

    // Alice's changes never reach bob, and bob's socket still works for his own order.
    add_item(&app, &alice, &order, &product, 1).await;
    let snapshot = subscribe_snapshot(&mut client, "bobs", &bobs).await;
    assert_eq!(snapshot.version, 1);
    add_item(&app, &bob, &bobs, &product, 1).await;
    let update = next_update(&mut client, "bobs", WAIT).await;
    assert_eq!((update.version, update.change.as_str()), (2, "ITEM_ADDED"));
    for id in ["alices", "missing"] {
        while let Some(event) = client.try_next_event(id, Duration::from_millis(200)).await {
            assert!(
                event == Event::Complete || event.errors().is_some(),
                "{id}: a refused subscription yields no data: {event:?}"
            );
        }
    }
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_forged_and_expired_tokens_are_refused_at_connection_init() {
    let app = spawn_app().await;
    let customer = app.new_customer().await;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let forged = DevelopmentTokens::new("not-the-server-secret").mint(customer, Duration::from_secs(600));
    let expired = app.keys.mint_with_times(customer, now - 7200, now - 3600);

    for protocol in [Protocol::TransportWs, Protocol::LegacyWs] {
        let options = ConnectOptions {
            protocol,
            ..ConnectOptions::default()
        };
        for (what, token) in [
            ("malformed", "not-a-token"),
            ("forged", forged.as_str()),
            ("expired", &expired),
        ] {
            match WsClient::connect_with(&app, token, options).await {
                Ok(_) => panic!("{protocol:?}: a {what} token was acknowledged"),
                Err(e) => assert!(
                    e.is_refusal(),
                    "{protocol:?}: a {what} token must be refused, not ignored: {e}"
                ),
            }
        }
        // The control: the same customer with a valid token gets in.
        let client = WsClient::connect_with(&app, &app.token(customer), options)
            .await
            .unwrap_or_else(|e| panic!("{protocol:?}: a valid token connects: {e}"));
        client.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_ends_when_its_token_expires() {
    let app = spawn_app().await;
    let customer = app.new_customer().await;
    let token = app.token(customer);
    let (order, _) = create_order(&app, &token).await;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let short = app.keys.mint_with_times(customer, now, now + 2);

    let mut client = WsClient::connect(&app, &short).await.unwrap_or_else(|e| panic!("{e}"));
    subscribe_snapshot(&mut client, "1", &order).await;
    // Within a few seconds of the expiry the subscription ends with an UNAUTHENTICATED error:
    // nothing else (a bare `complete`, a closed socket) tells the client to sign in again.
    let started = std::time::Instant::now();
    let ended = loop {
        match client.poll_event("1", Duration::from_millis(500)).await {
            Err(why) => panic!("the socket closed before the subscription said why: {why}"),
            Ok(Some(Event::Complete)) => panic!("a bare `complete` at expiry; the contract says UNAUTHENTICATED"),
            Ok(Some(event)) if event.errors().is_some() => {
                let code = event.error_code();
                assert_eq!(code.as_deref(), Some("UNAUTHENTICATED"), "{event:?}");
                break format!("error {code:?}");
            }
            Ok(Some(event)) => panic!("nothing changed the order, yet it got {event:?}"),
            Ok(None) if started.elapsed() > Duration::from_secs(12) => {
                panic!("the subscription outlived its token by 10 s")
            }
            Ok(None) => {}
        }
    };
    eprintln!(
        "the subscription ended {:?} after connecting: {ended}",
        started.elapsed()
    );
}
