//! Pool counts on shards: spread over items, exact when summed, and a cached pool that never
//! lets a redemption past an edit of the pool.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use keypool::domain::{DEFAULT_SHARDS, KeyStatus, Pool};
use keypool::ops::pools::{self, PoolPatch};
use keypool::ops::{cancel, redeem::Redeemed};
use keypool::schema;
use keypool::store::prelude::*;
use keypool_tests::World;

use super::fixtures::*;

/// Every count shard of a pool as stored: (total_keys, redeemed_count, version).
async fn shard_items(w: &World, pool: &Pool) -> Vec<(i64, i64, Option<i64>)> {
    let mut shards = Vec::new();
    for shard in 0..pool.shards {
        let item = w
            .store
            .client()
            .get_item()
            .table_name(&w.tables.main)
            .key("PK", s(schema::pool_shard_pk(&pool.pool_id, shard)))
            .key("SK", s(schema::POOL_SHARD_SK))
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .item;
        if let Some(item) = item {
            shards.push((
                number(&item, "total_keys").unwrap_or(0),
                number(&item, "redeemed_count").unwrap_or(0),
                number(&item, "version"),
            ));
        }
    }
    shards
}

/// The pool's own item as stored.
async fn pool_item(w: &World, pool: &Pool) -> HashMap<String, AttributeValue> {
    w.store
        .client()
        .get_item()
        .table_name(&w.tables.main)
        .key("PK", s(schema::org_pk(&pool.org)))
        .key("SK", s(schema::pool_sk(&pool.pool_id)))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .expect("the pool item")
}

