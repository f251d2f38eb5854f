//! What the store suites share: names, inputs, seeding, paging through listings, and the
//! assertions on errors.

use keypool::error::ErrorCode;
use std::collections::HashSet;
use std::fmt::Debug;
use std::future::Future;

use chrono::Duration;
use keypool::Error;
use keypool::domain::Page;
use keypool::domain::{Assignment, Course, KeyRecord, KeySource, KeyStatus, NewKey, Pool};
use keypool::identity::{OrgId, UserId};
use keypool::keys::{self, KeyCode};
use keypool::ops::inventory::KeyListing;
use keypool::ops::key_jobs::generate;
use keypool::ops::pools::{CourseInput, PoolInput, PoolListing};
use keypool::ops::redeem::Redeemed;
use keypool::ops::{add_keys, assignments, inventory, pools, redeem};
use keypool::store::prelude::*;
use keypool::time::{self, Timestamp};
use keypool_tests::World;

pub(crate) const ORG: &str = "acme";
pub(crate) const OTHER_ORG: &str = "globex";

pub(crate) fn org(name: &str) -> OrgId {
    OrgId::parse(name).unwrap()
}

pub(crate) fn user(name: &str) -> UserId {
    UserId::parse(name).unwrap()
}

pub(crate) fn code(text: &str) -> KeyCode {
    KeyCode::parse(text).unwrap()
}

pub(crate) fn iso(t: Timestamp) -> String {
    time::format(&t)
}

/// Lines numbered from 1, as a paste would be.
pub(crate) fn numbered(lines: &[&str]) -> add_keys::CheckedPaste {
    add_keys::CheckedPaste::from_list(lines)
}

pub(crate) fn custom(text: &str) -> NewKey {
    NewKey {
        key: code(text),
        source: KeySource::Custom,
    }
}

