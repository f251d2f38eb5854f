//! Throttling: failed redemptions per learner and per client address, over a sliding window,
//! counted race-free so that racing guesses get no more answers than the limits allow.

use keypool::error::ErrorCode;
use std::sync::Arc;

use chrono::Duration;
use keypool::Error;
use keypool::domain::{Counter, CounterId, KeyStatus, Limit, Step};
use keypool::ops::redeem::Redeemed;
use keypool::settings::Settings;
use keypool::store::prelude::*;
use keypool_tests::{World, race_test};

use super::fixtures::*;

fn limits() -> Settings {
    Settings::default()
}

fn throttled(result: &keypool::Result<Redeemed>) -> Option<u64> {
    match result {
        Err(Error::Throttled { retry_after_secs }) => Some(*retry_after_secs),
        _ => None,
    }
}

/// Redemptions that start at the same moment, on tasks of their own; answers in input order.
async fn race(
    w: &Arc<World>,
    guesses: Vec<(&'static str, String)>,
) -> Vec<(String, keypool::Result<Redeemed>)> {
    let barrier = Arc::new(tokio::sync::Barrier::new(guesses.len()));
    let tasks: Vec<_> = guesses
        .into_iter()
        .map(|(learner, typed)| {
            let (w, barrier) = (w.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let result = redeem(&w, learner, &typed).await;
                (typed, result)
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("a redemption task"));
    }
    results
}

fn expect_throttled(result: keypool::Result<Redeemed>) -> u64 {
    throttled(&result).unwrap_or_else(|| panic!("expected throttled, got {result:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_failures_throttle_the_learner_until_they_fade() {
    let w = World::new().await;
    let pool = new_pool(&w, ORG, 30).await;
    add_keys(&w, &pool, &["REAL-KEY-1", "REAL-KEY-2"]).await;

    for i in 0..limits().learner_failures.max {
        let result = redeem(&w, "lea", &format!("WRONG-{i}")).await;
        assert!(
            matches!(result, Err(Error::InvalidKey)),
            "attempt {i}: {result:?}"
        );
    }
    let wait = expect_throttled(redeem(&w, "lea", "REAL-KEY-1").await);
    assert!(wait > 0, "{wait}");
    assert!(wait <= 2 * 15 * 60, "{wait}");
    let record = w.store.get_key(&code("REALKEY1")).await.unwrap().unwrap();
    assert_eq!(
        record.status,
        KeyStatus::Available,
        "nothing redeemed while throttled"
    );
    expect_throttled(redeem(&w, "lea", "WRONG-AGAIN").await);

    // Throttling is per learner.
    created(redeem(&w, "max", "REAL-KEY-2").await);

    // Waiting a second less than advertised is not enough; waiting as advertised is.
    if wait > 1 {
        w.clock.advance(Duration::seconds(wait as i64 - 1));
        expect_throttled(redeem(&w, "lea", "REAL-KEY-1").await);
        w.clock.advance(Duration::seconds(1));
    } else {
        w.clock.advance(Duration::seconds(1));
    }
    let a = created(redeem(&w, "lea", "REAL-KEY-1").await);
    assert_eq!(a.key, code("REALKEY1"));
    assert_counts_match(&w, &pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_boundary_does_not_double_the_guesses() {
    let w = World::new().await;
    let pool = new_pool(&w, ORG, 30).await;
    add_keys(&w, &pool, &["REAL-KEY-1"]).await;
    // Just before a 15-minute boundary of the clock.
    let now = w.now().timestamp();
    let to_boundary = 900 - now.rem_euclid(900);
    w.clock.advance(Duration::seconds(to_boundary - 2));
    let mut answered = 0;
    for i in 0..10 {
        if throttled(&redeem(&w, "lea", &format!("WRONG-{i}")).await).is_none() {
            answered += 1;
        }
    }
    w.clock.advance(Duration::seconds(4));
    for i in 10..30 {
        if throttled(&redeem(&w, "lea", &format!("WRONG-{i}")).await).is_none() {
            answered += 1;
        }
    }
    assert_eq!(
        answered, 10,
        "a fixed window answers 20 across the boundary"
    );
}

/// Racing wrong guesses of one learner: exactly the limit's worth are answered. (No twin with
/// injected conflicts: wrong guesses make no transaction, only conditional counter updates.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_guesses_get_no_more_answers_than_the_limit() {
    racing_guesses(Arc::new(World::new().await)).await;
}

async fn racing_guesses(w: Arc<World>) {
    let pool = new_pool(&w, ORG, 30).await;
    add_keys(&w, &pool, &["REAL-KEY-1"]).await;
    let guesses = (0..40).map(|i| ("lea", format!("GUESS-{i:03}"))).collect();
    let results = race(&w, guesses).await;
    let invalid = results
        .iter()
        .filter(|(_, r)| matches!(r, Err(Error::InvalidKey)))
        .count();
    let refused = results
        .iter()
        .filter(|(_, r)| throttled(r).is_some())
        .count();
    assert_eq!((invalid, refused), (10, 30), "{results:?}");
}

race_test!(
    /// Valid keys racing wrong guesses for the last failure left: none redeems past it.
    a_racing_valid_key_does_not_redeem_past_the_limit,
    a_racing_valid_key_does_not_redeem_past_the_limit_with_conflicts,
    racing_valid_keys,
    threads = 2
);

async fn racing_valid_keys(w: Arc<World>) {
    // Ten valid keys, each in a pool of its own, so that each could create an assignment.
    let mut keys = Vec::new();
    for i in 0..10 {
        let pool = new_pool(&w, ORG, 30).await;
        let key = format!("VALID-KEY-{i:02}");
        add_keys(&w, &pool, &[key.as_str()]).await;
        keys.push(key);
    }
    for i in 0..9 {
        assert!(matches!(
            redeem(&w, "lea", &format!("WRONG-{i}")).await,
            Err(Error::InvalidKey)
        ));
    }
    // One failure left: ten wrong and ten valid guesses race for it.
    let guesses = (0..20)
        .map(|i| {
            let typed = if i % 2 == 0 {
                keys[i / 2].clone()
            } else {
                format!("WRONG-X{i}")
            };
            ("lea", typed)
        })
        .collect();
    let results = race(&w, guesses).await;
    let invalid = results
        .iter()
        .filter(|(_, r)| matches!(r, Err(Error::InvalidKey)))
        .count();
    assert!(invalid <= 1, "only one failure was left: {results:?}");
    for (typed, result) in &results {
        let record = w
            .store
            .get_key(&keypool::keys::parse_custom(typed).unwrap_or_else(|_| code("NONE")))
            .await
            .unwrap();
        match (result, record) {
            (Ok(Redeemed::Created(_)), Some(r)) => assert_eq!(r.status, KeyStatus::Redeemed),
            (Err(Error::Throttled { .. }), Some(r)) => {
                assert_eq!(
                    r.status,
                    KeyStatus::Available,
                    "{typed}: throttled yet redeemed"
                )
            }
            (Err(Error::Throttled { .. } | Error::InvalidKey), None) => {}
            other => panic!("{typed}: {other:?}"),
        }
    }
    // Once the last failure is counted, nothing more gets through.
    if invalid == 1 {
        expect_throttled(redeem(&w, "lea", &keys[9]).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_that_tells_about_a_key_counts_as_a_failure() {
    let w = World::new().await;
    let open = new_pool(&w, ORG, 30).await;
    add_keys(&w, &open, &["TAKEN-KEY-1"]).await;
    created(redeem(&w, "owner", "TAKEN-KEY-1").await);
    let course = new_course(&w, ORG, "Later").await;
    let later = new_pool_between(
        &w,
        &course,
        "Next month",
        w.now() + Duration::days(30),
        w.now() + Duration::days(60),
        30,
    )
    .await;
    add_keys(&w, &later, &["LATER-KEY-1"]).await;

    for i in 0..10 {
        let result = if i % 2 == 0 {
            redeem(&w, "lea", "TAKEN-KEY-1").await
        } else {
            redeem(&w, "lea", "LATER-KEY-1").await
        };
        assert!(
            matches!(
                result,
                Err(Error::KeyAlreadyRedeemed | Error::PoolNotActive { .. })
            ),
            "{i}: {result:?}"
        );
    }
    expect_throttled(redeem(&w, "lea", "TAKEN-KEY-1").await);
    expect_throttled(redeem(&w, "lea", "LATER-KEY-1").await);
    // The owner retrying their own key is a success, never counted.
    for _ in 0..12 {
        existing(redeem(&w, "owner", "TAKEN-KEY-1").await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_key_of_a_held_pool_counts_but_a_retry_does_not() {
    let w = World::new().await;
    let pool = new_pool(&w, ORG, 30).await;
    let keys: Vec<String> = (0..12).map(|i| format!("SAME-POOL-{i:02}")).collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    add_keys(&w, &pool, &refs).await;
    let first = created(redeem(&w, "lea", &keys[0]).await);
    for key in &keys[1..11] {
        assert_eq!(existing(redeem(&w, "lea", key).await), first);
    }
    // Ten other keys of the pool told the learner they are valid: that is the limit.
    expect_throttled(redeem(&w, "lea", &keys[11]).await);
    let record = w.store.get_key(&code("SAMEPOOL11")).await.unwrap().unwrap();
    assert_eq!(record.status, KeyStatus::Available);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_is_limited_across_learners() {
    let w = World::new().await;
    let pool = new_pool(&w, ORG, 30).await;
    add_keys(&w, &pool, &["REAL-KEY-1", "REAL-KEY-2"]).await;
    let max = limits().address_failures.max as usize;
    let mut answered = 0;
    // Five accounts from one client, ten guesses each: each is under its own limit.
    for learner in ["a1", "a2", "a3", "a4", "a5"] {
        for i in 0..10 {
            let r = redeem_from(
                &w,
                learner,
                Some("198.51.100.9"),
                &format!("G{learner}{i:03}"),
            )
            .await;
            if throttled(&r).is_none() {
                assert!(matches!(r, Err(Error::InvalidKey)), "{r:?}");
                answered += 1;
            }
        }
    }
    assert_eq!(answered, max);
    // The client is refused even a valid key; another client, and a learner without a known
    // address, are not.
    expect_throttled(redeem_from(&w, "a6", Some("198.51.100.9"), "REAL-KEY-1").await);
    created(redeem_from(&w, "b1", Some("198.51.100.10"), "REAL-KEY-1").await);
    created(redeem_from(&w, "b2", None, "REAL-KEY-2").await);
}

/// Only a miss of a guessable key counts against an address: answers about keys that exist
/// (taken, not open yet), typos the check symbol catches and misses of generated keys, which
/// nobody can guess, never lock the address out, however many learners send them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_misses_of_guessable_keys_count_against_an_address() {
    let w = World::new().await;
    let open = new_pool(&w, ORG, 30).await;
    add_keys(&w, &open, &["TAKEN-KEY-1", "ROOM-KEY-1"]).await;
    created(redeem(&w, "owner", "TAKEN-KEY-1").await);
    let course = new_course(&w, ORG, "Later").await;
    let later = new_pool_between(
        &w,
        &course,
        "Next month",
        w.now() + Duration::days(30),
        w.now() + Duration::days(60),
        30,
    )
    .await;
    add_keys(&w, &later, &["LATER-KEY-1"]).await;
    let unknown_generated = keypool::keys::generate(1).unwrap()[0].display_form();
    let mut mistyped = unknown_generated.clone().into_bytes();
    mistyped[0] = if mistyped[0] == b'0' { b'1' } else { b'0' };
    let mistyped = String::from_utf8(mistyped).unwrap();
    let room = Some("198.51.100.77");
    let max = limits().address_failures.max as usize;
    for i in 0..2 * max {
        let learner = format!("pupil{i}");
        assert!(matches!(
            redeem_from(&w, &learner, room, "TAKEN-KEY-1").await,
            Err(Error::KeyAlreadyRedeemed)
        ));
        assert!(matches!(
            redeem_from(&w, &learner, room, "LATER-KEY-1").await,
            Err(Error::PoolNotActive { .. })
        ));
        assert!(matches!(
            redeem_from(&w, &learner, room, &unknown_generated).await,
            Err(Error::InvalidKey)
        ));
        let typo = redeem_from(&w, &learner, room, &mistyped).await;
        assert!(
            matches!(
                typo,
                Err(Error::Refused {
                    code: ErrorCode::KeyMistyped,
                    ..
                })
            ),
            "{typo:?}"
        );
    }
    let none = w
        .store
        .counters(&[CounterId::address("198.51.100.77".parse().unwrap())])
        .await
        .unwrap();
    assert_eq!(none, vec![None], "nothing was counted against the address");
    // Misses of custom keys do count, up to the limit, and then refuse custom keys.
    let mut answered = 0;
    for i in 0..max + 5 {
        match redeem_from(&w, &format!("sock{i}"), room, &format!("GUESS{i:04}")).await {
            Err(Error::InvalidKey) => answered += 1,
            other => {
                expect_throttled(other);
            }
        }
    }
    assert_eq!(answered, max);
    expect_throttled(redeem_from(&w, "pupil0", room, "ROOM-KEY-1").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipv6_client_counts_by_its_64() {
    let w = World::new().await;
    let max = limits().address_failures.max;
    for i in 0..max {
        // A new address in the same /64 for every guess, a new account every ten.
        let address = format!("2001:db8:7:7::{:x}", i + 1);
        let r = redeem_from(&w, &format!("v{}", i / 10), Some(&address), "NOT-A-KEY").await;
        assert!(matches!(r, Err(Error::InvalidKey)), "{i}: {r:?}");
    }
    expect_throttled(redeem_from(&w, "v9", Some("2001:db8:7:7:ffff::1"), "NOT-A-KEY").await);
    assert!(matches!(
        redeem_from(&w, "v9", Some("2001:db8:7:8::1"), "NOT-A-KEY").await,
        Err(Error::InvalidKey)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_change_only_while_their_condition_holds() {
    let w = World::new().await;
    let id = CounterId::Learner(user("lea"));
    let other = CounterId::Address("192.0.2.1".into());
    let limit = Limit {
        max: 3,
        window_secs: 60,
    };
    let now = w.now();
    let expires = now + Duration::hours(1);
    assert_eq!(
        w.store.counters(std::slice::from_ref(&id)).await.unwrap(),
        vec![None]
    );

    let first = limit.step(None, 1, now).unwrap();
    assert!(w.store.step_counter(&id, &first, expires).await.unwrap());
    // The same step again was computed from a state that is gone.
    assert!(!w.store.step_counter(&id, &first, expires).await.unwrap());
    let state = w
        .store
        .counters(&[id.clone(), other.clone()])
        .await
        .unwrap();
    assert_eq!(state[1], None);
    let read = state[0].unwrap();
    assert_eq!(read.count, 1);

    // Two steps from one read both add: the condition is on the limit, not on the read.
    let add = limit.step(Some(read), 1, now).unwrap();
    assert!(matches!(add, Step::Add { .. }));
    assert!(w.store.step_counter(&id, &add, expires).await.unwrap());
    assert!(w.store.step_counter(&id, &add, expires).await.unwrap());
    // A third from the same read would pass the limit of three: refused by the store.
    assert!(!w.store.step_counter(&id, &add, expires).await.unwrap());
    let full = w.store.counters(std::slice::from_ref(&id)).await.unwrap()[0].unwrap();
    assert_eq!(full.count, 3);
    assert!(limit.step(Some(full), 1, now).is_err());

    // A minute on, the window moves; the old count carries over, fading.
    let later = now + Duration::seconds(60);
    let moved = limit.step(Some(full), 1, later);
    match moved {
        Err(_) => {}
        Ok(step) => {
            assert!(w.store.step_counter(&id, &step, expires).await.unwrap());
            let c: Counter = w.store.counters(std::slice::from_ref(&id)).await.unwrap()[0].unwrap();
            assert_eq!((c.count, c.previous), (1, 3));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_counter_is_replaced_not_fatal() {
    let w = World::new().await;
    let pool = new_pool(&w, ORG, 30).await;
    add_keys(&w, &pool, &["REAL-KEY-1"]).await;
    assert!(matches!(
        redeem(&w, "lea", "WRONG").await,
        Err(Error::InvalidKey)
    ));
    w.corrupt(
        keypool::schema::counter_pk(&CounterId::Learner(user("lea"))),
        keypool::schema::COUNTER_SK.into(),
        "window",
        "not a number",
    )
    .await;
    assert!(matches!(
        redeem(&w, "lea", "WRONG").await,
        Err(Error::InvalidKey)
    ));
    created(redeem(&w, "lea", "REAL-KEY-1").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redemption_commits_only_while_its_counters_are_under_the_limit() {
    let w = World::new().await;
    let pool = new_pool(&w, ORG, 30).await;
    add_keys(&w, &pool, &["REAL-KEY-1"]).await;
    let limit = limits().learner_failures;
    let id = CounterId::Learner(user("lea"));
    let now = w.now();
    let expires = now + Duration::hours(1);
    // Nine failures counted; the redemption reads them and computes its check.
    let mut state = None;
    for _ in 0..9 {
        let step = limit.step(state, 1, now).unwrap();
        assert!(w.store.step_counter(&id, &step, expires).await.unwrap());
        state = w.store.counters(std::slice::from_ref(&id)).await.unwrap()[0];
    }
    let check = limit.step(state, 1, now).unwrap().condition();
    // A racing failure is counted before the redemption commits: the tenth.
    let step = limit.step(state, 1, now).unwrap();
    assert!(w.store.step_counter(&id, &step, expires).await.unwrap());
    let a = assignment_for(&pool, "lea", &code("REALKEY1"), now);
    let limits = [(id.clone(), check)];
    assert_eq!(
        w.store.redeem(&a, &pool, now, &limits).await.unwrap(),
        Err(keypool::store::RedeemConflict::LimitChanged)
    );
    let record = w.store.get_key(&code("REALKEY1")).await.unwrap().unwrap();
    assert_eq!(record.status, KeyStatus::Available, "nothing was written");
    // A check for a learner never counted holds while nobody counts them.
    let b = assignment_for(&pool, "max", &code("REALKEY1"), now);
    let fresh = [(
        CounterId::Learner(user("max")),
        limit.step(None, 1, now).unwrap().condition(),
    )];
    assert_eq!(
        w.store.redeem(&b, &pool, now, &fresh).await.unwrap(),
        Ok(())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_read_nothing_commits_only_while_the_counter_is_quiet() {
    let w = World::new().await;
    let pool = new_pool(&w, ORG, 30).await;
    add_keys(&w, &pool, &["QUIET-KEY-1", "QUIET-KEY-2", "QUIET-KEY-3"]).await;
    let limit = limits().learner_failures;
    let now = w.now();
    let window = Duration::seconds(limit.window_secs);
    let expires = now + Duration::hours(1);
    // Counts `n` failures of `who` at `at`, as the long way does.
    let fail = |who: &'static str, n: u64, at: keypool::time::Timestamp| {
        let w = &w;
        async move {
            let id = CounterId::Learner(user(who));
            for _ in 0..n {
                let state = w.store.counters(std::slice::from_ref(&id)).await.unwrap()[0];
                let step = limit.step(state, 1, at).unwrap();
                assert!(w.store.step_counter(&id, &step, expires).await.unwrap());
            }
        }
    };
    let attempt = |who: &'static str, key: &'static str| {
        let w = &w;
        let pool = &pool;
        async move {
            let a = assignment_for(pool, who, &code(key), now);
            let quiet = [(CounterId::Learner(user(who)), limit.quiet(now))];
            w.store.redeem(&a, pool, now, &quiet).await.unwrap()
        }
    };
    // A failure in this window: refused, and nothing written.
    fail("ann", 1, now).await;
    assert_eq!(
        attempt("ann", "QUIETKEY1").await,
        Err(keypool::store::RedeemConflict::LimitChanged)
    );
    let record = w.store.get_key(&code("QUIETKEY1")).await.unwrap().unwrap();
    assert_eq!(record.status, KeyStatus::Available, "nothing was written");
    // Failures in the window before, under the limit: quiet, and it commits.
    fail("bob", limit.max - 1, now - window).await;
    assert_eq!(attempt("bob", "QUIETKEY1").await, Ok(()));
    // As many failures as the limit in the window before: refused.
    fail("cat", limit.max, now - window).await;
    assert_eq!(
        attempt("cat", "QUIETKEY2").await,
        Err(keypool::store::RedeemConflict::LimitChanged)
    );
    // Failures two windows back count no more: it commits.
    fail("dan", limit.max, now - window * 2).await;
    assert_eq!(attempt("dan", "QUIETKEY3").await, Ok(()));
}
