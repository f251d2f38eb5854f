//! Keys: removing and listing.

use keypool::error::Missing;
use std::collections::HashSet;

use keypool::Error;
use keypool::ops::inventory::{self, KeyListing};
use keypool::store::RemoveConflict;
use keypool::store::prelude::*;
use keypool_tests::World;

use super::fixtures::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_key_takes_only_available_keys_of_the_pool() {
    let w = World::new().await;
    let pool = new_pool(&w, ORG, 30).await;
    let other_pool = new_pool(&w, ORG, 30).await;
    add_keys(&w, &pool, &["REMOVE-ME", "REDEEM-ME", "KEEP-ME"]).await;
    add_keys(&w, &other_pool, &["NOT-YOURS"]).await;
    created(redeem(&w, "lea", "redeem-me").await);
    let id = pool.pool_id.to_string();
    let store = w.dyn_store();

    inventory::remove_key(
        store,
        &keypool_tests::admin_of(&org(ORG)),
        &id,
        "remove-me",
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    assert!(w.store.get_key(&code("REMOVEME")).await.unwrap().is_none());
    assert_eq!(reload(&w, &pool).await.total_keys, 2);
    assert!(!key_set(&all_keys(&w, &pool, None, 10).await).contains(&code("REMOVEME")));

    let again = inventory::remove_key(
        store,
        &keypool_tests::admin_of(&org(ORG)),
        &id,
        "REMOVEME",
        chrono::Utc::now(),
    )
    .await;
    assert!(
        matches!(again, Err(Error::NotFound(Missing::Key))),
        "{again:?}"
    );
    let redeemed = inventory::remove_key(
        store,
        &keypool_tests::admin_of(&org(ORG)),
        &id,
        "REDEEM-ME",
        chrono::Utc::now(),
    )
    .await;
    assert!(matches!(redeemed, Err(Error::KeyRedeemed)), "{redeemed:?}");
    let unknown = inventory::remove_key(
        store,
        &keypool_tests::admin_of(&org(ORG)),
        &id,
        "NEVER-SEEN",
        chrono::Utc::now(),
    )
    .await;
    assert!(
        matches!(unknown, Err(Error::NotFound(Missing::Key))),
        "{unknown:?}"
    );
    let malformed = inventory::remove_key(
        store,
        &keypool_tests::admin_of(&org(ORG)),
        &id,
        "a!",
        chrono::Utc::now(),
    )
    .await;
    assert!(
        matches!(malformed, Err(Error::NotFound(Missing::Key))),
        "{malformed:?}"
    );
    let foreign_key = inventory::remove_key(
        store,
        &keypool_tests::admin_of(&org(ORG)),
        &id,
        "NOT-YOURS",
        chrono::Utc::now(),
    )
    .await;
    assert!(
        matches!(foreign_key, Err(Error::NotFound(Missing::Key))),
        "{foreign_key:?}"
    );
    let foreign_org = inventory::remove_key(
        store,
        &keypool_tests::admin_of(&org(OTHER_ORG)),
        &id,
        "KEEP-ME",
        chrono::Utc::now(),
    )
    .await;
    assert!(
        matches!(foreign_org, Err(Error::NotFound(Missing::Pool))),
        "{foreign_org:?}"
    );
    let no_pool = inventory::remove_key(
        store,
        &keypool_tests::admin_of(&org(ORG)),
        "nope",
        "KEEP-ME",
        chrono::Utc::now(),
    )
    .await;
    assert!(
        matches!(no_pool, Err(Error::NotFound(Missing::Pool))),
        "{no_pool:?}"
    );

    assert!(w.store.get_key(&code("REDEEMME")).await.unwrap().is_some());
    assert!(w.store.get_key(&code("KEEPME")).await.unwrap().is_some());
    let theirs = w.store.get_key(&code("NOTYOURS")).await.unwrap().unwrap();
    assert_eq!(theirs.pool_id, other_pool.pool_id);
    let pool_now = reload(&w, &pool).await;
    assert_eq!((pool_now.total_keys, pool_now.redeemed_count), (2, 1));
    assert_counts_match(&w, &pool).await;
    assert_counts_match(&w, &other_pool).await;

    // A removed key can be added again, to any pool.
    add_keys(&w, &other_pool, &["REMOVE-ME"]).await;
    assert_counts_match(&w, &other_pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_remove_key_names_each_conflict() {
    let w = World::new().await;
    let pool = new_pool(&w, ORG, 30).await;
    let other_pool = new_pool(&w, ORG, 30).await;
    add_keys(&w, &pool, &["AVAILABLE1", "REDEEMED1"]).await;
    add_keys(&w, &other_pool, &["ELSEWHERE1"]).await;
    created(redeem(&w, "lea", "REDEEMED1").await);
    let s = &w.store;

    // The pool as another organization would name it: the key is not theirs.
    let posing = keypool::domain::Pool {
        org: org(OTHER_ORG),
        ..pool.clone()
    };
    let foreign_org = s
        .remove_key(&posing, &code("AVAILABLE1"), &keypool_tests::test_record())
        .await;
    assert_eq!(foreign_org.unwrap(), Err(RemoveConflict::NotFound));
    let other = s
        .remove_key(&pool, &code("ELSEWHERE1"), &keypool_tests::test_record())
        .await;
    assert_eq!(other.unwrap(), Err(RemoveConflict::NotFound));
    let unknown = s
        .remove_key(&pool, &code("UNKNOWN1"), &keypool_tests::test_record())
        .await;
    assert_eq!(unknown.unwrap(), Err(RemoveConflict::NotFound));
    let redeemed = s
        .remove_key(&pool, &code("REDEEMED1"), &keypool_tests::test_record())
        .await;
    assert_eq!(redeemed.unwrap(), Err(RemoveConflict::Redeemed));
    assert_eq!(
        reload(&w, &pool).await.total_keys,
        2,
        "no conflict uncounts a key"
    );

    let ok = s
        .remove_key(&pool, &code("AVAILABLE1"), &keypool_tests::test_record())
        .await;
    assert_eq!(ok.unwrap(), Ok(()));
    assert_eq!(reload(&w, &pool).await.total_keys, 1);
    assert_counts_match(&w, &pool).await;
    assert_counts_match(&w, &other_pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_available_keys_undoes_only_what_it_may() {
    let w = World::new().await;
    let pool = new_pool(&w, ORG, 30).await;
    let other_pool = new_pool(&w, ORG, 30).await;
    add_keys(&w, &pool, &["UNDO-1", "UNDO-2", "REDEEMED-1", "STAYS-1"]).await;
    add_keys(&w, &other_pool, &["OTHER-1"]).await;
    created(redeem(&w, "lea", "REDEEMED-1").await);

    let undo = [
        code("UNDO1"),
        code("UNDO2"),
        code("REDEEMED1"),
        code("OTHER1"),
        code("NEVERADDED"),
    ];
    w.store.remove_available_keys(&pool, &undo).await.unwrap();
    let left = key_set(&all_keys(&w, &pool, None, 10).await);
    assert_eq!(left, HashSet::from([code("REDEEMED1"), code("STAYS1")]));
    assert!(w.store.get_key(&code("OTHER1")).await.unwrap().is_some());
    let fresh = reload(&w, &pool).await;
    assert_eq!((fresh.total_keys, fresh.redeemed_count), (2, 1));
    assert_counts_match(&w, &pool).await;
    assert_counts_match(&w, &other_pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_keys_filters_by_status_and_pages() {
    let w = World::new().await;
    let pool = new_pool(&w, ORG, 30).await;
    let other_pool = new_pool(&w, ORG, 30).await;
    let texts: Vec<String> = (0..12).map(|i| format!("LISTKEY{i:02}")).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    add_keys(&w, &pool, &refs).await;
    add_keys(&w, &other_pool, &["NOT-IN-THIS-POOL"]).await;
    for (i, text) in texts.iter().take(5).enumerate() {
        created(redeem(&w, &format!("learner-{i}"), text).await);
    }

    for limit in [1, 5, 12, 100] {
        assert_eq!(
            all_keys(&w, &pool, None, limit).await.len(),
            12,
            "limit {limit}"
        );
    }
    let available = all_keys(&w, &pool, Some("available"), 3).await;
    let redeemed = all_keys(&w, &pool, Some("redeemed"), 2).await;
    let want_redeemed: HashSet<_> = texts[..5].iter().map(|t| code(t)).collect();
    let want_available: HashSet<_> = texts[5..].iter().map(|t| code(t)).collect();
    assert_eq!(key_set(&redeemed), want_redeemed);
    assert_eq!(key_set(&available), want_available);
    assert_eq!(
        all_keys(&w, &pool, Some(""), 4).await.len(),
        12,
        "empty is no filter"
    );
    assert_counts_match(&w, &pool).await;

    let id = pool.pool_id.to_string();
    let store = w.dyn_store();
    for status in ["used", "Available", "REDEEMED", "all"] {
        let result = inventory::list_keys(
            store,
            &org(ORG),
            &id,
            KeyListing {
                status: Some(status),
                ..KeyListing::page(None, 5)
            },
        )
        .await;
        assert_eq!(field_errors(result), ["status"], "{status}");
    }
    let foreign =
        inventory::list_keys(store, &org(OTHER_ORG), &id, KeyListing::page(None, 5)).await;
    assert!(
        matches!(foreign, Err(Error::NotFound(Missing::Pool))),
        "{foreign:?}"
    );

    // A cursor of the available listing does not continue the redeemed one.
    let page = inventory::list_keys(
        store,
        &org(ORG),
        &id,
        KeyListing {
            status: Some("available"),
            ..KeyListing::page(None, 2)
        },
    )
    .await
    .unwrap();
    let cursor = page.next_cursor.expect("more keys");
    let crossed = inventory::list_keys(
        store,
        &org(ORG),
        &id,
        KeyListing {
            status: Some("redeemed"),
            ..KeyListing::page(Some(&cursor), 2)
        },
    )
    .await;
    assert_invalid_cursor(crossed);
    // Nor does it reach into another pool: there, it just starts a listing of that pool.
    let other_id = other_pool.pool_id.to_string();
    let there = inventory::list_keys(
        store,
        &org(ORG),
        &other_id,
        KeyListing::page(Some(&cursor), 10),
    )
    .await
    .unwrap();
    assert!(there.items.iter().all(|k| k.pool_id == other_pool.pool_id));
}
