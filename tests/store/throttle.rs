//! Throttling: failed redemption attempts per learner and window.

use chrono::Duration;
use keypool::Error;
use keypool::domain::KeyStatus;
use keypool::ops::redeem;
use keypool::ops::redeem::Redeemed;
use keypool::store::prelude::*;
use keypool_tests::World;

use super::fixtures::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_failures_throttle_the_learner_until_the_window_ends() {
    let w = World::new().await;
    let pool = new_pool(&w, ORG, 30).await;
    add_keys(&w, &pool, &["REAL-KEY-1", "REAL-KEY-2"]).await;

    for i in 0..redeem::MAX_FAILED_ATTEMPTS {
        let result = redeem(&w, "lea", &format!("WRONG-{i}")).await;
        assert!(
            matches!(result, Err(Error::InvalidKey)),
            "attempt {i}: {result:?}"
        );
    }
    let throttled = |result: keypool::Result<Redeemed>| match result {
        Err(Error::Throttled { retry_after_secs }) => retry_after_secs,
        other => panic!("expected throttled, got {other:?}"),
    };
    let wait = throttled(redeem(&w, "lea", "REAL-KEY-1").await);
    assert!(wait > 0, "{wait}");
    assert!(wait <= redeem::THROTTLE_WINDOW_SECS as u64, "{wait}");
    let record = w.store.get_key(&code("REALKEY1")).await.unwrap().unwrap();
    assert_eq!(
        record.status,
        KeyStatus::Available,
        "nothing redeemed while throttled"
    );
    throttled(redeem(&w, "lea", "WRONG-AGAIN").await);

    // Throttling is per learner.
    created(redeem(&w, "max", "REAL-KEY-2").await);

    // Waiting a second less than advertised is not enough; waiting as advertised is.
    if wait > 1 {
        w.clock.advance(Duration::seconds(wait as i64 - 1));
        throttled(redeem(&w, "lea", "REAL-KEY-1").await);
        w.clock.advance(Duration::seconds(1));
    } else {
        w.clock.advance(Duration::seconds(1));
    }
    let a = created(redeem(&w, "lea", "REAL-KEY-1").await);
    assert_eq!(a.key, code("REALKEY1"));
    assert_counts_match(&w, &pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_attempts_count_per_learner_and_window() {
    let w = World::new().await;
    let (lea, max) = (user("lea"), user("max"));
    let expiry = w.now() + Duration::hours(1);
    assert_eq!(w.store.failed_attempts(&lea, "w1").await.unwrap(), 0);
    assert_eq!(
        w.store
            .add_failed_attempt(&lea, "w1", expiry)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        w.store
            .add_failed_attempt(&lea, "w1", expiry)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        w.store
            .add_failed_attempt(&lea, "w2", expiry)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        w.store
            .add_failed_attempt(&max, "w1", expiry)
            .await
            .unwrap(),
        1
    );
    assert_eq!(w.store.failed_attempts(&lea, "w1").await.unwrap(), 2);
    assert_eq!(w.store.failed_attempts(&lea, "w2").await.unwrap(), 1);
    assert_eq!(w.store.failed_attempts(&max, "w1").await.unwrap(), 1);
    assert_eq!(w.store.failed_attempts(&max, "w2").await.unwrap(), 0);
}
