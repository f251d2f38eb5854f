//! The built binary, run as Lambda runs it: Runtime API, API Gateway events, real store.

use keypool_tests::{World, apigw_event, run_as_lambda, seed_acme_pool};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_api_gateway_events_through_the_runtime_api() {
    let w = World::new().await;
    let (_, keys) = seed_acme_pool(&w, 1).await;
    let subs = [("key", keys[0].as_str())];
    let answers = run_as_lambda(
        env!("CARGO_BIN_EXE_redemption"),
        &w,
        &[
            apigw_event("redeem-learner.json", &subs),
            apigw_event("redeem-learner.json", &subs),
            apigw_event("redeem-admin.json", &subs),
            apigw_event("jwks.json", &[]),
        ],
    )
    .await;
    assert_eq!(answers[0].0, 201, "{}", answers[0].1);
    assert_eq!(answers[1].0, 200);
    assert_eq!(answers[1].1["assignment_id"], answers[0].1["assignment_id"]);
    assert_eq!(answers[2].0, 403);
    // The launch tokens' public key, read from KMS, without a token.
    assert_eq!(answers[3].0, 200, "{}", answers[3].1);
    let keys = answers[3].1["keys"].as_array().expect("a JWK set");
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kty"], "EC");
    assert_eq!(keys[0]["crv"], "P-256");
    assert_eq!(keys[0]["alg"], "ES256");
}
