//! Redemption, throttling, and the assignments it creates.

use axum::http::{StatusCode, header};
use keypool_tests::{Reply, World};
use serde_json::{Value, json};

use super::fixtures::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redemption_answers_every_case_precisely() {
    let w = World::new().await;
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

    // A generated key with a typo is told so: the check symbol is public arithmetic.
    let mut typo = keys[1].clone().into_bytes();
    typo[0] = if typo[0] == b'A' { b'B' } else { b'A' };
    let r = redeem(&w, "bob", &String::from_utf8(typo).unwrap()).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "key_mistyped"),
        "{:?}",
        r.body
    );
    assert_eq!(r.body["error"]["details"]["check_symbol_position"], 20);
    // Unknown and malformed keys answer alike.
    for bad in ["NOSUCHKEY".to_string(), "??".into(), "ключ-ключ".into()] {
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
    patch_pool(&w, "acme", &pool_id, patch(true)).await;
    let r = redeem(&w, "bob", &keys[2]).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "pool_not_active")
    );
    assert!(r.body["error"]["details"]["starts_at"].is_string());
    assert!(r.body["error"]["details"]["expires_at"].is_string());
    assert_eq!(r.body["error"]["details"]["deactivated"], true);
    patch_pool(&w, "acme", &pool_id, patch(false)).await;
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
    for i in 0..keypool::settings::Settings::default().learner_failures.max {
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
    // The failures fade out over the sliding window after the one they were counted in.
    assert!((1..=1800).contains(&retry), "{retry}");
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
async fn one_client_address_is_limited_across_learner_accounts() {
    let w = World::new().await;
    let (_, pool_id) = w.pool("acme", 30).await;
    let keys = w.generate("acme", &pool_id, 2).await;
    let from = |ip: &str| -> std::net::SocketAddr { format!("{ip}:40000").parse().unwrap() };
    let redeem_from = |learner: &str, ip: &str, key: String| {
        let (token, addr) = (w.learner(learner), from(ip));
        let w = &w;
        async move {
            w.call_from(
                addr,
                POST,
                "/v1/redemptions",
                Some(&token),
                Some(json!({ "key": key })),
            )
            .await
        }
    };
    let max = keypool::settings::Settings::default().address_failures.max as usize;
    let mut answered = 0;
    for learner in ["s1", "s2", "s3", "s4", "s5"] {
        for i in 0..10 {
            let r = redeem_from(learner, "203.0.113.50", format!("GUESS{learner}{i:03}")).await;
            match r.status {
                StatusCode::NOT_FOUND => answered += 1,
                StatusCode::TOO_MANY_REQUESTS => {
                    assert!(r.headers.contains_key(header::RETRY_AFTER))
                }
                other => panic!("{other}: {}", r.body),
            }
        }
    }
    assert_eq!(
        answered, max,
        "five accounts got 50 guesses before the address limit"
    );
    // A custom key from that address is refused, whether it exists or not; a generated
    // key, which no one can guess, is not, so the room behind the address redeems on.
    let added = w
        .call(
            POST,
            &format!("/v1/pools/{pool_id}/keys"),
            Some(&w.admin("acme")),
            Some(json!({"keys": ["CUSTOM-KEY-1"]})),
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.body);
    let r = redeem_from("s6", "203.0.113.50", "CUSTOM-KEY-1".into()).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    let r = redeem_from("s6", "203.0.113.50", keys[0].clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = redeem_from("s7", "203.0.113.51", "CUSTOM-KEY-1".into()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

/// What the world's requests to DynamoDB were while `step` ran, by operation.
async fn requests_of<F: std::future::Future<Output = Reply>>(
    w: &World,
    step: F,
) -> (Reply, std::collections::BTreeMap<String, u64>) {
    let before = w.injector().operations();
    let reply = step.await;
    let mut made = w.injector().operations();
    for (operation, n) in before {
        if let Some(count) = made.get_mut(&operation) {
            *count -= n;
        }
    }
    made.retain(|_, n| *n > 0);
    (reply, made)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_key_of_a_known_pool_is_redeemed_in_one_write_and_no_read() {
    let w = World::with_faults(keypool_tests::Faults::NONE).await;
    let (_, pool_id) = w.pool("acme", 30).await;
    let keys = w.generate("acme", &pool_id, 3).await;

    // The first redemption learns the pool: it reads the key, then writes.
    let (first, made) = requests_of(&w, redeem(&w, "ann", &keys[0])).await;
    assert_eq!(first.status, StatusCode::CREATED, "{:?}", first.body);
    assert!(made.contains_key("BatchGetItem"), "{made:?}");

    // From then on a key of that pool costs one transaction, and nothing else.
    let (second, made) = requests_of(&w, redeem(&w, "bob", &keys[1])).await;
    assert_eq!(second.status, StatusCode::CREATED, "{:?}", second.body);
    assert_eq!(
        made,
        std::collections::BTreeMap::from([("TransactWriteItems".to_string(), 1)])
    );
    assert_eq!(second.body["pool_id"], pool_id.as_str());
    assert_eq!(pool_counts(&w, "acme", &pool_id).await, (3, 2, 1));

    // The same learner again: the shortcut's write is refused, and the long way answers the
    // assignment they hold (200), having written nothing.
    let (again, made) = requests_of(&w, redeem(&w, "bob", &keys[1])).await;
    assert_eq!(again.status, StatusCode::OK, "{:?}", again.body);
    assert_eq!(again.body["assignment_id"], second.body["assignment_id"]);
    assert_eq!(made.get("TransactWriteItems"), Some(&1), "{made:?}");
    assert_eq!(pool_counts(&w, "acme", &pool_id).await, (3, 2, 1));

    // A learner with a failure this window is not what the shortcut checks for: the process
    // remembers it, so the long way reads the counters and redeems, with one transaction.
    let wrong = redeem(&w, "cat", "NO-SUCH-KEY-1").await;
    assert_eq!(wrong.code(), "invalid_key", "{:?}", wrong.body);
    let (third, made) = requests_of(&w, redeem(&w, "cat", &keys[2])).await;
    assert_eq!(third.status, StatusCode::CREATED, "{:?}", third.body);
    assert_eq!(made.get("TransactWriteItems"), Some(&1), "{made:?}");
    assert_eq!(made.get("BatchGetItem"), Some(&1), "{made:?}");
    assert_eq!(pool_counts(&w, "acme", &pool_id).await, (3, 3, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_whose_tag_names_another_pool_is_redeemed_from_its_own() {
    let w = World::with_faults(keypool_tests::Faults::NONE).await;
    let (_, tagged_pool) = w.pool("acme", 30).await;
    let (_, own_pool) = w.pool("acme", 30).await;
    let keys = w.generate("acme", &tagged_pool, 2).await;
    // The process learns the first pool and its tag.
    assert_eq!(
        redeem(&w, "ann", &keys[0]).await.status,
        StatusCode::CREATED
    );

    // A custom key of the generated shape that carries the first pool's tag, added to the other.
    let org = keypool::identity::OrgId::parse("acme").unwrap();
    let pool_id = keypool::domain::PoolId::parse(&tagged_pool).unwrap();
    let tag = keypool::store::Pools::get_pool_settings(&*w.store, &org, &pool_id)
        .await
        .unwrap()
        .unwrap()
        .key_tag
        .expect("a new pool has a key tag");
    let posing = keypool::keys::generated_with_tag(&[7u8; 19], Some(tag));
    assert_eq!(posing.tag(), Some(tag));
    let added = w
        .call(
            POST,
            &format!("/v1/pools/{own_pool}/keys"),
            Some(&w.admin("acme")),
            Some(json!({ "keys": [posing.as_str()] })),
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{:?}", added.body);

    // The shortcut's transaction names the wrong pool and is refused; the long way redeems.
    let (r, made) = requests_of(&w, redeem(&w, "bob", posing.as_str())).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["pool_id"], own_pool.as_str());
    assert_eq!(made.get("TransactWriteItems"), Some(&2), "{made:?}");
    assert_eq!(pool_counts(&w, "acme", &own_pool).await, (1, 1, 0));
    assert_eq!(pool_counts(&w, "acme", &tagged_pool).await, (2, 1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_closed_since_it_was_learnt_refuses_its_keys() {
    let w = World::with_faults(keypool_tests::Faults::NONE).await;
    let (_, pool_id) = w.pool("acme", 30).await;
    let keys = w.generate("acme", &pool_id, 2).await;
    assert_eq!(
        redeem(&w, "ann", &keys[0]).await.status,
        StatusCode::CREATED
    );
    let closed = patch_pool(&w, "acme", &pool_id, json!({ "deactivated": true })).await;
    assert_eq!(closed.status, StatusCode::OK, "{:?}", closed.body);
    // The shortcut's transaction is refused by the pool's new version, and the learner is
    // told from a fresh read.
    let (r, made) = requests_of(&w, redeem(&w, "bob", &keys[1])).await;
    assert_eq!(r.code(), "pool_not_active", "{:?}", r.body);
    assert_eq!(made.get("TransactWriteItems"), Some(&1), "{made:?}");
    assert_eq!(pool_counts(&w, "acme", &pool_id).await, (2, 1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_learner_is_refused_before_any_write_of_a_known_pool() {
    let w = World::with_faults(keypool_tests::Faults::NONE).await;
    let (_, pool_id) = w.pool("acme", 30).await;
    let keys = w.generate("acme", &pool_id, 2).await;
    assert_eq!(
        redeem(&w, "ann", &keys[0]).await.status,
        StatusCode::CREATED
    );
    let max = keypool::settings::Settings::default().learner_failures.max;
    for i in 0..max {
        let r = redeem(&w, "eve", &format!("WRONG-GUESS-{i}")).await;
        assert_eq!(r.code(), "invalid_key", "{:?}", r.body);
    }
    // A valid key of the known pool: refused, with nothing written and no write tried.
    let (r, made) = requests_of(&w, redeem(&w, "eve", &keys[1])).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::TOO_MANY_REQUESTS, "throttled"),
        "{:?}",
        r.body
    );
    assert_eq!(made.get("TransactWriteItems"), None, "{made:?}");
    assert_eq!(pool_counts(&w, "acme", &pool_id).await, (2, 1, 1));
}
