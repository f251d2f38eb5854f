//! The HTTP contract through the routers, on a real DynamoDB engine per test.

use axum::http::{Method, StatusCode};
use keypool_tests::World;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walk_through_from_empty_to_redeemed() {
    let w = World::new().await;
    let (course_id, pool_id) = w.pool("acme", 30).await;
    let keys = w.generate("acme", &pool_id, 3).await;
    assert_eq!(keys.len(), 3);
    let learner = w.learner("lea");
    let typed = keys[0].to_lowercase().replace('-', " ");
    let r = w
        .call(
            Method::POST,
            "/v1/redemptions",
            Some(&learner),
            Some(json!({ "key": typed })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["course_id"], course_id.as_str());
    assert_eq!(r.body["pool_id"], pool_id.as_str());
    let pool = w
        .call(
            Method::GET,
            &format!("/v1/pools/{pool_id}"),
            Some(&w.admin("acme")),
            None,
        )
        .await;
    assert_eq!(pool.body["total_keys"], 3);
    assert_eq!(pool.body["redeemed_keys"], 1);
    assert_eq!(pool.body["available_keys"], 2);
}
