//! Keys: inserting, pasting, generating.

use keypool::error::Missing;
use std::collections::HashSet;

use chrono::Duration;
use keypool::Error;
use keypool::domain::{KeySource, KeyStatus, NewKey, PoolId};
use keypool::keys::{self, KeyCode};
use keypool::ops::add_keys;
use keypool::ops::key_jobs::generate;
use keypool::store::InsertOutcome;
use keypool::store::prelude::*;
use keypool_tests::World;

use super::fixtures::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_keys_reports_taken_keys_and_counts_only_inserted_ones() {
    let w = World::new().await;
    let a = new_pool(&w, ORG, 30).await;
    let b = new_pool(&w, ORG, 30).await;
    let now = w.now();

    let first = w
        .store
        .insert_keys(
            &a,
            &[custom("AAAA1111"), custom("BBBB2222")],
            now,
            Some(&keypool_tests::test_record()),
        )
        .await
        .unwrap();
    assert_eq!(first.inserted, vec![code("AAAA1111"), code("BBBB2222")]);
    assert!(first.taken.is_empty());

    // Taken in this pool, taken in another pool, and new.
    let second = w
        .store
        .insert_keys(
            &b,
            &[custom("BBBB2222"), custom("CCCC3333"), custom("AAAA1111")],
            now,
            Some(&keypool_tests::test_record()),
        )
        .await
        .unwrap();
    assert_eq!(
        second,
        InsertOutcome {
            inserted: vec![code("CCCC3333")],
            taken: vec![code("BBBB2222"), code("AAAA1111")],
        }
    );
    assert_eq!(reload(&w, &a).await.total_keys, 2);
    assert_eq!(reload(&w, &b).await.total_keys, 1);
    assert_eq!(
        w.store
            .get_key(&code("AAAA1111"))
            .await
            .unwrap()
            .unwrap()
            .pool_id,
        a.pool_id
    );

    // Across the store's transaction size, with taken keys in both batches.
    let batch: Vec<NewKey> = (0..150).map(|i| custom(&format!("BULK{i:04}"))).collect();
    let half: Vec<NewKey> = batch.iter().step_by(2).cloned().collect();
    let outcome = w
        .store
        .insert_keys(&a, &half, now, Some(&keypool_tests::test_record()))
        .await
        .unwrap();
    assert_eq!(outcome.inserted.len(), 75);
    let outcome = w
        .store
        .insert_keys(&b, &batch, now, Some(&keypool_tests::test_record()))
        .await
        .unwrap();
    assert_eq!(outcome.inserted.len(), 75);
    assert_eq!(outcome.taken.len(), 75);
    let taken: HashSet<_> = outcome.taken.into_iter().collect();
    let expected: HashSet<_> = half.iter().map(|k| k.key.clone()).collect();
    assert_eq!(taken, expected);
    assert_counts_match(&w, &a).await;
    assert_counts_match(&w, &b).await;
    assert_eq!(reload(&w, &a).await.total_keys, 77);
    assert_eq!(reload(&w, &b).await.total_keys, 76);

    // An empty insert is a no-op.
    let none = w
        .store
        .insert_keys(&a, &[], now, Some(&keypool_tests::test_record()))
        .await
        .unwrap();
    assert_eq!(none, InsertOutcome::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_keys_finds_keys_in_any_pool() {
    let w = World::new().await;
    let a = new_pool(&w, ORG, 30).await;
    let b = new_pool(&w, OTHER_ORG, 30).await;
    add_keys(&w, &a, &["ALPHA-1"]).await;
    add_keys(&w, &b, &["BRAVO-2"]).await;
    // More than one batch of look-ups, with the hits at both ends.
    let mut probe: Vec<KeyCode> = vec![code("alpha1")];
    probe.extend((0..150).map(|i| code(&format!("MISS{i:04}"))));
    probe.push(code("bravo-2"));
    let found: HashSet<_> = w
        .store
        .existing_keys(&probe)
        .await
        .unwrap()
        .into_iter()
        .collect();
    // Each with the organization that holds it.
    assert_eq!(
        found,
        HashSet::from([
            (code("ALPHA1"), Some(org(ORG))),
            (code("BRAVO2"), Some(org(OTHER_ORG)))
        ])
    );
    assert!(w.store.existing_keys(&[]).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_key_records_say_where_they_came_from() {
    let w = World::new().await;
    let pool = new_pool(&w, ORG, 30).await;
    w.clock.advance(Duration::seconds(3));
    add_keys(&w, &pool, &["welcome-2026"]).await;
    let generated = generate(&w, &pool, 1).await.remove(0);

    let record = w
        .store
        .get_key(&code("WELCOME2026"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.key.as_str(), "WELCOME2026");
    assert_eq!(record.org, org(ORG));
    assert_eq!(record.pool_id, pool.pool_id);
    assert_eq!(record.status, KeyStatus::Available);
    assert_eq!(record.source, KeySource::Custom);
    assert_eq!(record.created_at, w.now());
    assert_eq!(
        (record.redeemed_by, record.redeemed_at, record.assignment_id),
        (None, None, None)
    );
    let record = w.store.get_key(&generated).await.unwrap().unwrap();
    assert_eq!(record.source, KeySource::Generated);
    assert!(w.store.get_key(&code("NOSUCHKEY")).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paste_with_one_bad_line_writes_nothing() {
    let w = World::new().await;
    let pool = new_pool(&w, ORG, 30).await;
    let id = pool.pool_id.to_string();
    let lines = numbered(&["GOOD-KEY-1", "ab", "GOOD-KEY-2"]);

    let result = w.add_custom_keys(ORG, &id, &lines, false).await;
    let rejected = rejected_lines(result);
    assert_eq!(line_codes(&rejected), [(2, "too_short")]);
    assert_eq!(rejected[0]["key"], "ab");
    assert_eq!(reload(&w, &pool).await.total_keys, 0);
    assert!(all_keys(&w, &pool, None, 10).await.is_empty());
    let good = [code("GOODKEY1"), code("GOODKEY2")];
    assert!(w.store.existing_keys(&good).await.unwrap().is_empty());

    // The same paste with partial=true adds the good lines and reports the bad one.
    let report = w.add_custom_keys(ORG, &id, &lines, true).await.unwrap();
    assert_eq!(report.added, ["GOODKEY1", "GOODKEY2"]);
    assert_eq!(report.rejected.len(), 1);
    assert_eq!(
        (report.rejected[0].line, report.rejected[0].code.as_str()),
        (2, "too_short")
    );
    assert_eq!(reload(&w, &pool).await.total_keys, 2);
    assert_counts_match(&w, &pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rejected_line_says_why() {
    let w = World::new().await;
    let pool = new_pool(&w, ORG, 30).await;
    let elsewhere = new_pool(&w, OTHER_ORG, 30).await;
    add_keys(&w, &pool, &["ALREADY-HERE"]).await;
    add_keys(&w, &elsewhere, &["TEAM-ALPHA"]).await;
    let bad_check = with_substitution(&generate(&w, &elsewhere, 1).await[0], 19);

    let too_long = "A".repeat(keys::MAX_LEN + 1);
    let body = [
        "abcd-1234",        // 1: fine
        "ab",               // 2: too short
        "ABCD1234",         // 3: the same key as line 1
        "bad key!",         // 4: invalid characters
        too_long.as_str(),  // 5: too long
        " - ",              // 6: nothing left
        bad_check.as_str(), // 7: generated shape with a wrong check symbol
        "team alpha",       // 8: exists in another organization's pool
        "already-here",     // 9: exists in this pool
        "",                 // 10: blank, skipped
        "FRESH-KEY-0001",   // 11: fine
    ]
    .join("\r\n");
    let lines = add_keys::CheckedPaste::from_text(&body);
    let id = pool.pool_id.to_string();
    let expected: [(usize, &str); 8] = [
        (2, "too_short"),
        (3, "duplicate_in_request"),
        (4, "invalid_characters"),
        (5, "too_long"),
        (6, "empty_key"),
        (7, "reserved_key_shape"),
        (8, "already_exists"),
        (9, "already_exists"),
    ];

    let result = w.add_custom_keys(ORG, &id, &lines, false).await;
    let rejected = rejected_lines(result);
    let want: Vec<(u64, &str)> = expected.iter().map(|&(l, c)| (l as u64, c)).collect();
    assert_eq!(line_codes(&rejected), want);
    assert!(rejected[1]["message"].as_str().unwrap().contains("line 1"));
    assert_eq!(
        reload(&w, &pool).await.total_keys,
        1,
        "only the earlier key"
    );

    let report = w.add_custom_keys(ORG, &id, &lines, true).await.unwrap();
    assert_eq!(report.added, ["ABCD1234", "FRESHKEY0001"]);
    let got: Vec<(usize, &str)> = report
        .rejected
        .iter()
        .map(|r| (r.line, r.code.as_str()))
        .collect();
    assert_eq!(got, expected);
    assert_counts_match(&w, &pool).await;
    assert_counts_match(&w, &elsewhere).await;
    let team = w.store.get_key(&code("TEAMALPHA")).await.unwrap().unwrap();
    assert_eq!(
        team.pool_id, elsewhere.pool_id,
        "the other pool keeps its key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_unique_across_pools_whatever_their_spelling() {
    let w = World::new().await;
    let a = new_pool(&w, ORG, 30).await;
    let b = new_pool(&w, ORG, 30).await;
    add_keys(&w, &a, &["Team-Alpha-7"]).await;
    for spelling in [
        "TEAMALPHA7",
        "team alpha 7",
        "t-e-a-m-a-l-p-h-a-7",
        " teamAlpha7 ",
    ] {
        let lines = numbered(&[spelling]);
        let id = b.pool_id.to_string();
        let result = w.add_custom_keys(ORG, &id, &lines, false).await;
        assert_eq!(bad_request_code(result), "keys_rejected", "{spelling}");
        let report = w.add_custom_keys(ORG, &id, &lines, true).await.unwrap();
        assert!(report.added.is_empty(), "{spelling}");
        assert_eq!(report.rejected[0].code.as_str(), "already_exists");
    }
    assert_eq!(reload(&w, &b).await.total_keys, 0);
    assert_counts_match(&w, &a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_oversized_and_misdirected_pastes_are_refused() {
    let w = World::new().await;
    let pool = new_pool(&w, ORG, 30).await;
    let id = pool.pool_id.to_string();

    let blank = add_keys::CheckedPaste::from_text("\n  \n\r\n");
    assert!(blank.is_empty());
    let result = w.add_custom_keys(ORG, &id, &blank, false).await;
    assert_eq!(bad_request_code(result), "no_keys");

    let texts: Vec<String> = (0..=add_keys::MAX_SYNC_KEYS)
        .map(|i| format!("KEY{i:06}"))
        .collect();
    let many = add_keys::CheckedPaste::from_list(&texts);
    assert_eq!(many.len(), add_keys::MAX_SYNC_KEYS + 1);
    let result = w.add_custom_keys(ORG, &id, &many, true).await;
    // The routes send longer lists to an import job: more is a caller's mistake.
    assert!(matches!(result, Err(Error::Internal(_))), "{result:?}");

    let one = numbered(&["VALID-KEY-1"]);
    let result = w.add_custom_keys(OTHER_ORG, &id, &one, true).await;
    assert!(
        matches!(result, Err(Error::NotFound(Missing::Pool))),
        "{result:?}"
    );
    let unknown = PoolId::new().to_string();
    let result = w.add_custom_keys(ORG, &unknown, &one, true).await;
    assert!(
        matches!(result, Err(Error::NotFound(Missing::Pool))),
        "{result:?}"
    );
    let result = w.add_custom_keys(ORG, "x", &one, true).await;
    assert!(
        matches!(result, Err(Error::NotFound(Missing::Pool))),
        "{result:?}"
    );

    assert_eq!(reload(&w, &pool).await.total_keys, 0);
    assert!(all_keys(&w, &pool, None, 10).await.is_empty());
    assert!(w.store.get_key(&code("VALIDKEY1")).await.unwrap().is_none());
    assert!(w.store.get_key(&code("KEY000000")).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paste_of_the_maximum_size_goes_in_whole_and_only_once() {
    let w = World::new().await;
    if w.skip_volume_on_moto() {
        return;
    }
    let pool = new_pool(&w, ORG, 30).await;
    let id = pool.pool_id.to_string();
    let texts: Vec<String> = (0..add_keys::MAX_SYNC_KEYS)
        .map(|i| format!("BULK-{i:06}"))
        .collect();
    let lines = add_keys::CheckedPaste::from_list(&texts);
    let report = w.add_custom_keys(ORG, &id, &lines, false).await.unwrap();
    assert_eq!(report.added.len(), add_keys::MAX_SYNC_KEYS);
    assert!(report.rejected.is_empty());
    let max = add_keys::MAX_SYNC_KEYS as u64;
    assert_eq!(reload(&w, &pool).await.total_keys, max);

    // The same paste again: every line already exists, and nothing changes.
    let again = w.add_custom_keys(ORG, &id, &lines, false).await;
    let rejected = rejected_lines(again);
    // The answer lists the first thousand (and counts them all).
    assert_eq!(rejected.len(), add_keys::MAX_REJECTED_SHOWN);
    assert!(rejected.iter().all(|r| r["code"] == "already_exists"));
    assert_eq!(reload(&w, &pool).await.total_keys, max);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_keys_rejects_bad_counts_and_writes_nothing() {
    let w = World::new().await;
    let pool = new_pool(&w, ORG, 30).await;
    let id = pool.pool_id.to_string();
    for count in [
        0,
        -1,
        i64::MIN,
        add_keys::MAX_SYNC_KEYS as i64 + 1,
        i64::MAX,
    ] {
        let result = generate::generate_keys(
            w.dyn_store(),
            &keypool_tests::admin_of(&org(ORG)),
            &id,
            count,
            w.now(),
        )
        .await;
        assert_eq!(field_errors(result), ["count"], "count {count}");
    }
    let result = generate::generate_keys(
        w.dyn_store(),
        &keypool_tests::admin_of(&org(OTHER_ORG)),
        &id,
        5,
        w.now(),
    )
    .await;
    assert!(
        matches!(result, Err(Error::NotFound(Missing::Pool))),
        "{result:?}"
    );
    let unknown = PoolId::new().to_string();
    let result = generate::generate_keys(
        w.dyn_store(),
        &keypool_tests::admin_of(&org(ORG)),
        &unknown,
        5,
        w.now(),
    )
    .await;
    assert!(
        matches!(result, Err(Error::NotFound(Missing::Pool))),
        "{result:?}"
    );

    assert_eq!(reload(&w, &pool).await.total_keys, 0);
    assert!(all_keys(&w, &pool, None, 10).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_keys_makes_distinct_valid_keys_and_counts_them() {
    let w = World::new().await;
    let pool = new_pool(&w, ORG, 30).await;
    let made = generate(&w, &pool, 250).await;
    assert_eq!(made.len(), 250);
    let distinct: HashSet<_> = made.iter().cloned().collect();
    assert_eq!(distinct.len(), 250);
    assert!(made.iter().all(KeyCode::is_valid_generated));
    assert_eq!(reload(&w, &pool).await.total_keys, 250);

    let listed = all_keys(&w, &pool, None, 64).await;
    assert_eq!(listed.len(), 250);
    assert_eq!(key_set(&listed), distinct);
    assert!(listed.iter().all(|r| r.source == KeySource::Generated));
    assert!(listed.iter().all(|r| r.status == KeyStatus::Available));

    // A second generation adds to the first.
    let more = generate(&w, &pool, 1).await;
    assert!(!distinct.contains(&more[0]));
    assert_counts_match(&w, &pool).await;
    assert_eq!(reload(&w, &pool).await.total_keys, 251);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_keys_accepts_the_maximum_count() {
    let w = World::new().await;
    if w.skip_volume_on_moto() {
        return;
    }
    let pool = new_pool(&w, ORG, 30).await;
    let made = generate(&w, &pool, add_keys::MAX_SYNC_KEYS as i64).await;
    assert_eq!(made.len(), add_keys::MAX_SYNC_KEYS);
    assert_eq!(
        made.iter().collect::<HashSet<_>>().len(),
        add_keys::MAX_SYNC_KEYS
    );
    assert_eq!(
        reload(&w, &pool).await.total_keys,
        add_keys::MAX_SYNC_KEYS as u64
    );
}
