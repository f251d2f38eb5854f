//! What the API suites share: methods, ids from replies, pool counts, paging, redeeming, pool
//! edits.

use axum::http::{Method, StatusCode};
use keypool_tests::{Reply, World};
use serde_json::{Value, json};

pub(crate) const GET: Method = Method::GET;
pub(crate) const POST: Method = Method::POST;

pub(crate) fn id(reply: &Reply, field: &str) -> String {
    reply.body[field].as_str().unwrap_or_default().to_string()
}

pub(crate) async fn pool_counts(w: &World, org: &str, pool_id: &str) -> (u64, u64, u64) {
    let r = w
        .call(
            GET,
            &format!("/v1/pools/{pool_id}"),
            Some(&w.admin(org)),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    (
        r.body["total_keys"].as_u64().unwrap(),
        r.body["redeemed_keys"].as_u64().unwrap(),
        r.body["available_keys"].as_u64().unwrap(),
    )
}

pub(crate) async fn all_keys(
    w: &World,
    org: &str,
    pool_id: &str,
    status: Option<&str>,
) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/pools/{pool_id}/keys?limit=37");
        if let Some(s) = status {
            path.push_str(&format!("&status={s}"));
        }
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let r = w.call(GET, &path, Some(&w.admin(org)), None).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        items.extend(r.body["items"].as_array().unwrap().iter().cloned());
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return items,
        }
    }
}

pub(crate) async fn redeem(w: &World, learner: &str, key: &str) -> Reply {
    w.call(
        POST,
        "/v1/redemptions",
        Some(&w.learner(learner)),
        Some(json!({ "key": key })),
    )
    .await
}

/// `PATCH /v1/pools/{pool_id}` as `org`'s admin.
pub(crate) async fn patch_pool(w: &World, org: &str, pool_id: &str, body: Value) -> Reply {
    w.call(
        Method::PATCH,
        &format!("/v1/pools/{pool_id}"),
        Some(&w.admin(org)),
        Some(body),
    )
    .await
}

pub(crate) fn id_of(v: &Value, field: &str) -> String {
    v[field].as_str().unwrap().to_string()
}
