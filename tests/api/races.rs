//! Races: many requests at once against the same keys and pools; each race runs on a plain
//! world and with injected conflicts (`race_test!`), so retries must keep every answer and
//! count exact.

use std::collections::HashSet;
use std::sync::Arc;

use axum::http::{Method, StatusCode};
use keypool_tests::{Reply, World, race_test, send};
use serde_json::json;

use super::fixtures::*;

race_test!(
    /// 200 keys (20 on moto), 32 learners racing for each at once: one winner per key, every
    /// loser 409, and the counts and records agree afterwards.
    race_many_learners_for_each_key,
    race_many_learners_for_each_key_with_conflicts,
    many_learners_for_each_key,
    threads = 4
);

async fn many_learners_for_each_key(w: Arc<World>) {
    const LEARNERS: usize = 32;
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

race_test!(
    /// One learner racing with every key of a pool at once still gets one assignment and
    /// burns one key; the other keys are answered with it until they count past the learner's
    /// limit.
    race_one_learner_many_keys_of_one_pool,
    race_one_learner_many_keys_of_one_pool_with_conflicts,
    one_learner_many_keys_of_one_pool,
    threads = 4
);

async fn one_learner_many_keys_of_one_pool(w: Arc<World>) {
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
    let (mut created, mut refused) = (0, 0);
    let mut ids = HashSet::new();
    for t in tasks {
        let r = t.await.unwrap();
        match r.status {
            StatusCode::CREATED | StatusCode::OK => {
                created += usize::from(r.status == StatusCode::CREATED);
                ids.insert(r.body["assignment_id"].to_string());
            }
            // Another key of a pool the learner holds tells that it is valid: it counts as
            // a failed attempt, and past the limit the learner is throttled.
            StatusCode::TOO_MANY_REQUESTS => refused += 1,
            other => panic!("{other}: {:?}", r.body),
        }
    }
    assert_eq!((created, ids.len()), (1, 1));
    let limit = keypool::settings::Settings::default().learner_failures.max as usize;
    assert!(refused >= 32 - 1 - limit, "{refused} refused");
    assert_eq!(pool_counts(&w, "acme", &pool_id).await, (32, 1, 31));
}

race_test!(
    /// Removing a key while learners redeem it: exactly one side wins, and the counts agree.
    race_removal_against_redemption,
    race_removal_against_redemption_with_conflicts,
    removal_against_redemption,
    threads = 4
);

async fn removal_against_redemption(w: Arc<World>) {
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
