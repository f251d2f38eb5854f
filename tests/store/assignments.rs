//! Assignments: launching and listing.

use chrono::Duration;
use keypool::Error;
use keypool::domain::AssignmentId;
use keypool::error::Missing;
use keypool::ops::assignments;
use keypool::store::prelude::*;
use keypool_tests::World;

use super::fixtures::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_counts_while_valid_and_refuses_after_expiry() {
    let w = World::new().await;
    let pool = new_pool(&w, ORG, 1).await;
    add_keys(&w, &pool, &["LAUNCH-KEY"]).await;
    let a = created(redeem(&w, "lea", "LAUNCH-KEY").await);
    let id = a.assignment_id.to_string();
    let lea = user("lea");
    let store = w.dyn_store();

    w.clock.advance(Duration::minutes(1));
    let first = assignments::launch(store, &lea, &id, w.now())
        .await
        .unwrap();
    assert_eq!(first.launch_count, 1);
    assert_eq!(first.last_launched_at, Some(w.now()));
    assert_eq!(first.expires_at, a.expires_at);
    w.clock.advance(Duration::minutes(1));
    let second = assignments::launch(store, &lea, &id, w.now())
        .await
        .unwrap();
    assert_eq!(second.launch_count, 2);
    assert_eq!(second.last_launched_at, Some(w.now()));
    let stored = w
        .store
        .get_assignment(&lea, &a.assignment_id)
        .await
        .unwrap();
    assert_eq!(stored, Some(second.clone()));

    // Valid until the last millisecond of the content availability.
    let until = a.expires_at - w.now();
    w.clock.advance(until - Duration::milliseconds(1));
    let last = assignments::launch(store, &lea, &id, w.now())
        .await
        .unwrap();
    assert_eq!(last.launch_count, 3);
    w.clock.advance(Duration::milliseconds(1));
    match assignments::launch(store, &lea, &id, w.now()).await {
        Err(Error::AssignmentExpired { expires_at }) => assert_eq!(expires_at, a.expires_at),
        other => panic!("expected assignment_expired, got {other:?}"),
    }
    let stored = w
        .store
        .get_assignment(&lea, &a.assignment_id)
        .await
        .unwrap();
    assert_eq!(
        stored.unwrap().launch_count,
        3,
        "an expired launch is not counted"
    );

    let unknown = AssignmentId::new().to_string();
    let result = assignments::launch(store, &lea, &unknown, w.now()).await;
    assert!(
        matches!(result, Err(Error::NotFound(Missing::Assignment))),
        "{result:?}"
    );
    let result = assignments::launch(store, &lea, "not-an-id", w.now()).await;
    assert!(
        matches!(result, Err(Error::NotFound(Missing::Assignment))),
        "{result:?}"
    );
    w.clock.advance(-Duration::days(1));
    let result = assignments::launch(store, &user("max"), &id, w.now()).await;
    assert!(
        matches!(result, Err(Error::NotFound(Missing::Assignment))),
        "{result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_launch_is_none_for_a_missing_assignment_and_creates_nothing() {
    let w = World::new().await;
    let lea = user("lea");
    let ghost = AssignmentId::new();
    assert_eq!(
        w.store.record_launch(&lea, &ghost, w.now()).await.unwrap(),
        None
    );
    assert_eq!(w.store.get_assignment(&lea, &ghost).await.unwrap(), None);
    assert!(all_assignments(&w, "lea", 10).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_assignments_is_newest_first_and_pages() {
    let w = World::new().await;
    let course = new_course(&w, ORG, "Rust").await;
    let now = w.now();
    let mut made = Vec::new();
    for i in 0..5 {
        let pool = new_pool_between(
            &w,
            &course,
            &format!("Pool {i}"),
            now - Duration::hours(1),
            now + Duration::days(1),
            30,
        )
        .await;
        let key = format!("ASSIGN-KEY-{i}");
        add_keys(&w, &pool, &[&key]).await;
        made.push(created(redeem(&w, "lea", &key).await));
        w.clock.advance(Duration::minutes(1));
    }
    made.reverse();

    for limit in [1, 2, 5, 10] {
        assert_eq!(
            all_assignments(&w, "lea", limit).await,
            made,
            "limit {limit}"
        );
    }
    let listed = all_assignments(&w, "lea", 2).await;
    assert!(
        listed
            .windows(2)
            .all(|p| p[0].redeemed_at > p[1].redeemed_at)
    );
    assert!(all_assignments(&w, "max", 2).await.is_empty());

    let store = w.dyn_store();
    let page = assignments::list_assignments(store, &user("lea"), None, 2)
        .await
        .unwrap();
    let cursor = page.next_cursor.expect("more assignments");
    // Another learner holding this cursor sees nothing of lea's.
    let theirs = assignments::list_assignments(store, &user("max"), Some(&cursor), 10)
        .await
        .unwrap();
    assert!(theirs.items.is_empty(), "{theirs:?}");
    assert_invalid_cursor(assignments::list_assignments(store, &user("lea"), Some("??"), 2).await);
}
