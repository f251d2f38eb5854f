//! Pools: creating, refusing overwrites, updating fields and settings.

use chrono::Duration;
use keypool::Error;
use keypool::domain::{CourseId, PoolId};
use keypool::error::Missing;
use keypool::ops::pools;
use keypool::ops::pools::{PoolInput, PoolPatch};
use keypool::store::prelude::*;
use keypool::time::{self};
use keypool_tests::World;

use super::fixtures::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_pool_stores_what_was_asked() {
    let w = World::new().await;
    let course = new_course(&w, ORG, "Rust").await;
    let input = PoolInput {
        name: "  Spring  ".into(),
        course_id: course.course_id.to_string(),
        starts_at: "2026-01-01T02:00:00+02:00".into(),
        expires_at: "2027-01-01T00:00:00.123456Z".into(),
        content_availability_days: 180,
        counter_shards: None,
    };
    let pool = pools::create_pool(
        w.dyn_store(),
        &keypool_tests::admin_of(&org(ORG)),
        input,
        w.now(),
    )
    .await
    .unwrap();
    assert_eq!(pool.name, "Spring");
    assert_eq!(pool.course_id, course.course_id);
    assert_eq!(pool.starts_at, time::parse("2026-01-01T00:00:00Z").unwrap());
    assert_eq!(
        pool.expires_at,
        time::parse("2027-01-01T00:00:00.123Z").unwrap(),
        "UTC, truncated to milliseconds"
    );
    assert_eq!(pool.content_availability_days, 180);
    assert_eq!((pool.total_keys, pool.redeemed_count), (0, 0));
    assert_eq!(pool.version, 1);
    assert!(!pool.deactivated);
    assert_eq!(pool.created_at, w.now());
    assert_eq!(pool.updated_at, w.now());
    assert_eq!(reload(&w, &pool).await, pool);

    let by_id = pools::get_pool(w.dyn_store(), &org(ORG), &pool.pool_id.to_string()).await;
    assert_eq!(by_id.unwrap(), pool);
    let elsewhere =
        pools::get_pool(w.dyn_store(), &org(OTHER_ORG), &pool.pool_id.to_string()).await;
    assert!(matches!(elsewhere, Err(Error::NotFound(Missing::Pool))));
    let garbage = pools::get_pool(w.dyn_store(), &org(ORG), "not-a-pool").await;
    assert!(matches!(garbage, Err(Error::NotFound(Missing::Pool))));

    // The shortest availability and the longest name are accepted too.
    let now = w.now();
    let short = new_pool_between(
        &w,
        &course,
        &"n".repeat(pools::MAX_NAME_CHARS),
        now,
        now + Duration::milliseconds(1),
        1,
    )
    .await;
    assert_eq!(short.content_availability_days, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_pool_rejects_every_bad_field_and_writes_nothing() {
    let w = World::new().await;
    let course = new_course(&w, ORG, "Rust").await;
    let id = course.course_id.to_string();
    let now = w.now();
    let (start, end) = (now, now + Duration::days(10));
    let good = || pool_input(&id, "Spring", start, end, 30);
    let cases: Vec<(&str, PoolInput, &[&str])> = vec![
        (
            "empty name",
            PoolInput {
                name: String::new(),
                ..good()
            },
            &["name"],
        ),
        (
            "blank name",
            PoolInput {
                name: "   ".into(),
                ..good()
            },
            &["name"],
        ),
        (
            "name too long",
            PoolInput {
                name: "n".repeat(pools::MAX_NAME_CHARS + 1),
                ..good()
            },
            &["name"],
        ),
        (
            "control character in name",
            PoolInput {
                name: "Spring\ncohort".into(),
                ..good()
            },
            &["name"],
        ),
        (
            "course id not an id",
            PoolInput {
                course_id: "rust-101".into(),
                ..good()
            },
            &["course_id"],
        ),
        (
            "starts_at not a timestamp",
            PoolInput {
                starts_at: "tomorrow".into(),
                ..good()
            },
            &["starts_at"],
        ),
        (
            "starts_at impossible date",
            PoolInput {
                starts_at: "2026-13-01T00:00:00Z".into(),
                ..good()
            },
            &["starts_at"],
        ),
        (
            "expires_at without a time",
            PoolInput {
                expires_at: "2027-01-01".into(),
                ..good()
            },
            &["expires_at"],
        ),
        (
            "expires_at equals starts_at",
            pool_input(&id, "Spring", start, start, 30),
            &["expires_at"],
        ),
        (
            "expires_at before starts_at",
            pool_input(&id, "Spring", end, start, 30),
            &["expires_at"],
        ),
        (
            "zero days",
            pool_input(&id, "Spring", start, end, 0),
            &["content_availability_days"],
        ),
        (
            "181 days",
            pool_input(&id, "Spring", start, end, 181),
            &["content_availability_days"],
        ),
        (
            "negative days",
            pool_input(&id, "Spring", start, end, -1),
            &["content_availability_days"],
        ),
        (
            "no count shards",
            PoolInput {
                counter_shards: Some(0),
                ..pool_input(&id, "Spring", start, end, 30)
            },
            &["counter_shards"],
        ),
        (
            "more count shards than one read takes",
            PoolInput {
                counter_shards: Some(101),
                ..pool_input(&id, "Spring", start, end, 30)
            },
            &["counter_shards"],
        ),
        (
            "everything at once",
            PoolInput {
                name: String::new(),
                course_id: "x".into(),
                starts_at: "x".into(),
                expires_at: "x".into(),
                content_availability_days: 0,
                counter_shards: None,
            },
            &[
                "content_availability_days",
                "course_id",
                "expires_at",
                "name",
                "starts_at",
            ],
        ),
    ];
    for (what, input, fields) in cases {
        let result = pools::create_pool(
            w.dyn_store(),
            &keypool_tests::admin_of(&org(ORG)),
            input,
            w.now(),
        )
        .await;
        assert_eq!(field_errors(result), fields, "{what}");
    }

    let unknown = pool_input(&CourseId::new().to_string(), "Spring", start, end, 30);
    let result = pools::create_pool(
        w.dyn_store(),
        &keypool_tests::admin_of(&org(ORG)),
        unknown,
        w.now(),
    )
    .await;
    assert!(
        matches!(result, Err(Error::NotFound(Missing::Course))),
        "{result:?}"
    );

    let theirs = new_course(&w, OTHER_ORG, "Their course").await;
    let input = pool_input(&theirs.course_id.to_string(), "Spring", start, end, 30);
    let result = pools::create_pool(
        w.dyn_store(),
        &keypool_tests::admin_of(&org(ORG)),
        input,
        w.now(),
    )
    .await;
    assert!(
        matches!(result, Err(Error::NotFound(Missing::Course))),
        "{result:?}"
    );

    assert!(all_pools(&w, ORG, None, 10).await.is_empty());
    assert!(all_pools(&w, OTHER_ORG, None, 10).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_pool_refuses_to_overwrite_an_existing_pool() {
    let w = World::new().await;
    let pool = new_pool(&w, ORG, 30).await;
    let mut copy = pool.clone();
    copy.name = "Overwritten".into();
    copy.total_keys = 99;
    assert!(
        w.store
            .put_pool(&copy, &keypool_tests::test_record())
            .await
            .is_err()
    );
    assert_eq!(reload(&w, &pool).await, pool);
    let elsewhere = w.store.get_pool(&org(OTHER_ORG), &pool.pool_id).await;
    assert_eq!(elsewhere.unwrap(), None);
    let unknown = w.store.get_pool(&org(ORG), &PoolId::new()).await;
    assert_eq!(unknown.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_pool_patches_fields_bumps_version_and_keeps_counts() {
    let w = World::new().await;
    let pool = new_pool(&w, ORG, 30).await;
    add_keys(&w, &pool, &["KEY-ONE", "KEY-TWO", "KEY-THREE"]).await;
    created(redeem(&w, "lea", "key-one").await);
    let id = pool.pool_id.to_string();

    w.clock.advance(Duration::minutes(5));
    let new_start = pool.starts_at - Duration::days(1);
    let new_end = pool.expires_at + Duration::days(1);
    let patch = PoolPatch {
        name: Some("  Autumn cohort ".into()),
        starts_at: Some(iso(new_start)),
        expires_at: Some(iso(new_end)),
        content_availability_days: Some(180),
        deactivated: None,
    };
    let updated = pools::update_pool(
        w.dyn_store(),
        &keypool_tests::admin_of(&org(ORG)),
        &id,
        patch,
        w.now(),
    )
    .await
    .unwrap();
    assert_eq!(updated.name, "Autumn cohort");
    assert_eq!(updated.starts_at, new_start);
    assert_eq!(updated.expires_at, new_end);
    assert_eq!(updated.content_availability_days, 180);
    assert_eq!(updated.version, 2);
    assert_eq!(updated.updated_at, w.now());
    assert_eq!(updated.created_at, pool.created_at);
    let stored = reload(&w, &pool).await;
    assert_eq!(stored, updated);
    assert_eq!((stored.total_keys, stored.redeemed_count), (3, 1));

    // One field at a time leaves the others alone.
    let patch = PoolPatch {
        deactivated: Some(true),
        ..PoolPatch::default()
    };
    let deactivated = pools::update_pool(
        w.dyn_store(),
        &keypool_tests::admin_of(&org(ORG)),
        &id,
        patch,
        w.now(),
    )
    .await
    .unwrap();
    assert!(deactivated.deactivated);
    assert_eq!(deactivated.version, 3);
    assert_eq!(deactivated.name, "Autumn cohort");
    assert_eq!(deactivated.content_availability_days, 180);
    assert_eq!(reload(&w, &pool).await, deactivated);

    // The search index follows the new name.
    assert_eq!(all_pools(&w, ORG, Some("autumn"), 10).await.len(), 1);
    assert!(all_pools(&w, ORG, Some("spring"), 10).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_pool_rejections_leave_the_pool_unchanged() {
    let w = World::new().await;
    let pool = new_pool(&w, ORG, 30).await;
    let id = pool.pool_id.to_string();
    let cases: Vec<(&str, PoolPatch, &[&str])> = vec![
        (
            "empty name",
            PoolPatch {
                name: Some(" ".into()),
                ..PoolPatch::default()
            },
            &["name"],
        ),
        (
            "name too long",
            PoolPatch {
                name: Some("n".repeat(pools::MAX_NAME_CHARS + 1)),
                ..PoolPatch::default()
            },
            &["name"],
        ),
        (
            "bad starts_at",
            PoolPatch {
                starts_at: Some("soon".into()),
                ..PoolPatch::default()
            },
            &["starts_at"],
        ),
        (
            "bad expires_at",
            PoolPatch {
                expires_at: Some("2026-02-30T00:00:00Z".into()),
                ..PoolPatch::default()
            },
            &["expires_at"],
        ),
        (
            "expires_at at the current start",
            PoolPatch {
                expires_at: Some(iso(pool.starts_at)),
                ..PoolPatch::default()
            },
            &["expires_at"],
        ),
        (
            "starts_at after the current expiry",
            PoolPatch {
                starts_at: Some(iso(pool.expires_at + Duration::seconds(1))),
                ..PoolPatch::default()
            },
            &["expires_at"],
        ),
        (
            "zero days",
            PoolPatch {
                content_availability_days: Some(0),
                ..PoolPatch::default()
            },
            &["content_availability_days"],
        ),
        (
            "181 days",
            PoolPatch {
                content_availability_days: Some(181),
                ..PoolPatch::default()
            },
            &["content_availability_days"],
        ),
        (
            "negative days",
            PoolPatch {
                content_availability_days: Some(-1),
                ..PoolPatch::default()
            },
            &["content_availability_days"],
        ),
    ];
    for (what, patch, fields) in cases {
        let result = pools::update_pool(
            w.dyn_store(),
            &keypool_tests::admin_of(&org(ORG)),
            &id,
            patch,
            w.now(),
        )
        .await;
        assert_eq!(field_errors(result), fields, "{what}");
        assert_eq!(reload(&w, &pool).await, pool, "{what}");
    }

    let rename = || PoolPatch {
        name: Some("Stolen".into()),
        ..PoolPatch::default()
    };
    let result = pools::update_pool(
        w.dyn_store(),
        &keypool_tests::admin_of(&org(OTHER_ORG)),
        &id,
        rename(),
        w.now(),
    )
    .await;
    assert!(
        matches!(result, Err(Error::NotFound(Missing::Pool))),
        "{result:?}"
    );
    let unknown = PoolId::new().to_string();
    let result = pools::update_pool(
        w.dyn_store(),
        &keypool_tests::admin_of(&org(ORG)),
        &unknown,
        rename(),
        w.now(),
    )
    .await;
    assert!(
        matches!(result, Err(Error::NotFound(Missing::Pool))),
        "{result:?}"
    );
    let result = pools::update_pool(
        w.dyn_store(),
        &keypool_tests::admin_of(&org(ORG)),
        "nope",
        rename(),
        w.now(),
    )
    .await;
    assert!(
        matches!(result, Err(Error::NotFound(Missing::Pool))),
        "{result:?}"
    );
    assert_eq!(reload(&w, &pool).await, pool);
    assert!(
        w.store
            .get_pool(&org(OTHER_ORG), &pool.pool_id)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_pool_settings_checks_the_version_and_never_touches_counts() {
    let w = World::new().await;
    let pool = new_pool(&w, ORG, 30).await;
    add_keys(&w, &pool, &["AAAA1111", "BBBB2222"]).await;

    let mut next = reload(&w, &pool).await;
    next.name = "Renamed".into();
    next.version = 2;
    next.total_keys = 1000;
    next.redeemed_count = 500;
    assert!(
        !w.store
            .update_pool_settings(&next, 7, &keypool_tests::test_record())
            .await
            .unwrap(),
        "a stale version loses"
    );
    let stored = reload(&w, &pool).await;
    assert_eq!(stored.name, pool.name);
    assert_eq!(stored.version, 1);

    assert!(
        w.store
            .update_pool_settings(&next, 1, &keypool_tests::test_record())
            .await
            .unwrap()
    );
    let stored = reload(&w, &pool).await;
    assert_eq!(stored.name, "Renamed");
    assert_eq!(stored.version, 2);
    assert_eq!((stored.total_keys, stored.redeemed_count), (2, 0));

    // The same expected version a second time is now stale.
    next.name = "Again".into();
    next.version = 2;
    assert!(
        !w.store
            .update_pool_settings(&next, 1, &keypool_tests::test_record())
            .await
            .unwrap()
    );
    assert_eq!(reload(&w, &pool).await.name, "Renamed");

    // A pool that does not exist (or not in that org) is not created by an update.
    let mut ghost = next.clone();
    ghost.pool_id = PoolId::new();
    assert!(
        !w.store
            .update_pool_settings(&ghost, 1, &keypool_tests::test_record())
            .await
            .unwrap()
    );
    assert!(
        w.store
            .get_pool(&org(ORG), &ghost.pool_id)
            .await
            .unwrap()
            .is_none()
    );
    let mut foreign = next.clone();
    foreign.org = org(OTHER_ORG);
    assert!(
        !w.store
            .update_pool_settings(&foreign, 2, &keypool_tests::test_record())
            .await
            .unwrap()
    );
    assert!(
        w.store
            .get_pool(&org(OTHER_ORG), &pool.pool_id)
            .await
            .unwrap()
            .is_none()
    );
}

/// The bench's control arm (what a change costs without its record) writes the same change
/// and no record; the store as served writes both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bench_control_arm_writes_the_change_and_no_record() {
    let w = World::new().await;
    let pool = new_pool(&w, ORG, 30).await;
    let records = |store: keypool::store::DynamoStore| async move {
        let org = keypool_tests::test_record().org;
        let filter = keypool::domain::AuditFilter::default();
        store
            .list_audit(&org, &filter, None, 100)
            .await
            .unwrap()
            .items
            .len()
    };
    let before = records((*w.store).clone()).await;

    let mut next = reload(&w, &pool).await;
    next.name = "Without a record".into();
    next.version = 2;
    let control = (*w.store).clone().without_audit_records();
    assert!(
        control
            .update_pool_settings(&next, 1, &keypool_tests::test_record())
            .await
            .unwrap()
    );
    assert_eq!(reload(&w, &pool).await.name, "Without a record");
    assert_eq!(records((*w.store).clone()).await, before);

    next.name = "With a record".into();
    next.version = 3;
    assert!(
        w.store
            .update_pool_settings(&next, 2, &keypool_tests::test_record())
            .await
            .unwrap()
    );
    assert_eq!(reload(&w, &pool).await.name, "With a record");
    assert_eq!(records((*w.store).clone()).await, before + 1);
}