/// A minimal base64url (no padding) encoder, to craft cursors the way the store encodes them.
pub(crate) fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | (u32::from(b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// The field names of an `InvalidFields` error, sorted.
pub(crate) fn field_errors<T: Debug>(result: keypool::Result<T>) -> Vec<String> {
    match result {
        Err(Error::InvalidFields(fields)) => fields.into_keys().collect(),
        other => panic!("expected invalid fields, got {other:?}"),
    }
}

/// The code of a `BadRequest` error.
pub(crate) fn bad_request_code<T: Debug>(result: keypool::Result<T>) -> &'static str {
    match result {
        Err(Error::Refused { code, .. }) => code.as_str(),
        other => panic!("expected a bad request, got {other:?}"),
    }
}

/// The per-line reasons of a `keys_rejected` error.
pub(crate) fn rejected_lines<T: Debug>(result: keypool::Result<T>) -> Vec<serde_json::Value> {
    match result {
        Err(Error::Refused {
            code: ErrorCode::KeysRejected,
            details: Some(details),
            ..
        }) => details["rejected"].as_array().expect("a list").clone(),
        other => panic!("expected keys_rejected, got {other:?}"),
    }
}

/// (line, code) of each rejected line.
pub(crate) fn line_codes(rejected: &[serde_json::Value]) -> Vec<(u64, &str)> {
    rejected
        .iter()
        .map(|r| (r["line"].as_u64().unwrap(), r["code"].as_str().unwrap()))
        .collect()
}

pub(crate) fn assert_invalid_cursor<T: Debug>(result: keypool::Result<T>) {
    assert_eq!(bad_request_code(result), "invalid_cursor");
}

pub(crate) async fn new_course(w: &World, org_name: &str, title: &str) -> Course {
    pools::create_course(
        w.dyn_store(),
        &keypool_tests::admin_of(&org(org_name)),
        CourseInput {
            launch_url: None,
            title: title.into(),
            description: None,
        },
        w.now(),
    )
    .await
    .expect("course is created")
}

pub(crate) fn pool_input(
    course_id: &str,
    name: &str,
    starts: Timestamp,
    expires: Timestamp,
    days: i64,
) -> PoolInput {
    PoolInput {
        name: name.into(),
        course_id: course_id.into(),
        starts_at: iso(starts),
        expires_at: iso(expires),
        content_availability_days: days,
        counter_shards: None,
    }
}

pub(crate) async fn new_pool_between(
    w: &World,
    course: &Course,
    name: &str,
    starts: Timestamp,
    expires: Timestamp,
    days: i64,
) -> Pool {
    let input = pool_input(&course.course_id.to_string(), name, starts, expires, days);
    pools::create_pool(
        w.dyn_store(),
        &keypool_tests::admin_of(&course.org),
        input,
        w.now(),
    )
    .await
    .expect("pool is created")
}

/// A course and a pool for it that started an hour ago and runs for 30 more days.
pub(crate) async fn new_pool(w: &World, org_name: &str, days: i64) -> Pool {
    let course = new_course(w, org_name, "Rust 101").await;
    let now = w.now();
    new_pool_between(
        w,
        &course,
        "Spring cohort",
        now - Duration::hours(1),
        now + Duration::days(30),
        days,
    )
    .await
}

/// Adds custom keys, all or nothing, and checks they all went in.
pub(crate) async fn add_keys(w: &World, pool: &Pool, keys: &[&str]) {
    let report = w
        .add_custom_keys(
            pool.org.as_str(),
            &pool.pool_id.to_string(),
            &numbered(keys),
            false,
        )
        .await
        .expect("keys are added");
    assert_eq!(report.added.len(), keys.len(), "{report:?}");
}

pub(crate) async fn generate(w: &World, pool: &Pool, count: i64) -> Vec<KeyCode> {
    generate::generate_keys(
        w.dyn_store(),
        &keypool_tests::admin_of(&pool.org),
        &pool.pool_id.to_string(),
        count,
        w.now(),
    )
    .await
    .expect("keys are generated")
}

pub(crate) async fn reload(w: &World, pool: &Pool) -> Pool {
    w.store
        .get_pool(&pool.org, &pool.pool_id)
        .await
        .unwrap()
        .expect("pool exists")
}

pub(crate) async fn redeem(w: &World, who: &str, typed: &str) -> keypool::Result<Redeemed> {
    redeem_from(w, who, None, typed).await
}

/// A redemption from a client address, under the default limits.
pub(crate) async fn redeem_from(
    w: &World,
    who: &str,
    address: Option<&str>,
    typed: &str,
) -> keypool::Result<Redeemed> {
    let learner = user(who);
    let redeemer = redeem::Redeemer {
        learner: &learner,
        address: address.map(|a| a.parse().expect("an IP address")),
    };
    let settings = keypool::settings::Settings::default();
    redeem::redeem(
        w.dyn_store(),
        &settings,
        &w.pools,
        &redeemer,
        typed,
        w.now(),
    )
    .await
}

pub(crate) fn created(result: keypool::Result<Redeemed>) -> Assignment {
    match result {
        Ok(Redeemed::Created(a)) => a,
        other => panic!("expected a new assignment, got {other:?}"),
    }
}

pub(crate) fn existing(result: keypool::Result<Redeemed>) -> Assignment {
    match result {
        Ok(Redeemed::Existing(a)) => a,
        other => panic!("expected an existing assignment, got {other:?}"),
    }
}

pub(crate) fn assert_invalid_key(result: keypool::Result<Redeemed>) {
    assert!(
        matches!(result, Err(Error::InvalidKey)),
        "expected invalid_key, got {result:?}"
    );
}

/// An assignment as the domain would build it, for calling `Store::redeem` directly.
pub(crate) fn assignment_for(pool: &Pool, who: &str, key: &KeyCode, now: Timestamp) -> Assignment {
    Assignment::redeemed(pool, &user(who), key, now)
}

/// Follows cursors to the end. Every page but the last is full and carries a cursor; the last
/// has none.
pub(crate) async fn collect_pages<T, F, Fut>(limit: usize, mut fetch: F) -> Vec<T>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = keypool::Result<Page<T>>>,
{
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10_000 {
        let page = fetch(cursor.take()).await.expect("a page");
        match page.next_cursor {
            Some(next) => {
                assert_eq!(page.items.len(), limit, "a page with a cursor is full");
                cursor = Some(next);
                all.extend(page.items);
            }
            None => {
                assert!(page.items.len() <= limit, "a page holds at most `limit`");
                all.extend(page.items);
                return all;
            }
        }
    }
    panic!("the listing never ended");
}

pub(crate) async fn all_pools(
    w: &World,
    org_name: &str,
    search: Option<&str>,
    limit: usize,
) -> Vec<Pool> {
    let o = &org(org_name);
    collect_pages(limit, |cursor| async move {
        let listing = PoolListing {
            search,
            ..PoolListing::page(cursor.as_deref(), limit)
        };
        pools::list_pools(w.dyn_store(), o, listing, w.now()).await
    })
    .await
}

pub(crate) async fn all_courses(
    w: &World,
    org_name: &str,
    search: Option<&str>,
    limit: usize,
) -> Vec<Course> {
    let o = &org(org_name);
    collect_pages(limit, |cursor| async move {
        pools::list_courses(w.dyn_store(), o, search, cursor.as_deref(), limit).await
    })
    .await
}

pub(crate) async fn all_keys(
    w: &World,
    pool: &Pool,
    status: Option<&str>,
    limit: usize,
) -> Vec<KeyRecord> {
    let id = &pool.pool_id.to_string();
    collect_pages(limit, |cursor| async move {
        let listing = KeyListing {
            status,
            ..KeyListing::page(cursor.as_deref(), limit)
        };
        inventory::list_keys(w.dyn_store(), &pool.org, id, listing).await
    })
    .await
}

pub(crate) async fn all_assignments(w: &World, who: &str, limit: usize) -> Vec<Assignment> {
    let learner = &user(who);
    collect_pages(limit, |cursor| async move {
        assignments::list_assignments(w.dyn_store(), learner, cursor.as_deref(), limit).await
    })
    .await
}

pub(crate) fn key_set(records: &[KeyRecord]) -> HashSet<KeyCode> {
    records.iter().map(|r| r.key.clone()).collect()
}

/// The pool's counters agree with its keys as listed, and every listed key has its status.
pub(crate) async fn assert_counts_match(w: &World, pool: &Pool) {
    let fresh = reload(w, pool).await;
    let all = all_keys(w, pool, None, 7).await;
    let available = all_keys(w, pool, Some("available"), 7).await;
    let redeemed = all_keys(w, pool, Some("redeemed"), 7).await;
    assert!(available.iter().all(|k| k.status == KeyStatus::Available));
    assert!(redeemed.iter().all(|k| k.status == KeyStatus::Redeemed));
    assert!(
        all.iter()
            .all(|k| k.pool_id == pool.pool_id && k.org == pool.org)
    );
    assert_eq!(key_set(&all).len(), all.len(), "no key is listed twice");
    assert_eq!(fresh.total_keys, all.len() as u64, "total_keys");
    assert_eq!(
        fresh.redeemed_count,
        redeemed.len() as u64,
        "redeemed_count"
    );
    assert_eq!(all.len(), available.len() + redeemed.len());
}

/// A generated key with one symbol replaced by another of the alphabet.
pub(crate) fn with_substitution(key: &KeyCode, pos: usize) -> String {
    let mut bytes = key.as_str().as_bytes().to_vec();
    bytes[pos] = *keys::ALPHABET
        .iter()
        .find(|&&s| s != bytes[pos])
        .expect("another symbol");
    String::from_utf8(bytes).unwrap()
}
