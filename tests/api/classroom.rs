//! A classroom behind one address (one NAT): races, typos and early birds never lock it out,
//! while a guesser with any number of accounts behind one address still gets no more answers
//! about custom keys than the address's limit.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::StatusCode;
use keypool::settings::Settings;
use keypool_tests::{Reply, World};
use serde_json::json;

use super::fixtures::*;

/// The room's one address, as the server sees it.
const ROOM: &str = "203.0.113.7:50000";

/// Redeems `key` for `learner` from the room.
async fn redeem_in_room(w: &World, learner: &str, key: &str) -> Reply {
    w.call_from(
        ROOM.parse().unwrap(),
        POST,
        "/v1/redemptions",
        Some(&w.learner(learner)),
        Some(json!({ "key": key })),
    )
    .await
}

/// Redemptions from the room that start together, one task each; answers in input order.
async fn race_in_room(w: &Arc<World>, attempts: Vec<(String, String)>) -> Vec<Reply> {
    let barrier = Arc::new(tokio::sync::Barrier::new(attempts.len()));
    let tasks: Vec<_> = attempts
        .into_iter()
        .map(|(learner, key)| {
            let (w, barrier) = (w.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                redeem_in_room(&w, &learner, &key).await
            })
        })
        .collect();
    let mut replies = Vec::new();
    for task in tasks {
        replies.push(task.await.expect("a redemption task"));
    }
    replies
}

/// Replaces one symbol of a generated key with another of the alphabet: a typo the check
/// symbol catches.
fn one_symbol_wrong(key: &str, seed: usize) -> String {
    let mut chars: Vec<char> = key.chars().collect();
    let symbols: Vec<usize> = (0..chars.len()).filter(|&i| chars[i] != '-').collect();
    let at = symbols[seed % symbols.len()];
    let alphabet = keypool::keys::ALPHABET;
    let now = alphabet
        .iter()
        .position(|&c| c as char == chars[at])
        .unwrap();
    chars[at] = alphabet[(now + 1 + seed % 31) % 32] as char;
    chars.into_iter().collect()
}

/// A trainer posts 20 keys on a shared sheet and 320 learners of one room race for them, 16
/// per key: one 201 per key, every loser 409 `key_already_redeemed` (they were 429 and the
/// whole room was refused for 14 minutes), exact counts, and the room redeems on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shared_sheet_raced_by_a_room_answers_every_loser_409() {
    let w = Arc::new(World::new().await);
    let (_, pool_id) = w.pool("acme", 30).await;
    let sheet = w.generate("acme", &pool_id, 20).await;
    let own = w.generate("acme", &pool_id, 1).await;
    let attempts = (0..320)
        .map(|i| (format!("room-{i:03}"), sheet[i % 20].clone()))
        .collect();
    let replies = race_in_room(&w, attempts).await;

    let mut winners: HashMap<String, usize> = HashMap::new();
    for (i, r) in replies.iter().enumerate() {
        match r.status {
            StatusCode::CREATED => *winners.entry(sheet[i % 20].clone()).or_default() += 1,
            StatusCode::CONFLICT => assert_eq!(r.code(), "key_already_redeemed", "{:?}", r.body),
            other => panic!("learner {i}: {other} {:?}", r.body),
        }
    }
    assert_eq!(winners.len(), 20, "{winners:?}");
    assert!(winners.values().all(|&n| n == 1), "{winners:?}");
    assert_eq!(pool_counts(&w, "acme", &pool_id).await, (21, 20, 1));
    let redeemed = all_keys(&w, "acme", &pool_id, Some("redeemed")).await;
    assert_eq!(redeemed.len(), 20);

    // Right after, a learner of the room redeems a key of their own.
    let r = redeem_in_room(&w, "late-comer", &own[0]).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
}

