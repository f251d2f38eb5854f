//! The built binary, run as Lambda runs it: Runtime API, API Gateway events, real store.

use keypool_tests::{World, apigw_event, run_as_lambda, seed_acme_pool};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_api_gateway_events_through_the_runtime_api() {
    let w = World::new().await;
    let (pool_id, _) = seed_acme_pool(&w, 0).await;
    let subs = [("pool_id", pool_id.as_str())];
    let answers = run_as_lambda(
        env!("CARGO_BIN_EXE_pool-admin"),
        &w,
        &[
            apigw_event("create-course-admin.json", &[]),
            apigw_event("get-pool-other-org.json", &subs),
            apigw_event("add-keys-text-base64.json", &subs),
        ],
    )
    .await;
    assert_eq!(answers[0].0, 201, "{}", answers[0].1);
    assert_eq!(answers[0].1["title"], "Safety training");
    assert_eq!(answers[1].0, 404);
    assert_eq!(answers[1].1["error"]["code"], "pool_not_found");
    assert_eq!(answers[2].0, 201, "{}", answers[2].1);
}

#[test]
fn fails_fast_naming_the_missing_variable() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pool-admin"))
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9")
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("MAIN_TABLE"), "{stderr}");
}