fn number(item: &HashMap<String, AttributeValue>, name: &str) -> Option<i64> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse().ok(),
        _ => None,
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_are_spread_over_shards_and_exact_when_summed() {
    let w = World::new().await;
    let pool = new_pool(&w, ORG, 30).await;
    assert_eq!(pool.shards, DEFAULT_SHARDS);
    for batch in 0..3 {
        let keys: Vec<String> = (0..40).map(|i| format!("SHARD-{batch}-{i:03}")).collect();
        add_keys(
            &w,
            &pool,
            &keys.iter().map(String::as_str).collect::<Vec<_>>(),
        )
        .await;
    }
    for i in 0..20 {
        created(redeem(&w, &format!("learner-{i}"), &format!("SHARD-1-{i:03}")).await);
    }
    let removed = code("SHARD2039");
    keypool::ops::inventory::remove_key(
        w.dyn_store(),
        &keypool_tests::admin_of(&pool.org),
        &pool.pool_id.to_string(),
        "SHARD-2-039",
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    assert!(w.store.get_key(&removed).await.unwrap().is_none());

    // The pool's own item takes none of it: no hot item.
    let own = pool_item(&w, &pool).await;
    assert_eq!(number(&own, "total_keys"), Some(0));
    assert_eq!(number(&own, "redeemed_count"), Some(0));
    let shards = shard_items(&w, &pool).await;
    let redeeming = shards.iter().filter(|(_, r, _)| *r != 0).count();
    assert!(
        redeeming >= 2,
        "20 redemptions on {} shards all went to one: {shards:?}",
        pool.shards
    );
    let total: i64 = shards.iter().map(|(t, _, _)| t).sum();
    let redeemed: i64 = shards.iter().map(|(_, r, _)| r).sum();
    assert_eq!((total, redeemed), (119, 20));
    let read = reload(&w, &pool).await;
    assert_eq!((read.total_keys, read.redeemed_count), (119, 20));
    assert_counts_match(&w, &pool).await;
    // The listing sums the same shards.
    let listed = all_pools(&w, ORG, None, 10).await;
    let mine = listed.iter().find(|p| p.pool_id == pool.pool_id).unwrap();
    assert_eq!((mine.total_keys, mine.redeemed_count), (119, 20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_pool_never_lets_a_redemption_past_an_edit() {
    let w = World::new().await;
    let pool = new_pool(&w, ORG, 30).await;
    add_keys(&w, &pool, &["CACHE-1", "CACHE-2", "CACHE-3"]).await;
    let id = pool.pool_id.to_string();
    // The first redemption puts the pool's settings in the world's cache.
    let first = created(redeem(&w, "ann", "CACHE-1").await);
    assert_eq!(
        first.expires_at,
        first.redeemed_at + chrono::Duration::days(30)
    );

    // A shorter availability: the cached 30 days must not be used.
    let patch = |json: serde_json::Value| serde_json::from_value::<PoolPatch>(json).unwrap();
    pools::update_pool(
        w.dyn_store(),
        &keypool_tests::admin_of(&pool.org),
        &id,
        patch(serde_json::json!({"content_availability_days": 7})),
        w.now(),
    )
    .await
    .unwrap();
    let second = created(redeem(&w, "bob", "CACHE-2").await);
    assert_eq!(
        second.expires_at,
        second.redeemed_at + chrono::Duration::days(7)
    );
    // Every shard knows the pool's new version.
    let edited = reload(&w, &pool).await;
    let shards = shard_items(&w, &edited).await;
    assert_eq!(shards.len(), usize::from(edited.shards));
    assert!(
        shards
            .iter()
            .all(|(_, _, v)| *v == Some(edited.version as i64))
    );

    // Deactivated: refused at once, with a cache that still holds the open pool.
    created(redeem(&w, "cat", "CACHE-3").await);
    pools::update_pool(
        w.dyn_store(),
        &keypool_tests::admin_of(&pool.org),
        &id,
        patch(serde_json::json!({"deactivated": true})),
        w.now(),
    )
    .await
    .unwrap();
    add_keys(&w, &pool, &["CACHE-4"]).await;
    let refused = redeem(&w, "dan", "CACHE-4").await;
    assert!(
        matches!(
            refused,
            Err(keypool::Error::PoolNotActive {
                deactivated: true,
                ..
            })
        ),
        "{refused:?}"
    );
    let key = w.store.get_key(&code("CACHE4")).await.unwrap().unwrap();
    assert_eq!(key.status, KeyStatus::Available);
    assert_eq!(reload(&w, &pool).await.redeemed_count, 3);
    assert_counts_match(&w, &pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_cut_short_is_finished_by_the_next_read() {
    let w = World::new().await;
    let pool = new_pool(&w, ORG, 30).await;
    let mut edited = pool.clone();
    edited.version += 1;
    edited.name = "Edited".into();
    assert!(
        w.store
            .update_pool_settings(&edited, pool.version, &keypool_tests::test_record())
            .await
            .unwrap()
    );
    // As if the edit had stopped before it reached shard 5.
    w.store
        .client()
        .update_item()
        .table_name(&w.tables.main)
        .key("PK", s(schema::pool_shard_pk(&pool.pool_id, 5)))
        .key("SK", s(schema::POOL_SHARD_SK))
        .update_expression("SET version = :old")
        .expression_attribute_values(":old", AttributeValue::N(pool.version.to_string()))
        .send()
        .await
        .unwrap();
    assert!(
        shard_items(&w, &edited)
            .await
            .iter()
            .any(|(_, _, v)| *v == Some(1))
    );

    reload(&w, &pool).await;
    let shards = shard_items(&w, &edited).await;
    assert!(
        shards
            .iter()
            .all(|(_, _, v)| *v == Some(edited.version as i64)),
        "{shards:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_made_before_shards_keeps_counting_on_its_own_item() {
    let w = World::new().await;
    let made = new_pool(&w, ORG, 30).await;
    // The same pool as an older version stored it: no shards.
    let legacy = Pool {
        pool_id: keypool::domain::PoolId::new(),
        shards: 0,
        ..made
    };
    w.store
        .put_pool(&legacy, &keypool_tests::test_record())
        .await
        .unwrap();
    add_keys(&w, &legacy, &["OLD-1", "OLD-2", "OLD-3"]).await;
    let a = created(redeem(&w, "eve", "OLD-1").await);
    let own = pool_item(&w, &legacy).await;
    assert_eq!(number(&own, "total_keys"), Some(3));
    assert_eq!(number(&own, "redeemed_count"), Some(1));
    assert!(
        shard_items(
            &w,
            &Pool {
                shards: 4,
                ..legacy.clone()
            }
        )
        .await
        .is_empty()
    );

    cancel::cancel(
        w.dyn_store(),
        &keypool_tests::admin_of(&legacy.org),
        &a.assignment_id.to_string(),
        w.now(),
    )
    .await
    .unwrap();
    let read = reload(&w, &legacy).await;
    assert_eq!((read.total_keys, read.redeemed_count), (3, 0));
    // An edit still guards redemptions on the pool's own item.
    let mut edited = read.clone();
    edited.version += 1;
    assert!(
        w.store
            .update_pool_settings(&edited, read.version, &keypool_tests::test_record())
            .await
            .unwrap()
    );
    let stale = assignment_for(&read, "fay", &code("OLD2"), w.now());
    assert_eq!(
        w.store.redeem(&stale, &read, w.now(), &[]).await.unwrap(),
        Err(keypool::store::RedeemConflict::PoolNotActive)
    );
    assert!(matches!(
        redeem(&w, "fay", "OLD-2").await,
        Ok(Redeemed::Created(_))
    ));
    assert_counts_match(&w, &legacy).await;
}
