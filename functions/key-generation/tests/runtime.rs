//! The built binary, run as Lambda runs it: Runtime API, API Gateway events, real store.

use keypool_tests::{World, apigw_event, run_as_lambda, seed_acme_pool};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_api_gateway_events_through_the_runtime_api() {
    let w = World::new().await;
    let (pool_id, _) = seed_acme_pool(&w, 0).await;
    let subs = [("pool_id", pool_id.as_str())];
    let answers = run_as_lambda(
        env!("CARGO_BIN_EXE_key-generation"),
        &w,
        &[
            apigw_event("generate-keys-admin.json", &subs),
            apigw_event("generate-keys-no-authorizer.json", &subs),
        ],
    )
    .await;
    assert_eq!(answers[0].0, 201, "{}", answers[0].1);
    assert_eq!(answers[0].1["keys"].as_array().unwrap().len(), 3);
    assert_eq!(answers[1].0, 401);
}
