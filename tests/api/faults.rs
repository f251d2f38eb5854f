//! DynamoDB's conflicts and throttling, injected before requests reach the engine: retried
//! where a retry can succeed, answered 409 `write_conflict` or 503 `store_busy` (with
//! Retry-After) once retries run out, never 500, and never with anything half-written.

use axum::http::StatusCode;
use keypool_tests::{Faults, Reply, World};
use serde_json::json;

use super::fixtures::*;

/// A pool of `acme` with one custom key, made before any fault is injected.
async fn pool_with_key(w: &World, key: &str) -> String {
    let (_, pool_id) = w.pool("acme", 30).await;
    let r = w
        .call(
            POST,
            &format!("/v1/pools/{pool_id}/keys"),
            Some(&w.admin("acme")),
            Some(json!({ "keys": [key] })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    pool_id
}

/// Nothing of a redemption of `key` by `learner` was written: the key is available, the pool
/// counts it so, and the learner holds no assignment.
async fn nothing_redeemed(w: &World, pool_id: &str, learner: &str) {
    assert_eq!(pool_counts(w, "acme", pool_id).await, (1, 0, 1));
    let keys = all_keys(w, "acme", pool_id, None).await;
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["status"], "available", "{keys:?}");
    assert!(keys[0]["assignment_id"].is_null(), "{keys:?}");
    let mine = w
        .call(GET, "/v1/me/assignments", Some(&w.learner(learner)), None)
        .await;
    assert_eq!(mine.status, StatusCode::OK, "{:?}", mine.body);
    assert_eq!(mine.body["items"], json!([]));
}

fn assert_store_busy(r: &Reply) {
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "store_busy"),
        "{:?}",
        r.body
    );
    let retry_after: u64 = r.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in seconds");
    assert!(retry_after > 0);
    assert_eq!(
        r.body["error"]["details"]["retry_after_seconds"],
        retry_after
    );
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("busy"), "{message}");
    assert!(!message.contains("Exception"), "no SDK detail: {message}");
}

/// Every transaction cancelled for conflicts: the redemption retries, then answers 409
/// `write_conflict`, and nothing of it was written; once conflicts stop, the key redeems.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redemption_that_always_conflicts_answers_write_conflict_and_writes_nothing() {
    let w = World::with_faults(Faults::NONE).await;
    let pool_id = pool_with_key(&w, "CONFLICT-KEY").await;

    w.injector().set(Faults::conflicts(1.0));
    let r = redeem(&w, "lea", "CONFLICT-KEY").await;
    w.injector().set(Faults::NONE);
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "write_conflict"),
        "{:?}",
        r.body
    );
    // Retried with backoff before giving up, not answered at the first cancellation.
    assert!(
        w.injector().conflicts() >= 10,
        "{}",
        w.injector().conflicts()
    );
    nothing_redeemed(&w, &pool_id, "lea").await;

    let r = redeem(&w, "lea", "CONFLICT-KEY").await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(pool_counts(&w, "acme", &pool_id).await, (1, 1, 0));
}

/// Every request throttled: reads, a redemption and a key addition answer 503 `store_busy`
/// with Retry-After, after the SDK's retries; nothing was written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_throttled_through_every_retry_answer_503() {
    let w = World::with_faults(Faults::NONE).await;
    let pool_id = pool_with_key(&w, "THROTTLE-KEY").await;

    w.injector().set(Faults::throttles(1.0));
    let redemption = redeem(&w, "lea", "THROTTLE-KEY").await;
    let read = w
        .call(
            GET,
            &format!("/v1/pools/{pool_id}"),
            Some(&w.admin("acme")),
            None,
        )
        .await;
    let throttled = w.injector().throttles();
    w.injector().set(Faults::NONE);
    assert_store_busy(&redemption);
    assert_store_busy(&read);
    // The SDK retried each request before giving up.
    assert!(throttled >= 2 * 10, "{throttled} requests throttled");
    nothing_redeemed(&w, &pool_id, "lea").await;
}

/// Every transaction cancelled for a throttled item: retried, then 503 `store_busy` (not
/// 409, which would tell the client that others changed the same items).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_throttled_through_every_retry_answer_503() {
    let w = World::with_faults(Faults::NONE).await;
    let pool_id = pool_with_key(&w, "THROTTLE-KEY").await;

    w.injector().set(Faults::throttled_items(1.0));
    let redemption = redeem(&w, "lea", "THROTTLE-KEY").await;
    let added = w
        .call(
            POST,
            &format!("/v1/pools/{pool_id}/keys"),
            Some(&w.admin("acme")),
            Some(json!({ "keys": ["SECOND-KEY"] })),
        )
        .await;
    w.injector().set(Faults::NONE);
    assert_store_busy(&redemption);
    assert_store_busy(&added);
    nothing_redeemed(&w, &pool_id, "lea").await;
}

/// With 30% of all requests throttled and 20% of transactions conflicting, the whole honest
/// walk of an admin and a learner succeeds: every fault is retried away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_honest_walk_succeeds_through_throttling_and_conflicts() {
    let w = World::with_faults(Faults {
        conflicts: 0.2,
        throttles: 0.3,
        throttled_items: 0.0,
    })
    .await;
    let admin = w.admin("acme");
    let (_, pool_id) = w.pool("acme", 30).await;
    let r = w
        .call(
            POST,
            &format!("/v1/pools/{pool_id}/keys"),
            Some(&admin),
            Some(json!({ "keys": ["WALK-KEY-1", "WALK-KEY-2"] })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let generated = w.generate("acme", &pool_id, 20).await;
    assert_eq!(generated.len(), 20);

    let r = redeem(&w, "lea", "walk-key-1").await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let assignment = id(&r, "assignment_id");
    let r = redeem(&w, "max", &generated[0]).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let r = redeem(&w, "lea", "WALK-KEY-1").await;
    assert_eq!(r.status, StatusCode::OK, "a repeat: {:?}", r.body);
    let r = redeem(&w, "max", "WALK-KEY-1").await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "key_already_redeemed"),
        "{:?}",
        r.body
    );

    let mine = w
        .call(GET, "/v1/me/assignments", Some(&w.learner("lea")), None)
        .await;
    assert_eq!(mine.status, StatusCode::OK, "{:?}", mine.body);
    assert_eq!(mine.body["items"][0]["assignment_id"], assignment);
    let launch = w
        .call(
            POST,
            &format!("/v1/me/assignments/{assignment}/launch"),
            Some(&w.learner("lea")),
            None,
        )
        .await;
    assert_eq!(launch.status, StatusCode::OK, "{:?}", launch.body);
    assert_eq!(pool_counts(&w, "acme", &pool_id).await, (22, 2, 20));
    assert_eq!(all_keys(&w, "acme", &pool_id, None).await.len(), 22);
    assert_eq!(
        all_keys(&w, "acme", &pool_id, Some("redeemed")).await.len(),
        2
    );
    let (throttles, conflicts) = (w.injector().throttles(), w.injector().conflicts());
    // Conflicts are too few here to be sure of one (the races meet hundreds); throttling is.
    assert!(throttles > 0, "nothing was throttled");
    eprintln!(
        "{throttles} requests throttled, {conflicts} transactions cancelled, {} passed",
        w.injector().passed()
    );
}
