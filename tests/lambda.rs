//! Each HTTP function's router fed real API Gateway HTTP API (2.0) events, converted to
//! requests exactly as lambda_http does, with identity from the JWT authorizer's claims.

use axum::Router;
use axum::http::StatusCode;
use http_body_util::BodyExt;
use keypool::http::{AppState, key_generation_routes, pool_admin_routes, redemption_routes};
use keypool_tests::{World, apigw_event, seed_acme_pool};
use serde_json::Value;
use tower::ServiceExt;

async fn invoke(app: &Router, event: &str) -> (StatusCode, Value) {
    let request = lambda_http::request::from_str(event).expect("a valid API Gateway event");
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_admin_reads_identity_from_the_authorizer() {
    let w = World::new().await;
    let app = w.lambda_app(pool_admin_routes(), AppState::pool_admin);
    let (status, body) = invoke(&app, &apigw_event("create-course-admin.json", &[])).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["title"], "Safety training");

    let (status, body) = invoke(&app, &apigw_event("create-course-learner.json", &[])).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "forbidden_role");

    let (pool_id, _) = seed_acme_pool(&w, 0).await;
    let subs = [("pool_id", pool_id.as_str())];
    let (status, body) = invoke(&app, &apigw_event("get-pool-admin.json", &subs)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["pool_id"], pool_id.as_str());
    let (status, body) = invoke(&app, &apigw_event("get-pool-other-org.json", &subs)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "pool_not_found");

    // A base64-encoded text/plain paste, as API Gateway delivers it.
    let (status, body) = invoke(&app, &apigw_event("add-keys-text-base64.json", &subs)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        body["added"],
        serde_json::json!(["WELCOME0001", "WELCOME0002"])
    );
    let (status, body) = invoke(&app, &apigw_event("list-keys-admin.json", &subs)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["items"].as_array().unwrap().len(), 2);
    // The key-generation route is not this function's: here the path only matches the
    // DELETE of a key named "generate".
    let (status, _) = invoke(&app, &apigw_event("generate-keys-admin.json", &subs)).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_generation_reads_identity_from_the_authorizer() {
    let w = World::new().await;
    let app = w.lambda_app(key_generation_routes(), AppState::key_generation);
    let (pool_id, _) = seed_acme_pool(&w, 0).await;
    let subs = [("pool_id", pool_id.as_str())];
    let (status, body) = invoke(&app, &apigw_event("generate-keys-admin.json", &subs)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["keys"].as_array().unwrap().len(), 3);
    let (status, body) = invoke(&app, &apigw_event("generate-keys-other-org.json", &subs)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // No authorizer context: never trusted, whatever the Authorization header says.
    let (status, body) = invoke(
        &app,
        &apigw_event("generate-keys-no-authorizer.json", &subs),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let pool = w
        .dyn_store()
        .get_pool(
            &keypool::identity::OrgId::parse("acme").unwrap(),
            &keypool::domain::PoolId::parse(&pool_id).unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pool.total_keys, 3, "only the admin's request wrote keys");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redemption_reads_the_learner_from_the_authorizer() {
    let w = World::new().await;
    let app = w.lambda_app(redemption_routes(), AppState::redemption);
    let (_, keys) = seed_acme_pool(&w, 2).await;
    let subs = [("key", keys[0].as_str())];
    let (status, body) = invoke(&app, &apigw_event("redeem-learner.json", &subs)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, again) = invoke(&app, &apigw_event("redeem-learner.json", &subs)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["assignment_id"], body["assignment_id"]);
    let (status, _) = invoke(
        &app,
        &apigw_event("redeem-admin.json", &[("key", keys[1].as_str())]),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, list) = invoke(&app, &apigw_event("my-assignments-learner.json", &[])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["items"][0]["assignment_id"], body["assignment_id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redemption_limits_the_source_ip_that_api_gateway_saw() {
    let w = World::new().await;
    let app = w.lambda_app(redemption_routes(), AppState::redemption);
    let (_, keys) = seed_acme_pool(&w, 1).await;
    let max = keypool::settings::Settings::default().address_failures.max as usize;
    let mut answered = 0;
    for i in 0..(max + 10) {
        // A new account every ten guesses, and a forged X-Forwarded-For on every one.
        let (sub, forwarded, guess) = (
            format!("guesser-{}", i / 10),
            format!("10.0.{}.{}", i / 250, i % 250),
            format!("GUESS{i:05}"),
        );
        let subs = [
            ("key", guess.as_str()),
            ("sub", sub.as_str()),
            ("source_ip", "198.51.100.77"),
            ("forwarded", forwarded.as_str()),
        ];
        let (status, body) = invoke(&app, &apigw_event("redeem-learner-from.json", &subs)).await;
        match status {
            StatusCode::NOT_FOUND => answered += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!(answered, max);
    let subs = [
        ("key", keys[0].as_str()),
        ("sub", "someone-else"),
        ("source_ip", "198.51.100.78"),
        ("forwarded", "198.51.100.77"),
    ];
    let (status, body) = invoke(&app, &apigw_event("redeem-learner-from.json", &subs)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}
