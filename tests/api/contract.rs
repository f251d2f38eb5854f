//! The contract as a whole: a walk-through, tokens and roles, organizations kept apart, and
//! the error shape of unknown routes.

use axum::http::{Method, StatusCode, header};
use keypool_tests::World;
use serde_json::{Value, json};

use super::fixtures::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walk_through_from_empty_to_redeemed() {
    let w = World::new().await;
    let (course_id, pool_id) = w.pool("acme", 30).await;
    let keys = w.generate("acme", &pool_id, 3).await;
    assert_eq!(keys.len(), 3);
    let typed = keys[0].to_lowercase().replace('-', " ");
    let r = redeem(&w, "lea", &typed).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["course_id"], course_id.as_str());
    assert_eq!(r.body["pool_id"], pool_id.as_str());
    let redeemed_at = keypool::time::parse(r.body["redeemed_at"].as_str().unwrap()).unwrap();
    let expires_at = keypool::time::parse(r.body["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(expires_at - redeemed_at, chrono::Duration::days(30));
    assert_eq!(pool_counts(&w, "acme", &pool_id).await, (3, 1, 2));

    let redeemed = all_keys(&w, "acme", &pool_id, Some("redeemed")).await;
    assert_eq!(redeemed.len(), 1);
    assert_eq!(redeemed[0]["key"], keys[0].as_str());
    assert_eq!(redeemed[0]["redeemed_by"], "lea");
    assert_eq!(redeemed[0]["assignment_id"], r.body["assignment_id"]);
    assert_eq!(redeemed[0]["redeemed_at"], r.body["redeemed_at"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_needs_no_token_and_everything_else_does() {
    let w = World::new().await;
    let r = w.call(GET, "/healthz", None, None).await;
    assert_eq!(r.status, StatusCode::OK);

    let routes: [(Method, &str); 12] = [
        (POST, "/v1/courses"),
        (GET, "/v1/courses"),
        (POST, "/v1/pools"),
        (GET, "/v1/pools"),
        (GET, "/v1/pools/x"),
        (Method::PATCH, "/v1/pools/x"),
        (POST, "/v1/pools/x/keys"),
        (GET, "/v1/pools/x/keys"),
        (POST, "/v1/pools/x/keys/generate"),
        (Method::DELETE, "/v1/pools/x/keys/ABCD"),
        (POST, "/v1/redemptions"),
        (GET, "/v1/me/assignments"),
    ];
    let expired = w.expired_admin("acme");
    let foreign = keypool::identity::TokenAuthority::new(&[1u8; 32])
        .mint(
            &keypool::identity::UserId::parse("a").unwrap(),
            Some(&keypool::identity::OrgId::parse("acme").unwrap()),
            keypool::identity::Role::Admin,
            chrono::Duration::hours(1),
        )
        .unwrap();
    for (method, path) in routes {
        for token in [
            None,
            Some("garbage"),
            Some(expired.as_str()),
            Some(foreign.as_str()),
        ] {
            let r = w.call(method.clone(), path, token, Some(json!({}))).await;
            assert_eq!(
                r.status,
                StatusCode::UNAUTHORIZED,
                "{method} {path}: {:?}",
                r.body
            );
            assert_eq!(r.code(), "unauthenticated");
            assert_eq!(r.headers[header::WWW_AUTHENTICATE], "Bearer");
        }
    }
    let launch = w
        .call(POST, "/v1/me/assignments/x/launch", None, None)
        .await;
    assert_eq!(launch.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_are_enforced_per_route() {
    let w = World::new().await;
    let (_, pool_id) = w.pool("acme", 30).await;
    let learner = w.learner("lea");
    let admin = w.admin("acme");
    let admin_routes = [
        (POST, "/v1/courses".to_string(), json!({"title": "x"})),
        (GET, "/v1/courses".to_string(), Value::Null),
        (GET, "/v1/pools".to_string(), Value::Null),
        (GET, format!("/v1/pools/{pool_id}"), Value::Null),
        (
            Method::PATCH,
            format!("/v1/pools/{pool_id}"),
            json!({"name": "x"}),
        ),
        (
            POST,
            format!("/v1/pools/{pool_id}/keys"),
            json!({"keys": ["ABCD1234"]}),
        ),
        (GET, format!("/v1/pools/{pool_id}/keys"), Value::Null),
        (
            POST,
            format!("/v1/pools/{pool_id}/keys/generate"),
            json!({"count": 1}),
        ),
        (
            Method::DELETE,
            format!("/v1/pools/{pool_id}/keys/ABCD1234"),
            Value::Null,
        ),
    ];
    for (method, path, body) in admin_routes {
        let body = (!body.is_null()).then_some(body);
        let r = w.call(method.clone(), &path, Some(&learner), body).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{method} {path}");
        assert_eq!(r.code(), "forbidden_role");
    }
    for (method, path) in [
        (POST, "/v1/redemptions"),
        (GET, "/v1/me/assignments"),
        (POST, "/v1/me/assignments/x/launch"),
    ] {
        let body = (method == POST).then(|| json!({"key": "ABCD1234"}));
        let r = w.call(method.clone(), path, Some(&admin), body).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{method} {path}");
    }
    // The learner's attempt added nothing.
    assert_eq!(pool_counts(&w, "acme", &pool_id).await, (0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_organization_sees_nothing_and_changes_nothing() {
    let w = World::new().await;
    let (course_id, pool_id) = w.pool("acme", 30).await;
    let keys = w.generate("acme", &pool_id, 2).await;
    let other = w.admin("globex");
    let checks = [
        (GET, format!("/v1/pools/{pool_id}"), None),
        (
            Method::PATCH,
            format!("/v1/pools/{pool_id}"),
            Some(json!({"deactivated": true})),
        ),
        (
            POST,
            format!("/v1/pools/{pool_id}/keys"),
            Some(json!({"keys": ["GLOBEX-KEY"]})),
        ),
        (GET, format!("/v1/pools/{pool_id}/keys"), None),
        (
            POST,
            format!("/v1/pools/{pool_id}/keys/generate"),
            Some(json!({"count": 5})),
        ),
        (
            Method::DELETE,
            format!("/v1/pools/{pool_id}/keys/{}", keys[0]),
            None,
        ),
    ];
    for (method, path, body) in checks {
        let r = w.call(method.clone(), &path, Some(&other), body).await;
        assert_eq!(
            r.status,
            StatusCode::NOT_FOUND,
            "{method} {path}: {:?}",
            r.body
        );
        assert_eq!(r.code(), "pool_not_found");
    }
    let r = w
        .call(
            POST,
            "/v1/pools",
            Some(&other),
            Some(json!({
                "name": "stolen", "course_id": course_id,
                "starts_at": "2026-01-01T00:00:00Z", "expires_at": "2030-01-01T00:00:00Z",
                "content_availability_days": 10
            })),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.code(), "course_not_found");
    for path in ["/v1/pools", "/v1/courses"] {
        let r = w.call(GET, path, Some(&other), None).await;
        assert_eq!(r.body["items"], json!([]), "{path}");
    }
    // Acme's pool is untouched.
    assert_eq!(pool_counts(&w, "acme", &pool_id).await, (2, 0, 2));
    let r = w
        .call(
            GET,
            &format!("/v1/pools/{pool_id}"),
            Some(&w.admin("acme")),
            None,
        )
        .await;
    assert_eq!(r.body["deactivated"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_methods_answer_in_the_error_shape() {
    let w = World::new().await;
    let admin = w.admin("acme");
    let r = w.call(GET, "/v1/nothing", Some(&admin), None).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
    let r = w.call(Method::PUT, "/v1/pools", Some(&admin), None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
}

/// Every error is the documented shape, whatever part of the request is broken, and its
/// message speaks of JSON, never of the Rust types behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_paths_queries_and_bodies_answer_in_the_error_shape() {
    let w = World::new().await;
    let admin = w.admin("acme");
    let learner = w.learner("alice");
    for path in [
        "/v1/pools/%FF",
        "/v1/pools/%FF/keys",
        "/v1/jobs/%C3%28",
        "/v1/exports/%FF",
        "/v1/invoices/%FF",
    ] {
        let r = w.call(GET, path, Some(&admin), None).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "invalid_path"),
            "{path}: {:?}",
            r.body
        );
    }
    let r = w
        .call(
            Method::POST,
            "/v1/me/assignments/%FF/launch",
            Some(&learner),
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_path")
    );

    // The local download route: a missing or doubled link, and a method it does not have.
    for path in ["/v1/files", "/v1/files?link=a&link=b"] {
        let r = w.call(GET, path, None, None).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "invalid_query"),
            "{path}: {:?}",
            r.body
        );
    }
    let r = w.call(Method::POST, "/v1/files?link=a", None, None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );

    for (path, body) in [
        ("/v1/courses", json!([1, 2])),
        ("/v1/courses", json!("title")),
        ("/v1/redemptions", json!([])),
    ] {
        let token = if path == "/v1/redemptions" {
            &learner
        } else {
            &admin
        };
        let r = w.call(Method::POST, path, Some(token), Some(body)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {:?}", r.body);
        let message = r.body["error"]["message"].as_str().unwrap();
        for rust in ["struct ", "enum ", "Input", "Body", "sequence", "map"] {
            assert!(!message.contains(rust), "{path}: {message}");
        }
    }
}

/// Answers that carry keys, signed links or a learner's identity are never kept by a browser
/// or a proxy: they had no Cache-Control at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_with_keys_links_or_identities_are_not_stored() {
    let w = World::new().await;
    let (_, pool_id) = w.pool("acme", 30).await;
    let admin = w.admin("acme");
    let keys = w.generate("acme", &pool_id, 2).await;
    let redeemed = redeem(&w, "lea", &keys[0]).await;
    assert_eq!(redeemed.status, StatusCode::CREATED);
    let started = w
        .call(
            Method::POST,
            &format!("/v1/pools/{pool_id}/exports"),
            Some(&admin),
            Some(json!({})),
        )
        .await;
    let export_id = started.body["export_id"].as_str().unwrap().to_string();
    w.finished_export("acme", &export_id).await;
    let link = w
        .call(GET, &format!("/v1/exports/{export_id}"), Some(&admin), None)
        .await
        .body["url"]
        .as_str()
        .unwrap()
        .split_once("/v1/files")
        .map(|(_, rest)| format!("/v1/files{rest}"))
        .unwrap();
    let lea = w.learner("lea");
    let answers = [
        redeemed,
        w.call(
            GET,
            &format!("/v1/pools/{pool_id}/keys"),
            Some(&admin),
            None,
        )
        .await,
        w.call(GET, &format!("/v1/keys/{}", keys[1]), Some(&admin), None)
            .await,
        w.call(GET, &format!("/v1/exports/{export_id}"), Some(&admin), None)
            .await,
        w.call(
            GET,
            &format!("/v1/pools/{pool_id}/exports"),
            Some(&admin),
            None,
        )
        .await,
        w.call(GET, "/v1/me/assignments", Some(&lea), None).await,
        w.call(
            GET,
            &format!("/v1/invoices/{}", &keypool::time::format(&w.now())[..7]),
            Some(&admin),
            None,
        )
        .await,
        redeem(&w, "mallory", "NOT-A-KEY").await,
    ];
    for (i, r) in answers.iter().enumerate() {
        assert_eq!(
            r.headers
                .get(header::CACHE_CONTROL)
                .map(|v| v.to_str().unwrap()),
            Some("no-store"),
            "answer {i}: {} {:?}",
            r.status,
            r.body
        );
    }
    let (status, headers, _) = w.get_streamed(&link, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers.get(header::CACHE_CONTROL).unwrap(), "no-store");
}
