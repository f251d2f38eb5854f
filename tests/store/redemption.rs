//! Redemption: creating assignments, the pool's window and state, finding keys as typed,
//! and the store's conflicts.

use chrono::Duration;
use keypool::Error;
use keypool::domain::{KeyStatus, Pool};
use keypool::error::ErrorCode;
use keypool::ops::pools::PoolPatch;
use keypool::ops::redeem::Redeemed;
use keypool::ops::{inventory, pools};
use keypool::store::RedeemConflict;
use keypool::store::prelude::*;
use keypool_tests::World;

use super::fixtures::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeem_creates_once_and_returns_the_same_assignment_to_its_learner() {
    let w = World::new().await;
    let pool = new_pool(&w, ORG, 45).await;
    add_keys(&w, &pool, &["WELCOME-2026"]).await;

    let a = created(redeem(&w, "lea", "welcome 2026").await);
    assert_eq!(a.learner, user("lea"));
    assert_eq!(a.org, org(ORG));
    assert_eq!(a.pool_id, pool.pool_id);
    assert_eq!(a.course_id, pool.course_id);
    assert_eq!(a.key, code("WELCOME2026"));
    assert_eq!(a.redeemed_at, w.now());
    assert_eq!(a.expires_at, a.redeemed_at + Duration::days(45));
    assert_eq!((a.launch_count, a.last_launched_at), (0, None));
    let stored = w.store.get_assignment(&user("lea"), &a.assignment_id).await;
    assert_eq!(stored.unwrap(), Some(a.clone()));

    w.clock.advance(Duration::minutes(1));
    let again = existing(redeem(&w, "lea", "WELCOME2026").await);
    assert_eq!(again, a, "a retry returns the assignment as it was made");

    let other = redeem(&w, "max", "welcome-2026").await;
    assert!(matches!(other, Err(Error::KeyAlreadyRedeemed)), "{other:?}");

    let record = w
        .store
        .get_key(&code("WELCOME2026"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.status, KeyStatus::Redeemed);
    assert_eq!(record.redeemed_by, Some(user("lea")));
    assert_eq!(record.redeemed_at, Some(a.redeemed_at));
    assert_eq!(record.assignment_id, Some(a.assignment_id));
    let guard = w
        .store
        .pool_assignment_of(&pool.pool_id, &user("lea"))
        .await;
    assert_eq!(guard.unwrap(), Some(a.assignment_id));
    let none = w
        .store
        .pool_assignment_of(&pool.pool_id, &user("max"))
        .await;
    assert_eq!(none.unwrap(), None);

    assert_eq!(all_assignments(&w, "lea", 10).await, vec![a]);
    assert!(all_assignments(&w, "max", 10).await.is_empty());
    assert_eq!(reload(&w, &pool).await.redeemed_count, 1);
    assert_counts_match(&w, &pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_assignment_per_learner_per_pool() {
    let w = World::new().await;
    let pool = new_pool(&w, ORG, 30).await;
    let second_pool = new_pool(&w, ORG, 60).await;
    add_keys(&w, &pool, &["FIRST-KEY", "SECOND-KEY"]).await;
    add_keys(&w, &second_pool, &["THIRD-KEY"]).await;

    let first = created(redeem(&w, "lea", "FIRST-KEY").await);
    let second = existing(redeem(&w, "lea", "SECOND-KEY").await);
    assert_eq!(second.assignment_id, first.assignment_id);
    assert_eq!(second.key, code("FIRSTKEY"));
    let record = w.store.get_key(&code("SECONDKEY")).await.unwrap().unwrap();
    assert_eq!(
        record.status,
        KeyStatus::Available,
        "the second key is not spent"
    );
    assert_eq!(record.redeemed_by, None);
    assert_eq!(reload(&w, &pool).await.redeemed_count, 1);

    // Someone else may still use the second key; and the learner's other pool is separate.
    let max = created(redeem(&w, "max", "SECOND-KEY").await);
    assert_ne!(max.assignment_id, first.assignment_id);
    let third = created(redeem(&w, "lea", "THIRD-KEY").await);
    assert_eq!(third.pool_id, second_pool.pool_id);
    assert_eq!(third.expires_at, third.redeemed_at + Duration::days(60));
    assert_eq!(all_assignments(&w, "lea", 10).await.len(), 2);
    assert_counts_match(&w, &pool).await;
    assert_counts_match(&w, &second_pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeem_only_inside_the_pools_window() {
    let w = World::new().await;
    let course = new_course(&w, ORG, "Rust").await;
    let now = w.now();
    let starts = now + Duration::hours(1);
    let expires = now + Duration::hours(2);
    let pool = new_pool_between(&w, &course, "Later", starts, expires, 30).await;
    add_keys(&w, &pool, &["EARLY-BIRD", "LATE-COMER"]).await;

    let not_yet = |result: keypool::Result<Redeemed>| match result {
        Err(Error::PoolNotActive {
            starts_at,
            expires_at,
            deactivated,
        }) => {
            assert_eq!(
                (starts_at, expires_at, deactivated),
                (starts, expires, false)
            );
        }
        other => panic!("expected pool_not_active, got {other:?}"),
    };
    not_yet(redeem(&w, "lea", "EARLY-BIRD").await);
    w.clock
        .advance(Duration::hours(1) - Duration::milliseconds(1));
    not_yet(redeem(&w, "lea", "EARLY-BIRD").await);

    w.clock.advance(Duration::milliseconds(1)); // exactly starts_at: open
    let a = created(redeem(&w, "lea", "EARLY-BIRD").await);
    assert_eq!(a.redeemed_at, starts);

    w.clock.advance(Duration::hours(1)); // exactly expires_at: closed
    not_yet(redeem(&w, "max", "LATE-COMER").await);
    let record = w.store.get_key(&code("LATECOMER")).await.unwrap().unwrap();
    assert_eq!(record.status, KeyStatus::Available);
    assert_eq!(reload(&w, &pool).await.redeemed_count, 1);
    assert!(all_assignments(&w, "max", 10).await.is_empty());
    assert_counts_match(&w, &pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deactivated_pool_refuses_until_reactivated() {
    let w = World::new().await;
    let pool = new_pool(&w, ORG, 30).await;
    add_keys(&w, &pool, &["PAUSED-KEY"]).await;
    let id = pool.pool_id.to_string();
    let set = |deactivated: bool| PoolPatch {
        deactivated: Some(deactivated),
        ..PoolPatch::default()
    };
    pools::update_pool(
        w.dyn_store(),
        &keypool_tests::admin_of(&org(ORG)),
        &id,
        set(true),
        w.now(),
    )
    .await
    .unwrap();
    let result = redeem(&w, "lea", "PAUSED-KEY").await;
    assert!(
        matches!(
            result,
            Err(Error::PoolNotActive {
                deactivated: true,
                ..
            })
        ),
        "{result:?}"
    );
    assert_eq!(reload(&w, &pool).await.redeemed_count, 0);

    pools::update_pool(
        w.dyn_store(),
        &keypool_tests::admin_of(&org(ORG)),
        &id,
        set(false),
        w.now(),
    )
    .await
    .unwrap();
    created(redeem(&w, "lea", "PAUSED-KEY").await);
    assert_counts_match(&w, &pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_removed_keys_are_invalid_and_typos_are_told_apart() {
    let w = World::new().await;
    let pool = new_pool(&w, ORG, 30).await;
    add_keys(&w, &pool, &["GONE-SOON"]).await;
    let generated = generate(&w, &pool, 1).await.remove(0);
    inventory::remove_key(
        w.dyn_store(),
        &keypool_tests::admin_of(&org(ORG)),
        &pool.pool_id.to_string(),
        "GONE-SOON",
        chrono::Utc::now(),
    )
    .await
    .unwrap();

    let mut swapped = generated.as_str().as_bytes().to_vec();
    let pos = (0..19).find(|&i| swapped[i] != swapped[i + 1]).unwrap();
    swapped.swap(pos, pos + 1);
    let swapped = String::from_utf8(swapped).unwrap();
    let first_wrong = with_substitution(&generated, 0);
    let check_wrong = with_substitution(&generated, 19);
    for typed in ["NO-SUCH-KEY", "GONE-SOON", "ab", "bad key!", ""] {
        assert_invalid_key(redeem(&w, "lea", typed).await);
    }
    // A substitution or a swap of neighbours in a generated key: its check symbol says so.
    for typed in [&first_wrong, &check_wrong, &swapped] {
        let result = redeem(&w, "lea", typed).await;
        assert!(
            matches!(
                result,
                Err(Error::Refused {
                    code: ErrorCode::KeyMistyped,
                    ..
                })
            ),
            "{result:?}"
        );
    }
    assert_eq!(reload(&w, &pool).await.redeemed_count, 0);
    // The real key still works (8 failures are under the limit).
    created(redeem(&w, "lea", &generated.display_form()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn look_alike_typing_of_a_generated_key_finds_it() {
    let w = World::new().await;
    let pool = new_pool(&w, ORG, 30).await;
    let made = generate(&w, &pool, 60).await;
    let with = |c: char| {
        made.iter()
            .find(|k| k.as_str().contains(c))
            .unwrap_or_else(|| panic!("no generated key holds {c}"))
            .clone()
    };
    let zero = with('0');
    let one = made
        .iter()
        .find(|k| k.as_str().contains('1') && **k != zero)
        .expect("a key with a 1")
        .clone();

    // O for 0, lower case, and spaces between groups of four.
    let typed: String = zero.as_str().replace('0', "O").to_lowercase();
    let spaced: Vec<String> = typed
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    let a = created(redeem(&w, "lea", &spaced.join(" ")).await);
    assert_eq!(a.key, zero);

    // l for 1, in the dashed form.
    let typed = one.display_form().replace('1', "l").to_lowercase();
    let b = created(redeem(&w, "max", &typed).await);
    assert_eq!(b.key, one);
    // I for 1 finds the same, now redeemed, key: the same learner gets it back.
    let typed = one.as_str().replace('1', "I");
    assert_eq!(existing(redeem(&w, "max", &typed).await), b);
    let taken = redeem(&w, "kim", &typed).await;
    assert!(matches!(taken, Err(Error::KeyAlreadyRedeemed)), "{taken:?}");
    assert_counts_match(&w, &pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_key_is_found_exactly_as_typed() {
    let w = World::new().await;
    let pool = new_pool(&w, ORG, 30).await;
    let custom_pool = new_pool(&w, ORG, 30).await;
    let made = generate(&w, &pool, 60).await;
    let zero = made
        .iter()
        .find(|k| k.as_str().contains('0'))
        .expect("a key with a 0")
        .clone();
    // A custom key that reads like the generated key with O for 0: both exist.
    let look_alike = zero.as_str().replace('0', "O");
    add_keys(
        &w,
        &custom_pool,
        &[look_alike.as_str(), "olio-1234", "HELLOWORLDHELLOWORLD"],
    )
    .await;

    let a = created(redeem(&w, "lea", &look_alike.to_lowercase()).await);
    assert_eq!(a.key, code(&look_alike), "the custom key, as typed, wins");
    assert_eq!(a.pool_id, custom_pool.pool_id);
    assert_eq!(
        w.store.get_key(&zero).await.unwrap().unwrap().status,
        KeyStatus::Available
    );
    let b = created(redeem(&w, "max", "O L I O 1 2 3 4").await);
    assert_eq!(b.key, code("OLIO1234"));
    let c = created(redeem(&w, "kim", "hello-world-hello-world").await);
    assert_eq!(c.key, code("HELLOWORLDHELLOWORLD"));
    // The custom key's look-alike spelling is a different, unknown key.
    assert_invalid_key(redeem(&w, "ann", "0110-1234").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_redeem_names_each_conflict_and_writes_nothing_on_one() {
    let w = World::new().await;
    let pool = new_pool(&w, ORG, 30).await;
    let other_pool = new_pool(&w, ORG, 30).await;
    add_keys(&w, &pool, &["KEY-A", "KEY-B", "KEY-C"]).await;
    add_keys(&w, &other_pool, &["KEY-OTHER"]).await;
    let now = w.now();
    let s = &w.store;

    let first = assignment_for(&pool, "lea", &code("KEYA"), now);
    assert_eq!(s.redeem(&first, &pool, now, &[]).await.unwrap(), Ok(()));

    // Each refused attempt below must leave no assignment, guard, count or key change behind.
    let refused = [
        // The key is redeemed already.
        (
            assignment_for(&pool, "max", &code("KEYA"), now),
            RedeemConflict::KeyNotAvailable,
        ),
        // The key does not exist.
        (
            assignment_for(&pool, "max", &code("NOSUCHKEY"), now),
            RedeemConflict::KeyNotAvailable,
        ),
        // The key belongs to another pool.
        (
            assignment_for(&pool, "max", &code("KEYOTHER"), now),
            RedeemConflict::KeyNotAvailable,
        ),
        // The learner already holds an assignment from this pool.
        (
            assignment_for(&pool, "lea", &code("KEYB"), now),
            RedeemConflict::LearnerHoldsAssignment,
        ),
    ];
    for (assignment, conflict) in &refused {
        assert_eq!(
            s.redeem(assignment, &pool, now, &[]).await.unwrap(),
            Err(*conflict)
        );
        let stored = s
            .get_assignment(&assignment.learner, &assignment.assignment_id)
            .await;
        assert_eq!(stored.unwrap(), None, "{conflict:?}");
    }
    // A pool edited since it was read (its settings shaped the assignment) is refused, so the
    // redemption re-reads it instead of using a stale window or content availability. The
    // store takes the caller's word for the window of the version it read: that is what the
    // version condition is for.
    let edited = Pool {
        version: pool.version + 1,
        content_availability_days: 7,
        ..pool.clone()
    };
    assert!(
        s.update_pool_settings(&edited, pool.version, &keypool_tests::test_record())
            .await
            .unwrap()
    );
    let stale = assignment_for(&pool, "max", &code("KEYC"), now);
    assert_eq!(
        s.redeem(&stale, &pool, now, &[]).await.unwrap(),
        Err(RedeemConflict::PoolNotActive)
    );
    assert_eq!(
        s.get_assignment(&stale.learner, &stale.assignment_id)
            .await
            .unwrap(),
        None
    );

    assert_eq!(
        s.pool_assignment_of(&pool.pool_id, &user("max"))
            .await
            .unwrap(),
        None
    );
    for k in ["KEYB", "KEYC", "KEYOTHER"] {
        let record = s.get_key(&code(k)).await.unwrap().unwrap();
        assert_eq!(record.status, KeyStatus::Available, "{k}");
        assert_eq!(record.redeemed_by, None, "{k}");
    }
    assert!(s.get_key(&code("NOSUCHKEY")).await.unwrap().is_none());
    assert_eq!(all_assignments(&w, "lea", 10).await, vec![first]);
    assert!(all_assignments(&w, "max", 10).await.is_empty());
    assert_eq!(reload(&w, &pool).await.redeemed_count, 1);
    assert_counts_match(&w, &pool).await;
    assert_counts_match(&w, &other_pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_a_pools_window_moves_redemption() {
    let w = World::new().await;
    let pool = new_pool(&w, ORG, 30).await;
    add_keys(&w, &pool, &["WINDOW-1", "WINDOW-2", "WINDOW-3"]).await;
    let id = pool.pool_id.to_string();
    let now = w.now();
    let acme = keypool_tests::admin_of(&org(ORG));
    let update = |patch: PoolPatch| pools::update_pool(w.dyn_store(), &acme, &id, patch, now);

    // Expired by an edit: refused with the new dates.
    let ended = PoolPatch {
        expires_at: Some(iso(now)),
        ..PoolPatch::default()
    };
    update(ended).await.unwrap();
    match redeem(&w, "lea", "WINDOW-1").await {
        Err(Error::PoolNotActive { expires_at, .. }) => assert_eq!(expires_at, now),
        other => panic!("expected pool_not_active, got {other:?}"),
    }

    // Extended again: open.
    let extended = PoolPatch {
        expires_at: Some(iso(now + Duration::days(1))),
        ..PoolPatch::default()
    };
    update(extended).await.unwrap();
    created(redeem(&w, "lea", "WINDOW-1").await);

    // Postponed: closed until the new start, open from it.
    let later = now + Duration::hours(2);
    let postponed = PoolPatch {
        starts_at: Some(iso(later)),
        ..PoolPatch::default()
    };
    update(postponed).await.unwrap();
    match redeem(&w, "max", "WINDOW-2").await {
        Err(Error::PoolNotActive { starts_at, .. }) => assert_eq!(starts_at, later),
        other => panic!("expected pool_not_active, got {other:?}"),
    }
    w.clock.advance(Duration::hours(2));
    created(redeem(&w, "max", "WINDOW-2").await);
    assert_counts_match(&w, &pool).await;
}
