//! What an export's file says and which keys it hands out: columns, neutralised cells,
//! filters, distribution marks, refused requests, and a pool's exports listed.

use super::*;

#[tokio::test]
async fn the_csv_has_every_column_quoted_and_neutralised() {
    let w = World::new().await;
    let admin = w.admin("acme");
    let course = w
        .call(
            Method::POST,
            "/v1/courses",
            Some(&admin),
            Some(json!({"title": "@SUM(1+1) \"Rust\""})),
        )
        .await;
    let now = w.now();
    let pool = w
        .call(
            Method::POST,
            "/v1/pools",
            Some(&admin),
            Some(json!({
                "name": "Spring, \"Q1\" cohort",
                "course_id": course.body["course_id"],
                "starts_at": keypool::time::format(&(now - chrono::Duration::hours(1))),
                "expires_at": keypool::time::format(&(now + chrono::Duration::days(30))),
                "content_availability_days": 30,
            })),
        )
        .await;
    let pool_id = pool.body["pool_id"].as_str().unwrap().to_string();
    let keys = w.generate("acme", &pool_id, 3).await;
    let redeemed = w
        .call(
            Method::POST,
            "/v1/redemptions",
            Some(&w.learner("=HYPERLINK(\"http://evil\")")),
            Some(json!({ "key": keys[1] })),
        )
        .await;
    assert_eq!(redeemed.status, StatusCode::CREATED, "{:?}", redeemed.body);

    let done = export_via(&w, &w.app, "acme", &pool_id, json!({})).await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["rows"], 3);
    let file_name = done["file_name"].as_str().unwrap();
    assert!(
        file_name.starts_with("spring-q1-cohort-keys-") && file_name.ends_with(".csv"),
        "{file_name}"
    );
    let (status, text, disposition) = download_local(&w, done["url"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(disposition.contains(file_name), "{disposition}");
    // RFC 4180: the header, then quoted cells where commas, quotes or newlines occur.
    assert!(
        text.starts_with(&(export::CSV_HEADER.join(",") + "\r\n")),
        "{text}"
    );
    assert!(text.contains("\"Spring, \"\"Q1\"\" cohort\""), "{text}");
    let rows = rows(&text);
    assert_eq!(rows.len(), 3);
    let by_key = |k: &str| rows.iter().find(|r| &r[column("key")] == k).unwrap();
    let row = by_key(&keys[1]);
    assert_eq!(&row[column("status")], "redeemed");
    assert_eq!(&row[column("redeemed_by")], "'=HYPERLINK(\"http://evil\")");
    assert_eq!(
        &row[column("redeemed_at")],
        redeemed.body["redeemed_at"].as_str().unwrap()
    );
    assert_eq!(
        &row[column("assignment_id")],
        redeemed.body["assignment_id"].as_str().unwrap()
    );
    assert_eq!(
        &row[column("assignment_expires_at")],
        redeemed.body["expires_at"].as_str().unwrap()
    );
    assert_eq!(&row[column("pool")], "Spring, \"Q1\" cohort");
    assert_eq!(&row[column("course")], "'@SUM(1+1) \"Rust\"");
    assert_eq!(&row[column("pool_id")], pool_id.as_str());
    assert_eq!(&row[column("distributed_at")], "");
    let fresh = by_key(&keys[0]);
    assert_eq!(&fresh[column("status")], "available");
    assert_eq!(&fresh[column("redeemed_by")], "");
    assert!(keypool::time::parse(&fresh[column("created_at")]).is_some());

    // The link is signed and expires; a tampered or missing one opens nothing.
    let url = done["url"].as_str().unwrap();
    let (status, _, _) = download_local(&w, &format!("{url}x")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn filters_and_distribution_marks_hand_out_only_fresh_keys() {
    let w = World::new().await;
    let (_, pool_id) = w.pool("acme", 30).await;
    let first = w.generate("acme", &pool_id, 5).await;
    let redeem = w
        .call(
            Method::POST,
            "/v1/redemptions",
            Some(&w.learner("lea")),
            Some(json!({ "key": first[0] })),
        )
        .await;
    assert_eq!(redeem.status, StatusCode::CREATED);

    let redeemed_only =
        export_via(&w, &w.app, "acme", &pool_id, json!({"status": "redeemed"})).await;
    assert_eq!(redeemed_only["rows"], 1);

    // Hand out the available keys, marking them.
    let batch1 = export_via(
        &w,
        &w.app,
        "acme",
        &pool_id,
        json!({"status": "available", "mark_distributed": true}),
    )
    .await;
    assert_eq!(batch1["rows"], 4);
    let (_, text, _) = download_local(&w, batch1["url"].as_str().unwrap()).await;
    let marked = rows(&text);
    assert!(
        marked
            .iter()
            .all(|r| !r[column("distributed_at")].is_empty())
    );
    let listed = w
        .call(
            Method::GET,
            &format!("/v1/pools/{pool_id}/keys?status=available&undistributed=true"),
            Some(&w.admin("acme")),
            None,
        )
        .await;
    assert_eq!(listed.body["items"], json!([]));

    // More keys later: the next hand-out has only them.
    let second = w.generate("acme", &pool_id, 3).await;
    let batch2 = export_via(
        &w,
        &w.app,
        "acme",
        &pool_id,
        json!({"status": "available", "undistributed": true, "mark_distributed": true}),
    )
    .await;
    assert_eq!(batch2["rows"], 3);
    let (_, text, _) = download_local(&w, batch2["url"].as_str().unwrap()).await;
    let mut got: Vec<String> = rows(&text)
        .iter()
        .map(|r| r[column("key")].to_string())
        .collect();
    let mut want = second.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    // A marking export of every key later keeps the earlier marks: each key is handed out once.
    let all = export_via(
        &w,
        &w.app,
        "acme",
        &pool_id,
        json!({"mark_distributed": true}),
    )
    .await;
    assert_eq!(all["rows"], 8);
    let (_, text, _) = download_local(&w, all["url"].as_str().unwrap()).await;
    let all_rows = rows(&text);
    let row_of = |k: &str| all_rows.iter().find(|r| &r[column("key")] == k).unwrap();
    let earlier = marked
        .iter()
        .find(|r| r[column("key")] == first[1])
        .unwrap();
    assert_eq!(
        &row_of(&first[1])[column("distributed_at")],
        &earlier[column("distributed_at")]
    );
    assert_eq!(
        &row_of(&first[0])[column("distributed_at")],
        "",
        "redeemed keys are not marked"
    );
}

#[tokio::test]
async fn bad_requests_are_refused_and_write_nothing() {
    let w = World::new().await;
    let (_, pool_id) = w.pool("acme", 30).await;
    let admin = w.admin("acme");
    let path = format!("/v1/pools/{pool_id}/exports");
    let bad = [
        json!({"status": "lost"}),
        json!({"status": "redeemed", "mark_distributed": true}),
        json!({"colour": "blue"}),
    ];
    for body in bad {
        let reply = w
            .call(Method::POST, &path, Some(&admin), Some(body.clone()))
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
    }
    let learner = w
        .call(Method::POST, &path, Some(&w.learner("lea")), None)
        .await;
    assert_eq!(learner.status, StatusCode::FORBIDDEN);
    let foreign = w
        .call(Method::POST, &path, Some(&w.admin("globex")), None)
        .await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
    // Nothing was queued or stored by any of those.
    assert!(w.dyn_store().open_jobs().await.unwrap().is_empty());

    let done = export_via(&w, &w.app, "acme", &pool_id, json!({})).await;
    let id = done["export_id"].as_str().unwrap();
    let other = w
        .call(
            Method::GET,
            &format!("/v1/exports/{id}"),
            Some(&w.admin("globex")),
            None,
        )
        .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    let unknown = w
        .call(Method::GET, "/v1/exports/not-an-id", Some(&admin), None)
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(
        w.dyn_store().open_jobs().await.unwrap().is_empty(),
        "finished jobs are closed"
    );
}

#[tokio::test]
async fn a_pools_exports_are_listed_newest_first_a_page_at_a_time() {
    let w = World::new().await;
    let admin = w.admin("acme");
    let (_, pool_id) = w.pool("acme", 30).await;
    let (_, other_pool) = w.pool("acme", 30).await;
    w.generate("acme", &pool_id, 3).await;
    let mut ids = Vec::new();
    for body in [
        json!({}),
        json!({"status": "available"}),
        json!({"status": "redeemed"}),
    ] {
        ids.push(export_via(&w, &w.app, "acme", &pool_id, body).await["export_id"].clone());
    }
    let elsewhere = export_via(&w, &w.app, "acme", &other_pool, json!({})).await;

    let list = |cursor: String| {
        let (w, admin, pool_id) = (&w, &admin, &pool_id);
        async move {
            let r = w
                .call(
                    Method::GET,
                    &format!("/v1/pools/{pool_id}/exports?limit=2&cursor={cursor}"),
                    Some(admin),
                    None,
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
            r.body
        }
    };
    let first = list(String::new()).await;
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_string();
    let second = list(cursor).await;
    assert!(second["next_cursor"].is_null(), "{second}");
    let listed: Vec<Value> = [&first, &second]
        .iter()
        .flat_map(|p| p["items"].as_array().unwrap().clone())
        .collect();
    let listed_ids: Vec<_> = listed.iter().map(|e| e["export_id"].clone()).collect();
    let newest_first: Vec<_> = ids.iter().rev().cloned().collect();
    assert_eq!(listed_ids, newest_first);
    assert!(!listed_ids.contains(&elsewhere["export_id"]));
    assert_eq!(listed[0]["key_status"], "redeemed");
    for e in &listed {
        assert_eq!(e["status"], "done", "{e}");
        assert_eq!(e["pool_id"].as_str(), Some(pool_id.as_str()));
        let (status, _, _) = download_local(&w, e["url"].as_str().expect("a link")).await;
        assert_eq!(status, StatusCode::OK);
    }

    // Another organization's admin, an unknown pool, a bad cursor.
    let path = format!("/v1/pools/{pool_id}/exports");
    let theirs = w
        .call(Method::GET, &path, Some(&w.admin("globex")), None)
        .await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
    assert_eq!(theirs.code(), "pool_not_found");
    let unknown = w
        .call(
            Method::GET,
            "/v1/pools/not-a-pool/exports",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.code(), "pool_not_found");
    let bad = w
        .call(
            Method::GET,
            &format!("{path}?cursor=garbage"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.code(), "invalid_cursor");
    // A cursor of another listing does not reach into this one.
    let pools_cursor = w
        .call(Method::GET, "/v1/pools?limit=1", Some(&admin), None)
        .await
        .body["next_cursor"]
        .as_str()
        .unwrap()
        .to_string();
    let bad = w
        .call(
            Method::GET,
            &format!("{path}?cursor={pools_cursor}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(bad.code(), "invalid_cursor");
}

/// The columns the documentation lists are the file's, in the file's order (they differed:
/// `distributed_at` was 4th in the README and 10th in the file).
#[test]
fn the_documented_columns_are_the_files() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let documented: Vec<String> = ["README.md", "docs/exports.md"]
        .iter()
        .filter_map(|doc| std::fs::read_to_string(root.join(doc)).ok())
        .filter_map(|text| {
            let (_, rest) = text.split_once("<!-- export:columns -->")?;
            let (list, _) = rest.split_once("<!-- /export:columns -->")?;
            Some(list.trim().to_string())
        })
        .collect();
    let expected = export::CSV_HEADER
        .iter()
        .map(|c| format!("`{c}`"))
        .collect::<Vec<_>>()
        .join(", ");
    assert_eq!(documented, vec![expected]);
}