/// A class of 300 with a key each: 30 first type one symbol wrong, 20 try before the pool
/// opens. Every one of them ends with an assignment and nobody in the room is ever refused
/// (that many failures from one address locked the room out as the course started).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_class_with_typos_and_early_birds_all_redeem_and_none_is_throttled() {
    let w = Arc::new(World::new().await);
    let admin = w.admin("acme");
    let course = w
        .call(
            POST,
            "/v1/courses",
            Some(&admin),
            Some(json!({"title": "Lab"})),
        )
        .await;
    let opens = w.now() + chrono::Duration::minutes(1);
    let pool = w
        .call(
            POST,
            "/v1/pools",
            Some(&admin),
            Some(json!({
                "name": "Morning class",
                "course_id": id(&course, "course_id"),
                "starts_at": keypool::time::format(&opens),
                "expires_at": keypool::time::format(&(opens + chrono::Duration::days(1))),
                "content_availability_days": 30,
            })),
        )
        .await;
    assert_eq!(pool.status, StatusCode::CREATED, "{:?}", pool.body);
    let pool_id = id(&pool, "pool_id");
    let keys = w.generate("acme", &pool_id, 300).await;
    let learner = |i: usize| format!("pupil-{i:03}");

    // Early birds, before the pool opens: told when it does.
    let early = race_in_room(&w, (0..20).map(|i| (learner(i), keys[i].clone())).collect()).await;
    for r in &early {
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::FORBIDDEN, "pool_not_active"),
            "{:?}",
            r.body
        );
    }
    w.clock.advance(chrono::Duration::minutes(1));

    // Typos first, by 30 of them (the early birds among them), all at once.
    let typos = race_in_room(
        &w,
        (10..40)
            .map(|i| (learner(i), one_symbol_wrong(&keys[i], i)))
            .collect(),
    )
    .await;
    for r in &typos {
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "key_mistyped"),
            "{:?}",
            r.body
        );
        assert_eq!(r.body["error"]["details"]["check_symbol_position"], 20);
    }

    // Then the whole class, at once.
    let replies = race_in_room(
        &w,
        (0..300).map(|i| (learner(i), keys[i].clone())).collect(),
    )
    .await;
    for (i, r) in replies.iter().enumerate() {
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "{}: {:?}",
            learner(i),
            r.body
        );
    }
    assert_eq!(pool_counts(&w, "acme", &pool_id).await, (300, 300, 0));
}

/// A guesser behind one address with any number of accounts gets no more answers about
/// custom keys than the address's limit, while the room's learners go on redeeming their
/// generated keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_guesser_with_many_accounts_is_bounded_and_the_room_redeems_on() {
    let w = Arc::new(World::new().await);
    let (_, pool_id) = w.pool("acme", 30).await;
    let admin = w.admin("acme");
    let added = w
        .call(
            POST,
            &format!("/v1/pools/{pool_id}/keys"),
            Some(&admin),
            Some(json!({"keys": ["ROOM-KEY-01", "ROOM-KEY-02"]})),
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{:?}", added.body);
    let generated = w.generate("acme", &pool_id, 2).await;
    let max = Settings::default().address_failures.max as usize;

    // 100 accounts, one guess each, all at once: at most the address's limit answered.
    let guesses = (0..100)
        .map(|i| (format!("sock-{i:03}"), format!("GUESS-{i:04}")))
        .collect();
    let replies = race_in_room(&w, guesses).await;
    let answered = replies
        .iter()
        .filter(|r| r.status != StatusCode::TOO_MANY_REQUESTS)
        .count();
    for r in &replies {
        assert!(
            matches!(
                (r.status, r.code()),
                (StatusCode::NOT_FOUND, "invalid_key")
                    | (StatusCode::TOO_MANY_REQUESTS, "throttled")
            ),
            "{:?}",
            r.body
        );
    }
    assert_eq!(answered, max, "the address's limit is {max}");

    // A custom key, real or not, is refused from that address: the answer tells nothing.
    let r = redeem_in_room(&w, "fresh-account", "ROOM-KEY-01").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{:?}", r.body);
    // Generated keys cannot be guessed, so the room's learners redeem theirs.
    let r = redeem_in_room(&w, "honest-pupil", &generated[0]).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    // Another address is not concerned.
    let r = w
        .call_from(
            "198.51.100.1:40000".parse().unwrap(),
            POST,
            "/v1/redemptions",
            Some(&w.learner("elsewhere")),
            Some(json!({"key": "ROOM-KEY-02"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
}

/// One learner's 40 parallel guesses get no more answers than the learner's limit, typos the
/// check symbol catches included.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_learners_parallel_guesses_get_no_more_than_the_learners_limit() {
    let w = Arc::new(World::new().await);
    let (_, pool_id) = w.pool("acme", 30).await;
    let keys = w.generate("acme", &pool_id, 1).await;
    let max = Settings::default().learner_failures.max as usize;
    for guesses in [
        (0..40)
            .map(|i| ("greedy".to_string(), format!("GUESS-{i:04}")))
            .collect::<Vec<_>>(),
        (0..40)
            .map(|i| ("typist".to_string(), one_symbol_wrong(&keys[0], i)))
            .collect(),
    ] {
        let replies = race_in_room(&w, guesses).await;
        let answered = replies
            .iter()
            .filter(|r| r.status != StatusCode::TOO_MANY_REQUESTS)
            .count();
        assert_eq!(
            answered,
            max,
            "{:?}",
            replies.iter().map(|r| r.code()).collect::<Vec<_>>()
        );
    }
}
