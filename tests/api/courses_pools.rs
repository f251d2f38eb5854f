//! Courses and pools: search, bad input, paging and editing.

use std::collections::HashSet;

use axum::http::StatusCode;
use keypool_tests::World;
use serde_json::{Value, json};

use super::fixtures::*;

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
        (
            json!({"title": "Safety\u{202E}gnp.exe"}),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            json!({"title": "\u{200B}\u{FEFF}"}),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
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
        ("name", json!("\u{2067}Pool")),
        ("name", json!("\u{200B}")),
        // Blank by their Unicode properties: they got through a hand-kept list.
        ("name", json!("\u{2800}\u{2800}")),
        ("name", json!("\u{E0041}\u{E0042}\u{E007F}")),
        ("name", json!("\u{180B}\u{180C}\u{180D}")),
        ("name", json!("\u{E0100}\u{E01EF}")),
        ("name", json!("\u{1D173}\u{1D17A}")),
        ("starts_at", json!("yesterday")),
        ("expires_at", json!("2025-01-01T00:00:00Z")),
        ("content_availability_days", json!(0)),
        ("content_availability_days", json!(181)),
        ("content_availability_days", json!(-3)),
        ("course_id", json!("not-a-uuid")),
        // Years outside 2000-9999 once in UTC: stored, they broke every reader of the org.
        ("expires_at", json!("9999-12-31T23:59:59-23:59")),
        ("starts_at", json!("0000-01-01T00:00:00+01:00")),
        ("starts_at", json!("1999-12-31T23:59:59Z")),
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
    let pool = r.body["items"][0].clone();
    let pool_id = pool["pool_id"].as_str().unwrap();

    // The same bounds on PATCH, and the pool is left as it was.
    for (field, value) in [
        ("expires_at", "9999-12-31T23:59:59-23:59"),
        ("starts_at", "0000-01-01T00:00:00+01:00"),
    ] {
        let r = patch_pool(&w, "acme", pool_id, json!({ field: value })).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "invalid_input"),
            "{field}: {:?}",
            r.body
        );
        assert!(r.body["error"]["details"]["fields"][field].is_string());
    }
    let r = w
        .call(GET, &format!("/v1/pools/{pool_id}"), Some(&admin), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["starts_at"], pool["starts_at"]);
    assert_eq!(r.body["expires_at"], pool["expires_at"]);
    // The latest instant that is still year 9999 in UTC is accepted.
    let r = patch_pool(
        &w,
        "acme",
        pool_id,
        json!({ "expires_at": "9999-12-31T23:59:59.999Z" }),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
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
    let r = patch_pool(
        &w,
        "acme",
        &pool_id,
        json!({"name": "Renamed", "content_availability_days": 7}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["name"], "Renamed");
    assert_eq!(r.body["content_availability_days"], 7);
    let r = patch_pool(
        &w,
        "acme",
        &pool_id,
        json!({"expires_at": "2000-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_input")
    );
    let r = patch_pool(&w, "acme", &pool_id, json!({"total_keys": 5})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_body")
    );
    let r = w
        .call(GET, &format!("/v1/pools/{pool_id}"), Some(&admin), None)
        .await;
    assert_eq!(r.body["name"], "Renamed");
    assert_eq!(r.body["total_keys"], 0);
    let r = patch_pool(
        &w,
        "acme",
        "00000000-0000-0000-0000-000000000000",
        json!({"name": "x"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

/// Every page of `GET {path}` (which has a query already), with the size of each.
async fn pool_pages(w: &World, admin: &str, path: &str) -> Vec<Vec<Value>> {
    let mut pages = Vec::new();
    let mut cursor = String::new();
    for _ in 0..100 {
        let r = w
            .call(GET, &format!("{path}&cursor={cursor}"), Some(admin), None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {:?}", r.body);
        pages.push(r.body["items"].as_array().unwrap().clone());
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => return pages,
        }
    }
    panic!("{path}: the listing never ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_are_filtered_by_status_on_the_server_across_pages() {
    let w = World::new().await;
    let admin = w.admin("acme");
    let (course_id, _) = w.pool("acme", 30).await;
    let now = w.now();
    let at = |days: i64| keypool::time::format(&(now + chrono::Duration::days(days)));
    let mut expected: std::collections::HashMap<&str, HashSet<String>> = Default::default();
    expected.entry("active").or_default().insert(
        w.call(GET, "/v1/pools?limit=1", Some(&admin), None)
            .await
            .body["items"][0]["pool_id"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    // Interleaved, so that every status's pools are spread over the whole listing.
    for i in 0..4 {
        for (status, starts, expires) in [
            ("scheduled", 5, 30),
            ("active", -5, 30),
            ("expired", -30, -5),
            ("deactivated", -5, 30),
        ] {
            let r = w
                .call(
                    POST,
                    "/v1/pools",
                    Some(&admin),
                    Some(json!({
                        "name": format!("{status} {i}"), "course_id": course_id,
                        "starts_at": at(starts), "expires_at": at(expires),
                        "content_availability_days": 30
                    })),
                )
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
            let pool_id = id(&r, "pool_id");
            if status == "deactivated" {
                let r = patch_pool(&w, "acme", &pool_id, json!({"deactivated": true})).await;
                assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
            }
            expected.entry(status).or_default().insert(pool_id);
        }
    }
    // Another organization's pools never show.
    w.pool("globex", 30).await;

    for (status, ids) in &expected {
        for limit in [1, 2, 3] {
            let pages = pool_pages(
                &w,
                &admin,
                &format!("/v1/pools?status={status}&limit={limit}"),
            )
            .await;
            let (last, full) = pages.split_last().unwrap();
            for page in full {
                assert_eq!(
                    page.len(),
                    limit,
                    "{status} limit {limit}: a short page mid-listing"
                );
            }
            assert!(last.len() <= limit);
            let mut seen = HashSet::new();
            for p in pages.iter().flatten() {
                assert_eq!(p["status"], *status, "{p}");
                assert!(
                    seen.insert(id_of(p, "pool_id")),
                    "{status}: a pool came twice"
                );
            }
            assert_eq!(&seen, ids, "{status} limit {limit}");
        }
    }
    // With a search, both apply.
    let pages = pool_pages(
        &w,
        &admin,
        "/v1/pools?status=expired&search=EXPIRED%202&limit=5",
    )
    .await;
    let names: Vec<_> = pages.iter().flatten().map(|p| p["name"].clone()).collect();
    assert_eq!(names, [json!("expired 2")]);
    // Without a status, every pool, each with its own.
    let all = pool_pages(&w, &admin, "/v1/pools?limit=7").await;
    assert_eq!(all.iter().map(Vec::len).sum::<usize>(), 17);

    // The status follows the clock: a scheduled pool opens when its start passes.
    w.clock.advance(chrono::Duration::days(6));
    let active = pool_pages(&w, &admin, "/v1/pools?status=active&limit=100").await;
    assert_eq!(active.iter().map(Vec::len).sum::<usize>(), 9);
    let scheduled = pool_pages(&w, &admin, "/v1/pools?status=scheduled&limit=100").await;
    assert!(scheduled.iter().all(Vec::is_empty));

    for bad in ["Active", "open", "active,expired"] {
        let r = w
            .call(GET, &format!("/v1/pools?status={bad}"), Some(&admin), None)
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(r.code(), "invalid_input", "{bad}");
        assert!(
            r.body["error"]["details"]["fields"]["status"].is_string(),
            "{:?}",
            r.body
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_are_found_by_their_course_title_and_redemptions_name_the_course() {
    let w = World::new().await;
    let admin = w.admin("acme");
    let course = w
        .call(
            POST,
            "/v1/courses",
            Some(&admin),
            Some(json!({ "title": "Kubernetes Basics" })),
        )
        .await;
    assert_eq!(course.status, StatusCode::CREATED, "{:?}", course.body);
    let made = w
        .call(
            POST,
            "/v1/pools",
            Some(&admin),
            Some(json!({
                "name": "Blue team", "course_id": course.body["course_id"],
                "starts_at": "2026-01-01T00:00:00Z", "expires_at": "2027-12-31T00:00:00Z",
                "content_availability_days": 30
            })),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{:?}", made.body);
    assert_eq!(made.body["course_title"], "Kubernetes Basics");
    // Another pool, of another course, that the search must leave out.
    w.pool("acme", 30).await;

    for search in ["kubernetes", "BASICS", "blue"] {
        let r = w
            .call(
                GET,
                &format!("/v1/pools?search={search}"),
                Some(&admin),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let items = r.body["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{search}: {items:?}");
        assert_eq!(items[0]["pool_id"], made.body["pool_id"]);
        assert_eq!(items[0]["course_title"], "Kubernetes Basics");
    }

    let pool_id = made.body["pool_id"].as_str().unwrap();
    let keys = w.generate("acme", pool_id, 1).await;
    let r = redeem(&w, "lea", &keys[0]).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["course_title"], "Kubernetes Basics");
    let mine = w
        .call(GET, "/v1/me/assignments", Some(&w.learner("lea")), None)
        .await;
    assert_eq!(mine.body["items"][0]["course_title"], "Kubernetes Basics");
}
