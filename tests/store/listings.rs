//! Listing pools: paging, search, cursors, and bounded reads of large organizations.

use std::collections::HashSet;

use chrono::Duration;
use keypool::domain::{Course, PoolId};
use keypool::ops::inventory::KeyListing;
use keypool::ops::pools::PoolListing;
use keypool::ops::{assignments, inventory, pools};
use keypool::store::prelude::*;
use keypool_tests::World;

use super::fixtures::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pools_pages_visit_every_pool_once() {
    let w = World::new().await;
    let course = new_course(&w, ORG, "Rust").await;
    let now = w.now();
    let mut ids = HashSet::new();
    for i in 0..7 {
        let pool = new_pool_between(
            &w,
            &course,
            &format!("Pool {i}"),
            now,
            now + Duration::days(1),
            30,
        )
        .await;
        ids.insert(pool.pool_id);
    }
    new_pool(&w, OTHER_ORG, 30).await;

    for limit in [1, 3, 7, 100] {
        let listed = all_pools(&w, ORG, None, limit).await;
        let seen: HashSet<_> = listed.iter().map(|p| p.pool_id).collect();
        assert_eq!(listed.len(), 7, "limit {limit}");
        assert_eq!(seen, ids, "limit {limit}");
    }
    let first = pools::list_pools(
        w.dyn_store(),
        &org(ORG),
        PoolListing::page(None, 3),
        w.now(),
    )
    .await
    .unwrap();
    assert_eq!(first.items.len(), 3);
    assert!(first.next_cursor.is_some());
    let from_empty_cursor = pools::list_pools(
        w.dyn_store(),
        &org(ORG),
        PoolListing::page(Some(""), 3),
        w.now(),
    )
    .await
    .unwrap();
    assert_eq!(
        from_empty_cursor, first,
        "an empty cursor is the first page"
    );
    // Courses share the partition; they never show up as pools.
    assert_eq!(all_courses(&w, ORG, None, 10).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pools_search_is_a_case_insensitive_substring_and_pages() {
    let w = World::new().await;
    let course = new_course(&w, ORG, "Compilers 101").await;
    let now = w.now();
    let names = [
        "Spring Rust",
        "spring go",
        "Autumn RUST",
        "Winter",
        "Trusted partners",
        "rust-lang team",
        "Summer",
        "Crustacean club",
        "RuSt Nights",
    ];
    for name in names {
        new_pool_between(&w, &course, name, now, now + Duration::days(1), 30).await;
    }
    // Another organization's "Spring cohort" must not match our searches.
    new_pool(&w, OTHER_ORG, 30).await;

    let expect_rust = [
        "Autumn RUST",
        "Crustacean club",
        "RuSt Nights",
        "Spring Rust",
        "Trusted partners",
        "rust-lang team",
    ];
    for limit in [1, 2, 4, 6, 50] {
        let found = all_pools(&w, ORG, Some("RUST"), limit).await;
        let mut names: Vec<_> = found.iter().map(|p| p.name.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, expect_rust, "limit {limit}");
    }
    assert_eq!(all_pools(&w, ORG, Some("spring"), 1).await.len(), 2);
    assert_eq!(all_pools(&w, ORG, Some("  SPRING "), 1).await.len(), 2);
    assert_eq!(all_pools(&w, ORG, Some("ng r"), 5).await.len(), 1);
    assert!(all_pools(&w, ORG, Some("haskell"), 3).await.is_empty());
    // The course's title matches too: every pool of the course.
    assert_eq!(
        all_pools(&w, ORG, Some("COMPILERS"), 4).await.len(),
        names.len()
    );
    assert_eq!(all_pools(&w, ORG, Some(""), 4).await.len(), names.len());
    let long = "x".repeat(pools::MAX_SEARCH_CHARS + 1);
    let result = pools::list_pools(
        w.dyn_store(),
        &org(ORG),
        PoolListing {
            search: Some(&long),
            ..PoolListing::page(None, 10)
        },
        w.now(),
    )
    .await;
    assert_eq!(field_errors(result), ["search"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_cursors_are_checked_and_never_leave_the_callers_partition() {
    let w = World::new().await;
    let course = new_course(&w, ORG, "Rust").await;
    let now = w.now();
    let mut ours = Vec::new();
    for i in 0..4 {
        let name = format!("Ours {i}");
        ours.push(new_pool_between(&w, &course, &name, now, now + Duration::days(1), 30).await);
    }
    let last_pool = &ours[3];
    let theirs_course = new_course(&w, OTHER_ORG, "Theirs").await;
    let mut theirs = HashSet::new();
    for i in 0..3 {
        let p = new_pool_between(
            &w,
            &theirs_course,
            &format!("Theirs {i}"),
            now,
            now + Duration::days(1),
            30,
        )
        .await;
        theirs.insert(p.pool_id);
    }
    add_keys(
        &w,
        last_pool,
        &["CURSOR-KEY-1", "CURSOR-KEY-2", "CURSOR-KEY-3"],
    )
    .await;

    let store = w.dyn_store();
    let first = pools::list_pools(store, &org(ORG), PoolListing::page(None, 1), w.now())
        .await
        .unwrap();
    let cursor = first.next_cursor.clone().expect("more pools");
    // The crafted cursors below mean something: this is how the store encodes a cursor.
    let sk = format!("POOL#{}", first.items[0].pool_id);
    assert_eq!(cursor, base64url(format!(r#"{{"SK":"{sk}"}}"#).as_bytes()));

    // Garbage, tampered and foreign cursors.
    let truncated = &cursor[..cursor.len() / 2];
    let bad = [
        "!!!".to_string(),
        "not a cursor".to_string(),
        truncated.to_string(),
        format!("{cursor}x"),
        base64url(b"[1,2,3]"),
        base64url(b"{}"),
        base64url(br#"{"SK":"COURSE#0190a0b0-0000-7000-8000-000000000000"}"#),
        base64url(format!(r#"{{"SK":"{sk}","PK":"ORG#{OTHER_ORG}"}}"#).as_bytes()),
        base64url(format!(r#"{{"SK":"POOL#{}"}}"#, "x".repeat(500)).as_bytes()),
    ];
    for c in &bad {
        assert_invalid_cursor(
            pools::list_pools(store, &org(ORG), PoolListing::page(Some(c), 2), w.now()).await,
        );
    }
    // A pools cursor is not a courses cursor, nor a keys cursor, nor an assignments cursor.
    assert_invalid_cursor(pools::list_courses(store, &org(ORG), None, Some(&cursor), 2).await);
    let pool_id = last_pool.pool_id.to_string();
    assert_invalid_cursor(
        inventory::list_keys(
            store,
            &org(ORG),
            &pool_id,
            KeyListing::page(Some(&cursor), 2),
        )
        .await,
    );
    assert_invalid_cursor(
        assignments::list_assignments(store, &user("lea"), Some(&cursor), 2).await,
    );
    let keys_page = inventory::list_keys(store, &org(ORG), &pool_id, KeyListing::page(None, 1))
        .await
        .unwrap();
    let keys_cursor = keys_page.next_cursor.expect("more keys");
    assert_invalid_cursor(
        pools::list_pools(
            store,
            &org(ORG),
            PoolListing::page(Some(&keys_cursor), 2),
            w.now(),
        )
        .await,
    );
    assert_invalid_cursor(
        inventory::list_keys(
            store,
            &org(ORG),
            &pool_id,
            KeyListing::page(Some("garbage"), 2),
        )
        .await,
    );
    // A keys cursor naming a partition outside the pool's keys is refused.
    let escaped =
        base64url(format!(r#"{{"GSI1SK":"KEY#available#A","PK":"ORG#{OTHER_ORG}"}}"#).as_bytes());
    assert_invalid_cursor(
        inventory::list_keys(
            store,
            &org(ORG),
            &pool_id,
            KeyListing::page(Some(&escaped), 2),
        )
        .await,
    );

    // Our cursor, handed in by another organization, only ever yields that organization's pools.
    let mut seen = Vec::new();
    let mut next = Some(cursor);
    while let Some(c) = next {
        let page = pools::list_pools(
            store,
            &org(OTHER_ORG),
            PoolListing::page(Some(&c), 1),
            w.now(),
        )
        .await
        .unwrap();
        seen.extend(page.items);
        next = page.next_cursor;
    }
    assert!(seen.iter().all(|p| p.org == org(OTHER_ORG)), "{seen:?}");
    assert!(seen.iter().all(|p| theirs.contains(&p.pool_id)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_listings_page_across_many_stored_items() {
    let w = World::new().await;
    let template = new_pool(&w, ORG, 30).await;
    // 150 more pools straight through the store, one in 37 named to match the search, so that
    // matches sit on both sides of every page the store reads.
    let mut needles = HashSet::new();
    for i in 0..150 {
        let mut pool = template.clone();
        pool.pool_id = PoolId::new();
        pool.name = if i % 37 == 0 {
            needles.insert(pool.pool_id);
            format!("Needle {i}")
        } else {
            format!("Hay {i}")
        };
        w.store
            .put_pool(&pool, &keypool_tests::test_record())
            .await
            .unwrap();
    }
    assert_eq!(needles.len(), 5);
    for limit in [1, 2, 5, 6, 1000] {
        let found = all_pools(&w, ORG, Some("NEEDLE"), limit).await;
        let ids: HashSet<_> = found.iter().map(|p| p.pool_id).collect();
        assert_eq!(found.len(), 5, "limit {limit}");
        assert_eq!(ids, needles, "limit {limit}");
    }
    let all = all_pools(&w, ORG, None, 60).await;
    assert_eq!(all.len(), 151);
    assert_eq!(
        all.iter().map(|p| p.pool_id).collect::<HashSet<_>>().len(),
        151
    );
}

/// A rare search term in a large organization answers after a bounded read, with a cursor
/// that resumes the scan, instead of reading the whole partition in one request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rare_search_answers_in_bounded_steps_and_still_finds_everything() {
    let w = World::new().await;
    if w.skip_volume_on_moto() {
        return;
    }
    let needle = new_course(&w, ORG, "Needle in a haystack").await;
    for i in 0..1_050 {
        w.store
            .put_course(
                &Course {
                    course_id: keypool::domain::CourseId::new(),
                    org: org(ORG),
                    title: format!("Hay {i}"),
                    description: None,
                    launch_url: None,
                    created_at: w.now(),
                },
                &keypool_tests::test_record(),
            )
            .await
            .unwrap();
    }
    let first = pools::list_courses(w.dyn_store(), &org(ORG), Some("NEEDLE"), None, 10)
        .await
        .unwrap();
    assert!(
        first.items.is_empty(),
        "the oldest course lies past the first bounded read"
    );
    let mut cursor = first.next_cursor.expect("a cursor to go on with");
    let mut found = Vec::new();
    for _ in 0..5 {
        let page = pools::list_courses(w.dyn_store(), &org(ORG), Some("needle"), Some(&cursor), 10)
            .await
            .unwrap();
        found.extend(page.items);
        match page.next_cursor {
            Some(next) => cursor = next,
            None => break,
        }
    }
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].course_id, needle.course_id);
}

/// A status few pools have, in a large organization, answers after a bounded read too, with a
/// cursor that resumes the scan; the status is decided at the time asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rare_pool_status_answers_in_bounded_steps_and_still_finds_everything() {
    let w = World::new().await;
    if w.skip_volume_on_moto() {
        return;
    }
    let course = new_course(&w, ORG, "Rust 101").await;
    let now = w.now();
    let expired = new_pool_between(
        &w,
        &course,
        "Last year",
        now - Duration::days(400),
        now - Duration::days(35),
        30,
    )
    .await;
    for i in 0..1_050 {
        let mut active = expired.clone();
        active.pool_id = PoolId::new();
        active.name = format!("Open {i}");
        active.expires_at = now + Duration::days(30);
        w.store
            .put_pool(&active, &keypool_tests::test_record())
            .await
            .unwrap();
    }
    let list = |cursor: Option<String>, at| {
        let w = &w;
        async move {
            pools::list_pools(
                w.dyn_store(),
                &org(ORG),
                PoolListing {
                    status: Some("expired"),
                    ..PoolListing::page(cursor.as_deref(), 10)
                },
                at,
            )
            .await
            .unwrap()
        }
    };
    let first = list(None, now).await;
    assert!(
        first.items.is_empty(),
        "the oldest pool lies past the first bounded read"
    );
    let mut cursor = first.next_cursor.expect("a cursor to go on with");
    let mut found = Vec::new();
    for _ in 0..5 {
        let page = list(Some(cursor.clone()), now).await;
        found.extend(page.items);
        match page.next_cursor {
            Some(next) => cursor = next,
            None => break,
        }
    }
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].pool_id, expired.pool_id);
    // Asked 31 days later, every pool has expired: a full page at once.
    let later = list(None, now + Duration::days(31)).await;
    assert_eq!(later.items.len(), 10);
    assert!(later.next_cursor.is_some());
}
