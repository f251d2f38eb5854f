//! Roles: every route of the OpenAPI document admits exactly the roles it says, and nothing a
//! viewer or a finance user tries changes anything.

use axum::http::{Method, StatusCode};
use keypool::identity::Role;
use keypool_tests::{Reply, World};
use serde_json::{Value, json};

use super::fixtures::*;

/// A path of the document with each parameter filled with something of its shape.
fn concrete(path: &str) -> String {
    path.replace("{pool_id}", "01a2486d-7117-765a-8b2a-aad43d3db2e7")
        .replace("{course_id}", "01a2486d-70c2-73e8-be87-6b0569ffed3f")
        .replace("{assignment_id}", "01a2486d-719e-73b3-bfbb-cba332de68a8")
        .replace("{export_id}", "01a2486d-7241-7081-bb01-7ccc26a1897b")
        .replace("{job_id}", "01a2486d-7241-7081-bb01-7ccc26a1897c")
        .replace("{key}", "SOME-KEY-1")
        .replace("{month}", "2026-12")
}

async fn call_as(w: &World, role: Role, method: &str, path: &str, body: Option<Value>) -> Reply {
    let token = match role {
        Role::Learner => w.learner("lea"),
        staff => w.staff("acme", staff),
    };
    let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
    w.call(method, path, Some(&token), body).await
}

/// What an admin reads of the organization: pools, keys, exports, courses, the invoice.
async fn snapshot(w: &World, admin: &str, pool_id: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    for path in [
        format!("/v1/pools/{pool_id}"),
        format!("/v1/pools/{pool_id}/keys"),
        format!("/v1/pools/{pool_id}/exports"),
        "/v1/pools".to_string(),
        "/v1/courses".to_string(),
        "/v1/invoices/2026-12".to_string(),
    ] {
        let r = w.call(GET, &path, Some(admin), None).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        seen.push(r.body);
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_of_the_document_admits_exactly_its_roles() {
    let w = World::new().await;
    let doc: Value = serde_json::from_str(&keypool::http::openapi::document_json()).unwrap();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let Some(admitted) = op["x-roles"].as_array() else {
                continue;
            };
            let admitted: Vec<&str> = admitted.iter().filter_map(Value::as_str).collect();
            if admitted.is_empty() {
                continue; // Anyone: no token needed.
            }
            let body = op.get("requestBody").map(|_| json!({}));
            for role in Role::ALL {
                let r = call_as(&w, role, method, &concrete(path), body.clone()).await;
                let refused = r.status == StatusCode::FORBIDDEN && r.code() == "forbidden_role";
                assert_eq!(
                    refused,
                    !admitted.contains(&role.as_str()),
                    "{method} {path} as {}: {} {:?}",
                    role.as_str(),
                    r.status,
                    r.body
                );
                if refused {
                    let roles = &r.body["error"]["details"]["roles"];
                    assert_eq!(roles, &json!(admitted), "{method} {path}");
                }
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 80,
        "only {checked} route and role pairs were checked"
    );
}

/// Every change the API offers, tried with valid input by a viewer and by finance: each is
/// refused, and the organization's pools, keys, courses, exports and invoices are as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_a_viewer_or_finance_tries_changes_anything() {
    let w = World::new().await;
    let (course_id, pool_id) = w.pool("acme", 30).await;
    let keys = w.generate("acme", &pool_id, 3).await;
    let redeemed = redeem(&w, "lea", &keys[0]).await;
    let assignment_id = id(&redeemed, "assignment_id");
    let admin = w.admin("acme");
    let before = snapshot(&w, &admin, &pool_id).await;
    let changes: Vec<(&str, String, Value)> = vec![
        ("POST", "/v1/courses".into(), json!({"title": "Sneaky"})),
        (
            "PATCH",
            format!("/v1/courses/{course_id}"),
            json!({"launch_url": "https://evil.example.com/"}),
        ),
        (
            "POST",
            "/v1/pools".into(),
            json!({"name": "Sneaky", "course_id": course_id, "starts_at": "2026-01-01T00:00:00Z",
                   "expires_at": "2027-01-01T00:00:00Z", "content_availability_days": 30}),
        ),
        (
            "PATCH",
            format!("/v1/pools/{pool_id}"),
            json!({"deactivated": true}),
        ),
        (
            "POST",
            format!("/v1/pools/{pool_id}/keys"),
            json!({"keys": ["SNEAKY-KEY-1"]}),
        ),
        (
            "POST",
            format!("/v1/pools/{pool_id}/keys/generate"),
            json!({"count": 5}),
        ),
        (
            "DELETE",
            format!("/v1/pools/{pool_id}/keys/{}", keys[1]),
            Value::Null,
        ),
        (
            "POST",
            format!("/v1/pools/{pool_id}/exports"),
            json!({"mark_distributed": true}),
        ),
        (
            "POST",
            format!("/v1/assignments/{assignment_id}/cancel"),
            Value::Null,
        ),
        ("POST", "/v1/redemptions".into(), json!({"key": keys[2]})),
    ];
    for role in [Role::Viewer, Role::Finance] {
        for (method, path, body) in &changes {
            let body = (!body.is_null()).then(|| body.clone());
            let r = call_as(&w, role, method, path, body).await;
            assert_eq!(
                (r.status, r.code()),
                (StatusCode::FORBIDDEN, "forbidden_role"),
                "{method} {path} as {}: {:?}",
                role.as_str(),
                r.body
            );
        }
    }
    assert_eq!(snapshot(&w, &admin, &pool_id).await, before);

    // What they may do, they can: a viewer reads the pool (but gets no download link), finance
    // reads the invoice.
    let r = call_as(
        &w,
        Role::Viewer,
        "GET",
        &format!("/v1/pools/{pool_id}"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = call_as(
        &w,
        Role::Finance,
        "GET",
        &format!("/v1/pools/{pool_id}"),
        None,
    )
    .await;
    assert_eq!(r.code(), "forbidden_role");
    let r = call_as(&w, Role::Finance, "GET", "/v1/invoices/2026-12", None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let started = w
        .call(
            POST,
            &format!("/v1/pools/{pool_id}/exports"),
            Some(&admin),
            Some(json!({})),
        )
        .await;
    let export_id = id(&started, "export_id");
    w.finished_export("acme", &export_id).await;
    let as_admin = w
        .call(GET, &format!("/v1/exports/{export_id}"), Some(&admin), None)
        .await;
    assert!(as_admin.body["url"].is_string());
    let as_viewer = call_as(
        &w,
        Role::Viewer,
        "GET",
        &format!("/v1/exports/{export_id}"),
        None,
    )
    .await;
    assert_eq!(as_viewer.status, StatusCode::OK);
    assert_eq!(as_viewer.body["status"], "done");
    assert!(as_viewer.body["url"].is_null(), "{:?}", as_viewer.body);
}
