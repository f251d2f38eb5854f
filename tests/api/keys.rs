//! Keys: added typed, pasted and generated; bad requests; listing and removal.

use std::collections::HashSet;

use axum::http::{Method, StatusCode};
use keypool_tests::World;
use serde_json::json;

use super::fixtures::*;

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
    assert_eq!(
        r.body,
        json!({"added": ["SINGLEKEY1"], "rejected": [], "rejected_count": 0})
    );

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
async fn an_admin_finds_the_pool_of_a_key_in_any_form_and_only_their_own() {
    let w = World::new().await;
    let admin = w.admin("acme");
    let (_, pool_id) = w.pool("acme", 30).await;
    let keys = w.generate("acme", &pool_id, 2).await;
    let r = w
        .call(
            POST,
            &format!("/v1/pools/{pool_id}/keys"),
            Some(&admin),
            Some(json!({"keys": ["Custom-Key-42"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let redeemed = redeem(&w, "ann", &keys[0]).await;
    assert_eq!(redeemed.status, StatusCode::CREATED, "{:?}", redeemed.body);

    let find = |token: String, typed: String| {
        let w = &w;
        async move {
            w.call(GET, &format!("/v1/keys/{typed}"), Some(&token), None)
                .await
        }
    };
    // A generated key typed in lower case without dashes, another with spaces.
    let typed = keys[0].to_lowercase().replace('-', "");
    let r = find(admin.clone(), typed).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["key"], keys[0]);
    assert_eq!(r.body["pool_id"].as_str(), Some(pool_id.as_str()));
    assert_eq!(r.body["pool_name"], "Spring cohort");
    assert_eq!(r.body["pool_status"], "active");
    assert_eq!(r.body["status"], "redeemed");
    assert_eq!(r.body["redeemed_by"], "ann");
    assert!(r.body["redeemed_at"].is_string());
    let r = find(admin.clone(), keys[1].replace('-', "%20")).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["status"], "available");
    assert!(r.body["redeemed_by"].is_null());
    let r = find(admin.clone(), "custom-key-42".into()).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["key"], "CUSTOMKEY42");

    // Another organization's key answers exactly as a key that does not exist; so do a
    // malformed key and a generated one with a wrong check symbol.
    let absent = find(admin.clone(), "NO-SUCH-KEY".into()).await;
    assert_eq!(absent.status, StatusCode::NOT_FOUND);
    assert_eq!(absent.code(), "key_not_found");
    let theirs = find(w.admin("globex"), keys[0].clone()).await;
    assert_eq!((theirs.status, &theirs.body), (absent.status, &absent.body));
    let theirs = find(w.admin("globex"), "custom-key-42".into()).await;
    assert_eq!((theirs.status, &theirs.body), (absent.status, &absent.body));
    let last = keys[1].chars().last().unwrap();
    let wrong_check = format!(
        "{}{}",
        &keys[1][..keys[1].len() - 1],
        if last == 'A' { 'B' } else { 'A' }
    );
    for typed in ["%21%21", "ab", &wrong_check] {
        let r = find(admin.clone(), typed.to_string()).await;
        assert_eq!(
            (r.status, &r.body),
            (absent.status, &absent.body),
            "{typed}"
        );
    }
    // Only admins look keys up.
    let r = find(w.learner("ann"), keys[0].clone()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}
