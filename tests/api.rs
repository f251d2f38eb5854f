//! The HTTP contract through the routers, on a real DynamoDB engine per test.

use std::collections::HashSet;
use std::sync::Arc;

use axum::http::{Method, StatusCode, header};
use keypool_tests::{Reply, World, send};
use serde_json::{Value, json};

const GET: Method = Method::GET;
const POST: Method = Method::POST;

fn id(reply: &Reply, field: &str) -> String {
    reply.body[field].as_str().unwrap_or_default().to_string()
}

async fn pool_counts(w: &World, org: &str, pool_id: &str) -> (u64, u64, u64) {
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

async fn all_keys(w: &World, org: &str, pool_id: &str, status: Option<&str>) -> Vec<Value> {
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

async fn redeem(w: &World, learner: &str, key: &str) -> Reply {
    w.call(
        POST,
        "/v1/redemptions",
        Some(&w.learner(learner)),
        Some(json!({ "key": key })),
    )
    .await
}

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
    let expired = w
        .authority
        .mint(
            &keypool::identity::UserId::parse("a").unwrap(),
            Some(&keypool::identity::OrgId::parse("acme").unwrap()),
            keypool::identity::Role::Admin,
            chrono::Duration::hours(-2),
        )
        .unwrap();
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
        assert_eq!(r.code(), "forbidden");
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
async fn courses_are_found_by_part_of_the_title_in_any_case() {
    let w = World::new().await;
    let admin = w.admin("acme");
    for title in ["Rust for Beginners", "Advanced RUST", "Go basics"] {
        let r = w
            .call(
                POST,
                "/v1/courses",
                Some(&admin),
                Some(json!({"title": title, "description": "d"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
        assert_eq!(r.body["title"], title);
    }
    let r = w
        .call(GET, "/v1/courses?search=rust", Some(&admin), None)
        .await;
    let mut titles: Vec<&str> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["title"].as_str().unwrap())
        .collect();
    titles.sort();
    assert_eq!(titles, vec!["Advanced RUST", "Rust for Beginners"]);
    let r = w
        .call(GET, "/v1/courses?search=BASIC", Some(&admin), None)
        .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
    let r = w.call(GET, "/v1/courses", Some(&admin), None).await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_course_and_pool_input_is_rejected_and_writes_nothing() {
    let w = World::new().await;
    let admin = w.admin("acme");
    let (course_id, _) = w.pool("acme", 30).await;
    let cases: Vec<(Value, StatusCode, &str)> = vec![
        (
            json!({"title": ""}),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            json!({"title": "x".repeat(201)}),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (json!({"title": 5}), StatusCode::BAD_REQUEST, "invalid_body"),
        (
            json!({"title": "ok", "org": "globex"}),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (json!([1, 2]), StatusCode::BAD_REQUEST, "invalid_body"),
    ];
    for (body, status, code) in cases {
        let r = w
            .call(POST, "/v1/courses", Some(&admin), Some(body.clone()))
            .await;
        assert_eq!((r.status, r.code()), (status, code), "{body}: {:?}", r.body);
        assert!(
            r.body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    let r = w
        .raw(
            POST,
            "/v1/courses",
            Some(&admin),
            Some("application/json"),
            b"{\"title\": ".to_vec(),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_json")
    );
    let r = w
        .raw(
            POST,
            "/v1/courses",
            Some(&admin),
            Some("text/plain"),
            b"{\"title\": \"x\"}".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(r.code(), "unsupported_media_type");

    let good = json!({
        "name": "Pool", "course_id": course_id,
        "starts_at": "2026-01-01T00:00:00Z", "expires_at": "2027-01-01T00:00:00Z",
        "content_availability_days": 30
    });
    let mut bad_fields = Vec::new();
    for (field, value) in [
        ("name", json!("   ")),
        ("starts_at", json!("yesterday")),
        ("expires_at", json!("2025-01-01T00:00:00Z")),
        ("content_availability_days", json!(0)),
        ("content_availability_days", json!(181)),
        ("content_availability_days", json!(-3)),
        ("course_id", json!("not-a-uuid")),
    ] {
        let mut body = good.clone();
        body[field] = value;
        let r = w.call(POST, "/v1/pools", Some(&admin), Some(body)).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "invalid_input"),
            "{field}"
        );
        assert!(
            r.body["error"]["details"]["fields"][field].is_string(),
            "{field}: {:?}",
            r.body
        );
        bad_fields.push(field);
    }
    for (field, value) in [
        ("content_availability_days", json!(1e12)),
        ("content_availability_days", json!("30")),
        ("name", json!(null)),
    ] {
        let mut body = good.clone();
        body[field] = value;
        let r = w.call(POST, "/v1/pools", Some(&admin), Some(body)).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "invalid_body"),
            "{field}"
        );
    }
    // Every field wrong at once names every field.
    let r = w
        .call(
            POST,
            "/v1/pools",
            Some(&admin),
            Some(json!({"name": "", "course_id": "x", "starts_at": "x", "expires_at": "y", "content_availability_days": 0})),
        )
        .await;
    assert_eq!(
        r.body["error"]["details"]["fields"]
            .as_object()
            .unwrap()
            .len(),
        5
    );
    // Only the pool made by `w.pool` exists.
    let r = w.call(GET, "/v1/pools", Some(&admin), None).await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_page_search_and_edit() {
    let w = World::new().await;
    let admin = w.admin("acme");
    let (course_id, _) = w.pool("acme", 30).await;
    for i in 0..6 {
        let name = if i % 2 == 0 {
            format!("Autumn {i}")
        } else {
            format!("WINTER {i}")
        };
        let r = w
            .call(
                POST,
                "/v1/pools",
                Some(&admin),
                Some(json!({
                    "name": name, "course_id": course_id,
                    "starts_at": "2026-01-01T00:00:00Z", "expires_at": "2027-01-01T00:00:00Z",
                    "content_availability_days": 30
                })),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    let mut seen = HashSet::new();
    let mut cursor = String::new();
    loop {
        let r = w
            .call(
                GET,
                &format!("/v1/pools?limit=2&cursor={cursor}"),
                Some(&admin),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        for p in r.body["items"].as_array().unwrap() {
            assert!(seen.insert(id_of(p, "pool_id")), "a pool came twice");
        }
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7);
    let r = w
        .call(GET, "/v1/pools?search=winter&limit=2", Some(&admin), None)
        .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 2);
    let next = r.body["next_cursor"].as_str().unwrap().to_string();
    let r = w
        .call(
            GET,
            &format!("/v1/pools?search=winter&limit=2&cursor={next}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
    assert!(r.body["next_cursor"].is_null());

    for bad in [
        "/v1/pools?cursor=garbage",
        "/v1/pools?limit=0",
        "/v1/pools?limit=abc",
    ] {
        let r = w.call(GET, bad, Some(&admin), None).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
    }

    let pool_id = seen.iter().next().unwrap().clone();
    let r = w
        .call(
            Method::PATCH,
            &format!("/v1/pools/{pool_id}"),
            Some(&admin),
            Some(json!({"name": "Renamed", "content_availability_days": 7})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["name"], "Renamed");
    assert_eq!(r.body["content_availability_days"], 7);
    let r = w
        .call(
            Method::PATCH,
            &format!("/v1/pools/{pool_id}"),
            Some(&admin),
            Some(json!({"expires_at": "2000-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_input")
    );
    let r = w
        .call(
            Method::PATCH,
            &format!("/v1/pools/{pool_id}"),
            Some(&admin),
            Some(json!({"total_keys": 5})),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_body")
    );
    let r = w
        .call(GET, &format!("/v1/pools/{pool_id}"), Some(&admin), None)
        .await;
    assert_eq!(r.body["name"], "Renamed");
    assert_eq!(r.body["total_keys"], 0);
    let r = w
        .call(
            Method::PATCH,
            "/v1/pools/00000000-0000-0000-0000-000000000000",
            Some(&admin),
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

fn id_of(v: &Value, field: &str) -> String {
    v[field].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_added_typed_pasted_and_generated() {
    let w = World::new().await;
    let admin = w.admin("acme");
    let (_, pool_id) = w.pool("acme", 30).await;
    let path = format!("/v1/pools/{pool_id}/keys");
    let r = w
        .call(
            POST,
            &path,
            Some(&admin),
            Some(json!({"keys": ["single-key-1"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body, json!({"added": ["SINGLEKEY1"], "rejected": []}));

    let paste = "  alpha-0001  \r\n\r\nbravo 0002\n\ncharlie0003\n";
    let r = w
        .raw(
            POST,
            &path,
            Some(&admin),
            Some("text/plain; charset=utf-8"),
            paste.as_bytes().to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(
        r.body["added"],
        json!(["ALPHA0001", "BRAVO0002", "CHARLIE0003"])
    );

    // Every kind of bad line, with its line number; nothing added.
    let paste = "delta-0004\nab\nALPHA-0001\ndelta 0004\nech☃o\n\n".to_string() + &"Z".repeat(65);
    let r = w
        .raw(
            POST,
            &path,
            Some(&admin),
            Some("text/plain"),
            paste.into_bytes(),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "keys_rejected"),
        "{:?}",
        r.body
    );
    let rejected: Vec<(u64, String)> = r.body["error"]["details"]["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["line"].as_u64().unwrap(),
                x["code"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        rejected,
        vec![
            (2, "too_short".to_string()),
            (3, "already_exists".to_string()),
            (4, "duplicate_in_request".to_string()),
            (5, "invalid_characters".to_string()),
            (7, "too_long".to_string()),
        ]
    );
    assert_eq!(pool_counts(&w, "acme", &pool_id).await, (4, 0, 4));
    assert!(
        all_keys(&w, "acme", &pool_id, None)
            .await
            .iter()
            .all(|k| k["key"] != "DELTA0004")
    );

    // The same paste with partial=true adds the one good line.
    let paste = "delta-0004\nab\nALPHA-0001\n";
    let r = w
        .raw(
            POST,
            &format!("{path}?partial=true"),
            Some(&admin),
            Some("text/plain"),
            paste.as_bytes().to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.body["added"], json!(["DELTA0004"]));
    assert_eq!(r.body["rejected"].as_array().unwrap().len(), 2);

    // Keys are unique across pools and organizations.
    let (_, other_pool) = w.pool("globex", 30).await;
    let r = w
        .call(
            POST,
            &format!("/v1/pools/{other_pool}/keys"),
            Some(&w.admin("globex")),
            Some(json!({"keys": ["alpha0001"]})),
        )
        .await;
    assert_eq!(r.code(), "keys_rejected");
    assert_eq!(
        r.body["error"]["details"]["rejected"][0]["code"],
        "already_exists"
    );

    let generated = w.generate("acme", &pool_id, 50).await;
    assert_eq!(generated.iter().collect::<HashSet<_>>().len(), 50);
    assert_eq!(pool_counts(&w, "acme", &pool_id).await, (55, 0, 55));
    assert_eq!(
        all_keys(&w, "acme", &pool_id, Some("available"))
            .await
            .len(),
        55
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_key_requests_are_rejected_and_write_nothing() {
    let w = World::new().await;
    let admin = w.admin("acme");
    let (_, pool_id) = w.pool("acme", 30).await;
    let keys = format!("/v1/pools/{pool_id}/keys");
    let generate = format!("/v1/pools/{pool_id}/keys/generate");
    for count in [
        json!(0),
        json!(-5),
        // Above 10,000 a count becomes a job; above ten million it is refused.
        json!(10_000_001),
        json!(1e30),
        json!("10"),
        json!(2.5),
        json!(null),
    ] {
        let r = w
            .call(
                POST,
                &generate,
                Some(&admin),
                Some(json!({ "count": count })),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{count}: {:?}", r.body);
    }
    let r = w
        .call(
            POST,
            &generate,
            Some(&admin),
            Some(json!({"count": 1, "pool": "x"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    for body in [
        json!({"keys": "ABCD1234"}),
        json!({"keys": [1, 2]}),
        json!({"key": ["ABCD1234"]}),
        json!({"keys": []}),
    ] {
        let r = w.call(POST, &keys, Some(&admin), Some(body.clone())).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {:?}", r.body);
    }
    let r = w
        .raw(
            POST,
            &keys,
            Some(&admin),
            Some("text/plain"),
            vec![0xff, 0xfe, b'a'],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = w
        .raw(
            POST,
            &keys,
            Some(&admin),
            Some("application/xml"),
            b"<k/>".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = w
        .raw(
            POST,
            &format!("{keys}?partial=maybe"),
            Some(&admin),
            Some("text/plain"),
            b"ABCD1234".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // A list long enough for a job is still checked whole first: one bad line refuses it.
    let many: String = (0..10_001)
        .map(|i| format!("BULK{i:06}\n"))
        .collect::<String>()
        + "bad!\n";
    let r = w
        .raw(
            POST,
            &keys,
            Some(&admin),
            Some("text/plain"),
            many.into_bytes(),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "keys_rejected")
    );
    assert_eq!(r.body["error"]["details"]["rejected"][0]["line"], 10_002);
    // A body over the cap is refused as such, and the service goes on.
    let huge = "ABCDEFGH\n".repeat(600_000).into_bytes();
    let r = w
        .raw(POST, &keys, Some(&admin), Some("text/plain"), huge)
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
    let huge_json = json!({"keys": vec!["ABCDEFGH"; 500_000]});
    let r = w.call(POST, &keys, Some(&admin), Some(huge_json)).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(pool_counts(&w, "acme", &pool_id).await, (0, 0, 0));
    assert!(all_keys(&w, "acme", &pool_id, None).await.is_empty());
    let r = w.call(GET, "/healthz", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = w
        .call(GET, &format!("{keys}?status=lost"), Some(&admin), None)
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_input")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_list_by_status_and_only_unredeemed_keys_can_be_removed() {
    let w = World::new().await;
    let admin = w.admin("acme");
    let (_, pool_id) = w.pool("acme", 30).await;
    let keys = w.generate("acme", &pool_id, 80).await;
    for (i, key) in keys.iter().take(5).enumerate() {
        assert_eq!(
            redeem(&w, &format!("learner-{i}"), key).await.status,
            StatusCode::CREATED
        );
    }
    let available = all_keys(&w, "acme", &pool_id, Some("available")).await;
    let redeemed = all_keys(&w, "acme", &pool_id, Some("redeemed")).await;
    let every = all_keys(&w, "acme", &pool_id, None).await;
    assert_eq!((available.len(), redeemed.len(), every.len()), (75, 5, 80));
    let listed: HashSet<String> = every.iter().map(|k| id_of(k, "key")).collect();
    assert_eq!(listed, keys.iter().cloned().collect::<HashSet<_>>());
    assert!(
        redeemed
            .iter()
            .all(|k| k["redeemed_by"].is_string() && k["redeemed_at"].is_string())
    );
    assert!(available.iter().all(|k| k["redeemed_by"].is_null()));

    let del = |key: &str| format!("/v1/pools/{pool_id}/keys/{key}");
    let r = w
        .call(Method::DELETE, &del(&keys[0]), Some(&admin), None)
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "key_redeemed"));
    let r = w
        .call(
            Method::DELETE,
            &del(&keys[10].to_lowercase()),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    let r = w
        .call(Method::DELETE, &del(&keys[10]), Some(&admin), None)
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "key_not_found")
    );
    let r = w
        .call(Method::DELETE, &del("NOPE-NOPE"), Some(&admin), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(pool_counts(&w, "acme", &pool_id).await, (79, 5, 74));
    // A removed key answers like an unknown one.
    let r = redeem(&w, "late", &keys[10]).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "invalid_key"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redemption_answers_every_case_precisely() {
    let w = World::new().await;
    let admin = w.admin("acme");
    let (_, pool_id) = w.pool("acme", 30).await;
    let keys = w.generate("acme", &pool_id, 4).await;

    let first = redeem(&w, "ann", &keys[0]).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let again = redeem(&w, "ann", &keys[0].replace('-', "")).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body, first.body);
    // A second key of the same pool gives back the first assignment and consumes nothing.
    let second_key = redeem(&w, "ann", &keys[1]).await;
    assert_eq!(second_key.status, StatusCode::OK);
    assert_eq!(
        second_key.body["assignment_id"],
        first.body["assignment_id"]
    );
    assert_eq!(pool_counts(&w, "acme", &pool_id).await, (4, 1, 3));
    let r = redeem(&w, "bob", &keys[0]).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "key_already_redeemed")
    );

    // Unknown, mistyped and malformed keys all answer alike.
    let mut typo = keys[1].clone().into_bytes();
    typo[0] = if typo[0] == b'A' { b'B' } else { b'A' };
    for bad in [
        String::from_utf8(typo).unwrap(),
        "NOSUCHKEY".into(),
        "??".into(),
        "ключ-ключ".into(),
    ] {
        let r = redeem(&w, "bob", &bad).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::NOT_FOUND, "invalid_key"),
            "{bad}"
        );
        assert_eq!(r.body["error"]["message"], "not a valid key");
    }
    // The learner comes from the token, never from the body.
    let r = w
        .call(
            POST,
            "/v1/redemptions",
            Some(&w.learner("bob")),
            Some(json!({"key": keys[2], "learner": "mallory"})),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_body")
    );

    // Deactivated: 403 with the dates; reactivated: works.
    let patch = |deactivated: bool| json!({ "deactivated": deactivated });
    w.call(
        Method::PATCH,
        &format!("/v1/pools/{pool_id}"),
        Some(&admin),
        Some(patch(true)),
    )
    .await;
    let r = redeem(&w, "bob", &keys[2]).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "pool_not_active")
    );
    assert!(r.body["error"]["details"]["starts_at"].is_string());
    assert!(r.body["error"]["details"]["expires_at"].is_string());
    assert_eq!(r.body["error"]["details"]["deactivated"], true);
    w.call(
        Method::PATCH,
        &format!("/v1/pools/{pool_id}"),
        Some(&admin),
        Some(patch(false)),
    )
    .await;
    assert_eq!(
        redeem(&w, "bob", &keys[2]).await.status,
        StatusCode::CREATED
    );
    // After the window: 403, and nothing changes.
    w.clock.advance(chrono::Duration::days(31));
    let r = redeem(&w, "cy", &keys[3]).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "pool_not_active")
    );
    assert_eq!(pool_counts(&w, "acme", &pool_id).await, (4, 2, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_attempts_are_throttled_per_learner() {
    let w = World::new().await;
    let (_, pool_id) = w.pool("acme", 30).await;
    let keys = w.generate("acme", &pool_id, 2).await;
    for i in 0..keypool::redemption::MAX_FAILED_ATTEMPTS {
        let r = redeem(&w, "guesser", &format!("GUESS{i:04}")).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }
    let r = redeem(&w, "guesser", &keys[0]).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::TOO_MANY_REQUESTS, "throttled")
    );
    let retry: u64 = r.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry), "{retry}");
    // Another learner is not affected; the guesser may try again after the window.
    assert_eq!(
        redeem(&w, "honest", &keys[1]).await.status,
        StatusCode::CREATED
    );
    w.clock.advance(chrono::Duration::seconds(retry as i64));
    assert_eq!(
        redeem(&w, "guesser", &keys[0]).await.status,
        StatusCode::CREATED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assignments_are_listed_and_launched_until_they_expire() {
    let w = World::new().await;
    let (_, pool_a) = w.pool("acme", 2).await;
    let (_, pool_b) = w.pool("acme", 10).await;
    let a = w.generate("acme", &pool_a, 1).await;
    let b = w.generate("acme", &pool_b, 1).await;
    let first = redeem(&w, "lea", &a[0]).await;
    w.clock.advance(chrono::Duration::milliseconds(5));
    let second = redeem(&w, "lea", &b[0]).await;
    let lea = w.learner("lea");
    let r = w.call(GET, "/v1/me/assignments", Some(&lea), None).await;
    let ids: Vec<Value> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["assignment_id"].clone())
        .collect();
    assert_eq!(
        ids,
        vec![
            second.body["assignment_id"].clone(),
            first.body["assignment_id"].clone()
        ]
    );
    let r = w
        .call(GET, "/v1/me/assignments", Some(&w.learner("other")), None)
        .await;
    assert_eq!(r.body["items"], json!([]));

    let launch = |assignment: &Reply| {
        format!(
            "/v1/me/assignments/{}/launch",
            id(assignment, "assignment_id")
        )
    };
    for n in 1..=3 {
        let r = w.call(POST, &launch(&first), Some(&lea), None).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert_eq!(r.body["launch_count"], n);
    }
    let r = w
        .call(POST, &launch(&first), Some(&w.learner("other")), None)
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "assignment_not_found")
    );
    let r = w
        .call(POST, "/v1/me/assignments/nope/launch", Some(&lea), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    w.clock.advance(chrono::Duration::days(3));
    let r = w.call(POST, &launch(&first), Some(&lea), None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "assignment_expired")
    );
    assert_eq!(
        r.body["error"]["details"]["expires_at"],
        first.body["expires_at"]
    );
    let r = w.call(POST, &launch(&second), Some(&lea), None).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = w.call(GET, "/v1/me/assignments", Some(&lea), None).await;
    let valid: Vec<Value> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["valid"].clone())
        .collect();
    assert_eq!(valid, vec![json!(true), json!(false)]);
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

/// 200 keys (20 on moto), 32 learners racing for each at once: one winner per key, every loser 409, and
/// the counts and records agree afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn race_many_learners_for_each_key() {
    const LEARNERS: usize = 32;
    let w = Arc::new(World::new().await);
    // moto answers one request at a time, in Python: the same race on fewer keys.
    let keys_to_race = if w.is_moto() { 20 } else { 200 };
    let (_, pool_id) = w.pool("acme", 30).await;
    let keys = w.generate("acme", &pool_id, keys_to_race).await;
    let tokens: Vec<Vec<String>> = (0..keys_to_race)
        .map(|k| {
            (0..LEARNERS)
                .map(|l| w.learner(&format!("k{k}-l{l}")))
                .collect()
        })
        .collect();

    let mut winners = Vec::new();
    for (wave_keys, wave_tokens) in keys.chunks(10).zip(tokens.chunks(10)) {
        let barrier = Arc::new(tokio::sync::Barrier::new(wave_keys.len() * LEARNERS));
        let mut tasks = Vec::new();
        for (key, learners) in wave_keys.iter().zip(wave_tokens) {
            for (l, token) in learners.iter().enumerate() {
                let (app, barrier, key, token) =
                    (w.app.clone(), barrier.clone(), key.clone(), token.clone());
                tasks.push(tokio::spawn(async move {
                    let body = json!({ "key": key }).to_string().into_bytes();
                    barrier.wait().await;
                    let r = send(
                        &app,
                        POST,
                        "/v1/redemptions",
                        Some(&token),
                        Some("application/json"),
                        body,
                    )
                    .await;
                    (key, l, r)
                }));
            }
        }
        let mut per_key: std::collections::HashMap<String, Vec<(usize, Reply)>> =
            Default::default();
        for t in tasks {
            let (key, l, r) = t.await.unwrap();
            per_key.entry(key).or_default().push((l, r));
        }
        for (key, replies) in per_key {
            let won: Vec<_> = replies
                .iter()
                .filter(|(_, r)| r.status == StatusCode::CREATED)
                .collect();
            assert_eq!(won.len(), 1, "key {key}: {} winners", won.len());
            for (_, r) in replies
                .iter()
                .filter(|(_, r)| r.status != StatusCode::CREATED)
            {
                assert_eq!(
                    (r.status, r.code()),
                    (StatusCode::CONFLICT, "key_already_redeemed"),
                    "{:?}",
                    r.body
                );
            }
            winners.push((key, won[0].1.body["assignment_id"].clone()));
        }
    }
    let n = keys_to_race as u64;
    assert_eq!(pool_counts(&w, "acme", &pool_id).await, (n, n, 0));
    let redeemed = all_keys(&w, "acme", &pool_id, Some("redeemed")).await;
    assert_eq!(redeemed.len(), keys_to_race);
    for (key, assignment_id) in &winners {
        let record = redeemed.iter().find(|k| &k["key"] == key).unwrap();
        assert_eq!(&record["assignment_id"], assignment_id);
        let winner = record["redeemed_by"].as_str().unwrap();
        let r = w
            .call(GET, "/v1/me/assignments", Some(&w.learner(winner)), None)
            .await;
        assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
        assert_eq!(&r.body["items"][0]["assignment_id"], assignment_id);
    }
}

/// One learner racing with every key of a pool at once still gets one assignment and burns
/// one key.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn race_one_learner_many_keys_of_one_pool() {
    let w = Arc::new(World::new().await);
    let (_, pool_id) = w.pool("acme", 30).await;
    let keys = w.generate("acme", &pool_id, 32).await;
    let token = w.learner("greedy");
    let barrier = Arc::new(tokio::sync::Barrier::new(keys.len()));
    let mut tasks = Vec::new();
    for key in keys {
        let (app, barrier, token) = (w.app.clone(), barrier.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let body = json!({ "key": key }).to_string().into_bytes();
            barrier.wait().await;
            send(
                &app,
                POST,
                "/v1/redemptions",
                Some(&token),
                Some("application/json"),
                body,
            )
            .await
        }));
    }
    let mut created = 0;
    let mut ids = HashSet::new();
    for t in tasks {
        let r = t.await.unwrap();
        assert!(
            matches!(r.status, StatusCode::CREATED | StatusCode::OK),
            "{:?}",
            r.body
        );
        created += usize::from(r.status == StatusCode::CREATED);
        ids.insert(r.body["assignment_id"].to_string());
    }
    assert_eq!((created, ids.len()), (1, 1));
    assert_eq!(pool_counts(&w, "acme", &pool_id).await, (32, 1, 31));
}

/// Removing a key while learners redeem it: exactly one side wins, and the counts agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn race_removal_against_redemption() {
    let w = Arc::new(World::new().await);
    let (_, pool_id) = w.pool("acme", 30).await;
    let keys = w.generate("acme", &pool_id, 40).await;
    let admin = w.admin("acme");
    let mut tasks = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let (app, b, k, t) = (
            w.app.clone(),
            barrier.clone(),
            key.clone(),
            w.learner(&format!("r{i}")),
        );
        let redeem = tokio::spawn(async move {
            let body = json!({ "key": k }).to_string().into_bytes();
            b.wait().await;
            send(
                &app,
                POST,
                "/v1/redemptions",
                Some(&t),
                Some("application/json"),
                body,
            )
            .await
        });
        let (app, b, path, t) = (
            w.app.clone(),
            barrier,
            format!("/v1/pools/{pool_id}/keys/{key}"),
            admin.clone(),
        );
        let remove = tokio::spawn(async move {
            b.wait().await;
            send(&app, Method::DELETE, &path, Some(&t), None, Vec::new()).await
        });
        tasks.push((redeem, remove));
    }
    let mut removed = 0;
    for (redeem, remove) in tasks {
        let (r, d) = (redeem.await.unwrap(), remove.await.unwrap());
        match (r.status, d.status) {
            (StatusCode::CREATED, StatusCode::CONFLICT) => {}
            (StatusCode::NOT_FOUND, StatusCode::NO_CONTENT) => removed += 1,
            other => panic!("both or neither won: {other:?} {:?} {:?}", r.body, d.body),
        }
    }
    let (total, redeemed, available) = pool_counts(&w, "acme", &pool_id).await;
    assert_eq!(
        (total, redeemed, available),
        (40 - removed, 40 - removed, 0)
    );
    assert_eq!(
        all_keys(&w, "acme", &pool_id, None).await.len() as u64,
        total
    );
}
