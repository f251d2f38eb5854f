//! Cancellation: the key freed, the invoice credited once, what cannot be cancelled, and a
//! cancellation racing a launch.

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use keypool::domain::{AssignmentId, Month};
use keypool::time;
use keypool_tests::World;

use keypool_tests::race_test;

use super::fixtures::*;

#[tokio::test]
async fn a_cancellation_frees_the_key_and_credits_the_invoice_once() {
    let w = World::new().await;
    mid_month(&w);
    let (pool_id, key, body) = redeemed(&w, "acme", "lea").await;
    let id = body["assignment_id"].as_str().unwrap();

    // Other organizations and learners cannot; unknown ids are 404.
    assert_eq!(cancel(&w, "globex", id).await.status, StatusCode::NOT_FOUND);
    let by_learner = w
        .call(
            Method::POST,
            &format!("/v1/assignments/{id}/cancel"),
            Some(&w.learner("lea")),
            None,
        )
        .await;
    assert_eq!(by_learner.status, StatusCode::FORBIDDEN);
    let unknown = cancel(&w, "acme", &AssignmentId::new().to_string()).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(
        cancel(&w, "acme", "not-an-id").await.status,
        StatusCode::NOT_FOUND
    );

    w.clock.advance(chrono::Duration::hours(23));
    let reply = cancel(&w, "acme", id).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.body["key_status"], "available");
    assert_eq!(reply.body["cancelled_at"], time::format(&w.now()).as_str());
    let again = cancel(&w, "acme", id).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.code(), "assignment_cancelled");

    // The learner lost it; the pool counts the key as available; the key is listed so.
    let launched = launch(&w, "lea", id).await;
    assert_eq!(launched.status, StatusCode::FORBIDDEN);
    assert_eq!(launched.code(), "assignment_cancelled");
    let mine = w
        .call(
            Method::GET,
            "/v1/me/assignments",
            Some(&w.learner("lea")),
            None,
        )
        .await;
    assert_eq!(mine.body["items"][0]["valid"], false);
    assert!(mine.body["items"][0]["cancelled_at"].is_string());
    let pool = w
        .call(
            Method::GET,
            &format!("/v1/pools/{pool_id}"),
            Some(&w.admin("acme")),
            None,
        )
        .await;
    assert_eq!(pool.body["redeemed_keys"], 0);
    assert_eq!(pool.body["available_keys"], 2);
    let listed = w
        .call(
            Method::GET,
            &format!("/v1/pools/{pool_id}/keys?status=available"),
            Some(&w.admin("acme")),
            None,
        )
        .await;
    assert!(
        listed.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["key"] == key.as_str()
                && k["redeemed_by"].is_null()
                && k["assignment_id"].is_null())
    );

    // The learner who lost it cannot take it back, but may get another key of the pool.
    let back = redeem(&w, "lea", &key).await;
    assert_eq!(back.status, StatusCode::CONFLICT, "{:?}", back.body);
    assert_eq!(back.code(), "key_cancelled");

    // The key goes to someone else, who is billed for it in turn.
    let next = redeem(&w, "max", &key).await;
    assert_eq!(next.status, StatusCode::CREATED, "{:?}", next.body);
    assert_ne!(next.body["assignment_id"], body["assignment_id"]);

    let follower = w.follower();
    follower.drain().await.unwrap();
    assert_eq!(
        follower.drain().await.unwrap(),
        0,
        "a second drain finds nothing new"
    );
    let invoice = invoice(&w, "acme", &current_month(&w)).await;
    let kinds: Vec<(String, String, i64)> = invoice.body["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["assignment_id"].as_str().unwrap().to_string(),
                l["kind"].as_str().unwrap().to_string(),
                l["quantity"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            (id.to_string(), "redemption".into(), 1),
            (id.to_string(), "credit".into(), -1),
            (
                next.body["assignment_id"].as_str().unwrap().to_string(),
                "redemption".into(),
                1
            ),
        ]
    );
    assert_eq!(invoice.body["count"], 1);
    assert_eq!(invoice.body["redemptions"], 2);
    assert_eq!(invoice.body["credits"], 1);
}

#[tokio::test]
async fn a_launched_or_old_assignment_cannot_be_cancelled() {
    let w = World::new().await;
    let (_, _, launched) = redeemed(&w, "acme", "lea").await;
    let launched = launched["assignment_id"].as_str().unwrap();
    assert_eq!(launch(&w, "lea", launched).await.status, StatusCode::OK);
    let refused = cancel(&w, "acme", launched).await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert_eq!(refused.code(), "assignment_launched");

    let (pool_id, _, old) = redeemed(&w, "acme", "max").await;
    let old = old["assignment_id"].as_str().unwrap();
    w.clock.advance(chrono::Duration::hours(24));
    let refused = cancel(&w, "acme", old).await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert_eq!(refused.code(), "cancellation_window_passed");
    // Nothing changed: still redeemed, still counted.
    let pool = w
        .call(
            Method::GET,
            &format!("/v1/pools/{pool_id}"),
            Some(&w.admin("acme")),
            None,
        )
        .await;
    assert_eq!(pool.body["redeemed_keys"], 1);
    w.follower().drain().await.unwrap();
    let redeemed_in = Month::of(w.now() - chrono::Duration::hours(24));
    let invoice = invoice(&w, "acme", &redeemed_in.to_string()).await;
    assert_eq!(invoice.body["credits"], 0);
}

race_test!(
    /// A cancellation racing a launch of the same assignment: exactly one wins, and the
    /// invoice bills what happened.
    race_cancellation_against_launch,
    race_cancellation_against_launch_with_conflicts,
    cancellation_against_launch,
    threads = 4
);

async fn cancellation_against_launch(w: Arc<World>) {
    let rounds = if w.is_moto() { 4 } else { 20 };
    let (mut cancels, mut launches) = (0, 0);
    for round in 0..rounds {
        let learner = format!("racer{round}");
        let (_, _, body) = redeemed(&w, "acme", &learner).await;
        let id = body["assignment_id"].as_str().unwrap().to_string();
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let cancel_task = {
            let (w, id, barrier) = (w.clone(), id.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                cancel(&w, "acme", &id).await
            })
        };
        let launch_task = {
            let (w, id, barrier) = (w.clone(), id.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                launch(&w, &learner, &id).await
            })
        };
        let (c, l) = (cancel_task.await.unwrap(), launch_task.await.unwrap());
        match (c.status, l.status) {
            (StatusCode::OK, StatusCode::FORBIDDEN) => {
                assert_eq!(l.code(), "assignment_cancelled");
                cancels += 1;
            }
            (StatusCode::CONFLICT, StatusCode::OK) => {
                assert_eq!(c.code(), "assignment_launched");
                launches += 1;
            }
            other => panic!("both or neither won: {other:?} {:?} {:?}", c.body, l.body),
        }
    }
    eprintln!("cancellation won {cancels}, launch won {launches}");
    // Whoever won, the bill agrees with the outcome.
    w.follower().drain().await.unwrap();
    let invoice = invoice(&w, "acme", &current_month(&w)).await;
    assert_eq!(invoice.body["redemptions"], rounds);
    assert_eq!(invoice.body["credits"], cancels);
}
