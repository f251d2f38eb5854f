//! The store's behaviour on a real DynamoDB engine (a fresh in-memory one per test): every
//! operation of the `Store` trait, and the domain operations built on it, with their errors.
//! Nothing here goes through HTTP; `api.rs` covers the contract on the wire.

use std::collections::HashSet;
use std::fmt::Debug;
use std::future::Future;

use chrono::Duration;
use keypool::Error;
use keypool::identity::{OrgId, UserId};
use keypool::inventory::{self, KeyRecord, KeySource, KeyStatus, NewKey};
use keypool::keys::{self, KeyCode};
use keypool::pools::{
    self, AssignmentId, Course, CourseId, CourseInput, Pool, PoolId, PoolInput, PoolPatch,
};
use keypool::redemption::{self, Assignment, Redeemed};
use keypool::store::{InsertOutcome, Page, RedeemConflict, RemoveConflict, Store};
use keypool::time::{self, Timestamp};
use keypool_tests::World;

const ORG: &str = "acme";
const OTHER_ORG: &str = "globex";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn org(name: &str) -> OrgId {
    OrgId::parse(name).unwrap()
}

fn user(name: &str) -> UserId {
    UserId::parse(name).unwrap()
}

fn code(text: &str) -> KeyCode {
    KeyCode::parse(text).unwrap()
}

fn iso(t: Timestamp) -> String {
    time::format(&t)
}

/// Lines numbered from 1, as a paste would be.
fn numbered<'a>(lines: &[&'a str]) -> Vec<(usize, &'a str)> {
    lines.iter().enumerate().map(|(i, l)| (i + 1, *l)).collect()
}

fn custom(text: &str) -> NewKey {
    NewKey {
        key: code(text),
        source: KeySource::Custom,
    }
}

/// A minimal base64url (no padding) encoder, to craft cursors the way the store encodes them.
fn base64url(bytes: &[u8]) -> String {
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
fn field_errors<T: Debug>(result: keypool::Result<T>) -> Vec<String> {
    match result {
        Err(Error::InvalidFields(fields)) => fields.into_keys().collect(),
        other => panic!("expected invalid fields, got {other:?}"),
    }
}

/// The code of a `BadRequest` error.
fn bad_request_code<T: Debug>(result: keypool::Result<T>) -> &'static str {
    match result {
        Err(Error::BadRequest { code, .. }) => code,
        other => panic!("expected a bad request, got {other:?}"),
    }
}

/// The per-line reasons of a `keys_rejected` error.
fn rejected_lines<T: Debug>(result: keypool::Result<T>) -> Vec<serde_json::Value> {
    match result {
        Err(Error::BadRequest {
            code: "keys_rejected",
            details: Some(details),
            ..
        }) => details["rejected"].as_array().expect("a list").clone(),
        other => panic!("expected keys_rejected, got {other:?}"),
    }
}

/// (line, code) of each rejected line.
fn line_codes(rejected: &[serde_json::Value]) -> Vec<(u64, &str)> {
    rejected
        .iter()
        .map(|r| (r["line"].as_u64().unwrap(), r["code"].as_str().unwrap()))
        .collect()
}

fn assert_invalid_cursor<T: Debug>(result: keypool::Result<T>) {
    assert_eq!(bad_request_code(result), "invalid_cursor");
}

async fn new_course(w: &World, org_name: &str, title: &str) -> Course {
    pools::create_course(
        w.dyn_store(),
        &org(org_name),
        CourseInput {
            title: title.into(),
            description: None,
        },
        w.now(),
    )
    .await
    .expect("course is created")
}

fn pool_input(
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
    }
}

async fn new_pool_between(
    w: &World,
    course: &Course,
    name: &str,
    starts: Timestamp,
    expires: Timestamp,
    days: i64,
) -> Pool {
    let input = pool_input(&course.course_id.to_string(), name, starts, expires, days);
    pools::create_pool(w.dyn_store(), &course.org, input, w.now())
        .await
        .expect("pool is created")
}

/// A course and a pool for it that started an hour ago and runs for 30 more days.
async fn new_pool(w: &World, org_name: &str, days: i64) -> Pool {
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
async fn add_keys(w: &World, pool: &Pool, keys: &[&str]) {
    let report = inventory::add_custom_keys(
        w.dyn_store(),
        &pool.org,
        &pool.pool_id.to_string(),
        &numbered(keys),
        false,
        w.now(),
    )
    .await
    .expect("keys are added");
    assert_eq!(report.added.len(), keys.len(), "{report:?}");
}

async fn generate(w: &World, pool: &Pool, count: i64) -> Vec<KeyCode> {
    inventory::generate_keys(
        w.dyn_store(),
        &pool.org,
        &pool.pool_id.to_string(),
        count,
        w.now(),
    )
    .await
    .expect("keys are generated")
}

async fn reload(w: &World, pool: &Pool) -> Pool {
    w.store
        .get_pool(&pool.org, &pool.pool_id)
        .await
        .unwrap()
        .expect("pool exists")
}

async fn redeem(w: &World, who: &str, typed: &str) -> keypool::Result<Redeemed> {
    redemption::redeem(w.dyn_store(), &user(who), typed, w.now()).await
}

fn created(result: keypool::Result<Redeemed>) -> Assignment {
    match result {
        Ok(Redeemed::Created(a)) => a,
        other => panic!("expected a new assignment, got {other:?}"),
    }
}

fn existing(result: keypool::Result<Redeemed>) -> Assignment {
    match result {
        Ok(Redeemed::Existing(a)) => a,
        other => panic!("expected an existing assignment, got {other:?}"),
    }
}

fn assert_invalid_key(result: keypool::Result<Redeemed>) {
    assert!(
        matches!(result, Err(Error::InvalidKey)),
        "expected invalid_key, got {result:?}"
    );
}

/// An assignment as the domain would build it, for calling `Store::redeem` directly.
fn assignment_for(pool: &Pool, who: &str, key: &KeyCode, now: Timestamp) -> Assignment {
    Assignment {
        assignment_id: AssignmentId::new(),
        learner: user(who),
        org: pool.org.clone(),
        pool_id: pool.pool_id,
        course_id: pool.course_id,
        key: key.clone(),
        redeemed_at: now,
        expires_at: pool.assignment_expiry(now),
        launch_count: 0,
        last_launched_at: None,
        cancelled_at: None,
    }
}

/// Follows cursors to the end. Every page but the last is full and carries a cursor; the last
/// has none.
async fn collect_pages<T, F, Fut>(limit: usize, mut fetch: F) -> Vec<T>
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

async fn all_pools(w: &World, org_name: &str, search: Option<&str>, limit: usize) -> Vec<Pool> {
    let o = &org(org_name);
    collect_pages(limit, |cursor| async move {
        pools::list_pools(w.dyn_store(), o, search, cursor.as_deref(), limit).await
    })
    .await
}

async fn all_courses(w: &World, org_name: &str, search: Option<&str>, limit: usize) -> Vec<Course> {
    let o = &org(org_name);
    collect_pages(limit, |cursor| async move {
        pools::list_courses(w.dyn_store(), o, search, cursor.as_deref(), limit).await
    })
    .await
}

async fn all_keys(w: &World, pool: &Pool, status: Option<&str>, limit: usize) -> Vec<KeyRecord> {
    let id = &pool.pool_id.to_string();
    collect_pages(limit, |cursor| async move {
        inventory::list_keys(
            w.dyn_store(),
            &pool.org,
            id,
            status,
            None,
            cursor.as_deref(),
            limit,
        )
        .await
    })
    .await
}

async fn all_assignments(w: &World, who: &str, limit: usize) -> Vec<Assignment> {
    let learner = &user(who);
    collect_pages(limit, |cursor| async move {
        redemption::list_assignments(w.dyn_store(), learner, cursor.as_deref(), limit).await
    })
    .await
}

fn key_set(records: &[KeyRecord]) -> HashSet<KeyCode> {
    records.iter().map(|r| r.key.clone()).collect()
}

/// The pool's counters agree with its keys as listed, and every listed key has its status.
async fn assert_counts_match(w: &World, pool: &Pool) {
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
fn with_substitution(key: &KeyCode, pos: usize) -> String {
    let mut bytes = key.as_str().as_bytes().to_vec();
    bytes[pos] = *keys::ALPHABET
        .iter()
        .find(|&&s| s != bytes[pos])
        .expect("another symbol");
    String::from_utf8(bytes).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Courses
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_course_trims_and_reads_back_in_its_org_only() {
    let w = World::new().await;
    let course = pools::create_course(
        w.dyn_store(),
        &org(ORG),
        CourseInput {
            title: "  Intro to Rust  ".into(),
            description: Some("  ".into()),
        },
        w.now(),
    )
    .await
    .unwrap();
    assert_eq!(course.title, "Intro to Rust");
    assert_eq!(course.description, None, "a blank description is none");
    assert_eq!(course.created_at, w.now());

    let stored = w
        .store
        .get_course(&org(ORG), &course.course_id)
        .await
        .unwrap();
    assert_eq!(stored, Some(course.clone()));
    let elsewhere = w.store.get_course(&org(OTHER_ORG), &course.course_id).await;
    assert_eq!(elsewhere.unwrap(), None);
    let unknown = w.store.get_course(&org(ORG), &CourseId::new()).await;
    assert_eq!(unknown.unwrap(), None);

    // The longest title and description, counted in characters, not bytes.
    let long = pools::create_course(
        w.dyn_store(),
        &org(ORG),
        CourseInput {
            title: "é".repeat(pools::MAX_NAME_CHARS),
            description: Some("d".repeat(pools::MAX_DESCRIPTION_CHARS)),
        },
        w.now(),
    )
    .await
    .unwrap();
    assert_eq!(long.title.chars().count(), pools::MAX_NAME_CHARS);
    assert_eq!(all_courses(&w, ORG, None, 10).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_course_rejects_every_bad_field_and_writes_nothing() {
    let w = World::new().await;
    let cases: Vec<(&str, CourseInput, &[&str])> = vec![
        (
            "empty title",
            CourseInput {
                title: String::new(),
                description: None,
            },
            &["title"],
        ),
        (
            "blank title",
            CourseInput {
                title: " \t ".into(),
                description: None,
            },
            &["title"],
        ),
        (
            "title too long",
            CourseInput {
                title: "x".repeat(pools::MAX_NAME_CHARS + 1),
                description: None,
            },
            &["title"],
        ),
        (
            "control character in title",
            CourseInput {
                title: "Rust\u{7}101".into(),
                description: None,
            },
            &["title"],
        ),
        (
            "description too long",
            CourseInput {
                title: "Rust".into(),
                description: Some("d".repeat(pools::MAX_DESCRIPTION_CHARS + 1)),
            },
            &["description"],
        ),
        (
            "both at once",
            CourseInput {
                title: String::new(),
                description: Some("bad\u{0}".into()),
            },
            &["description", "title"],
        ),
    ];
    for (what, input, fields) in cases {
        let result = pools::create_course(w.dyn_store(), &org(ORG), input, w.now()).await;
        assert_eq!(field_errors(result), fields, "{what}");
    }
    assert!(all_courses(&w, ORG, None, 10).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_course_refuses_to_overwrite_an_existing_course() {
    let w = World::new().await;
    let course = new_course(&w, ORG, "Original").await;
    let mut copy = course.clone();
    copy.title = "Overwritten".into();
    assert!(w.store.put_course(&copy).await.is_err());
    let stored = w.store.get_course(&org(ORG), &course.course_id).await;
    assert_eq!(stored.unwrap(), Some(course));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_courses_pages_searches_and_stays_in_its_org() {
    let w = World::new().await;
    let titles = [
        "Intro to Rust",
        "Advanced RUST",
        "Go basics",
        "Rustic furniture",
        "Python",
        "Trust and safety",
        "Élan vital",
    ];
    let mut ids = HashSet::new();
    for title in titles {
        ids.insert(new_course(&w, ORG, title).await.course_id);
    }
    new_course(&w, OTHER_ORG, "Rust elsewhere").await;
    // A pool (and its course, "Rust 101") in the same partition: the pool is not a course.
    new_pool(&w, ORG, 30).await;

    let all = all_courses(&w, ORG, None, 3).await;
    assert_eq!(all.len(), titles.len() + 1);
    let listed: HashSet<_> = all.iter().map(|c| c.course_id).collect();
    assert_eq!(listed.len(), all.len(), "no course twice");
    assert!(ids.is_subset(&listed));
    assert!(all.iter().all(|c| c.org == org(ORG)));

    let rust = all_courses(&w, ORG, Some("RuSt"), 2).await;
    let mut found: Vec<_> = rust.iter().map(|c| c.title.as_str()).collect();
    found.sort_unstable();
    assert_eq!(
        found,
        [
            "Advanced RUST",
            "Intro to Rust",
            "Rust 101",
            "Rustic furniture",
            "Trust and safety"
        ]
    );
    let accents = all_courses(&w, ORG, Some("ÉLAN"), 1).await;
    assert_eq!(accents.len(), 1, "case folding beyond ASCII");
    assert!(all_courses(&w, ORG, Some("haskell"), 2).await.is_empty());
    assert_eq!(
        all_courses(&w, ORG, Some("   "), 100).await.len(),
        all.len(),
        "blank search is no filter"
    );
    let long = "x".repeat(pools::MAX_SEARCH_CHARS + 1);
    let result = pools::list_courses(w.dyn_store(), &org(ORG), Some(&long), None, 10).await;
    assert_eq!(field_errors(result), ["search"]);
}

// ---------------------------------------------------------------------------------------------
// Pools
// ---------------------------------------------------------------------------------------------

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
    };
    let pool = pools::create_pool(w.dyn_store(), &org(ORG), input, w.now())
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
    assert!(matches!(elsewhere, Err(Error::NotFound("pool"))));
    let garbage = pools::get_pool(w.dyn_store(), &org(ORG), "not-a-pool").await;
    assert!(matches!(garbage, Err(Error::NotFound("pool"))));

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
            "everything at once",
            PoolInput {
                name: String::new(),
                course_id: "x".into(),
                starts_at: "x".into(),
                expires_at: "x".into(),
                content_availability_days: 0,
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
        let result = pools::create_pool(w.dyn_store(), &org(ORG), input, w.now()).await;
        assert_eq!(field_errors(result), fields, "{what}");
    }

    let unknown = pool_input(&CourseId::new().to_string(), "Spring", start, end, 30);
    let result = pools::create_pool(w.dyn_store(), &org(ORG), unknown, w.now()).await;
    assert!(
        matches!(result, Err(Error::NotFound("course"))),
        "{result:?}"
    );

    let theirs = new_course(&w, OTHER_ORG, "Their course").await;
    let input = pool_input(&theirs.course_id.to_string(), "Spring", start, end, 30);
    let result = pools::create_pool(w.dyn_store(), &org(ORG), input, w.now()).await;
    assert!(
        matches!(result, Err(Error::NotFound("course"))),
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
    assert!(w.store.put_pool(&copy).await.is_err());
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
    let updated = pools::update_pool(w.dyn_store(), &org(ORG), &id, patch, w.now())
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
    let deactivated = pools::update_pool(w.dyn_store(), &org(ORG), &id, patch, w.now())
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
        let result = pools::update_pool(w.dyn_store(), &org(ORG), &id, patch, w.now()).await;
        assert_eq!(field_errors(result), fields, "{what}");
        assert_eq!(reload(&w, &pool).await, pool, "{what}");
    }

    let rename = || PoolPatch {
        name: Some("Stolen".into()),
        ..PoolPatch::default()
    };
    let result = pools::update_pool(w.dyn_store(), &org(OTHER_ORG), &id, rename(), w.now()).await;
    assert!(matches!(result, Err(Error::NotFound("pool"))), "{result:?}");
    let unknown = PoolId::new().to_string();
    let result = pools::update_pool(w.dyn_store(), &org(ORG), &unknown, rename(), w.now()).await;
    assert!(matches!(result, Err(Error::NotFound("pool"))), "{result:?}");
    let result = pools::update_pool(w.dyn_store(), &org(ORG), "nope", rename(), w.now()).await;
    assert!(matches!(result, Err(Error::NotFound("pool"))), "{result:?}");
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
        !w.store.update_pool_settings(&next, 7).await.unwrap(),
        "a stale version loses"
    );
    let stored = reload(&w, &pool).await;
    assert_eq!(stored.name, pool.name);
    assert_eq!(stored.version, 1);

    assert!(w.store.update_pool_settings(&next, 1).await.unwrap());
    let stored = reload(&w, &pool).await;
    assert_eq!(stored.name, "Renamed");
    assert_eq!(stored.version, 2);
    assert_eq!((stored.total_keys, stored.redeemed_count), (2, 0));

    // The same expected version a second time is now stale.
    next.name = "Again".into();
    next.version = 2;
    assert!(!w.store.update_pool_settings(&next, 1).await.unwrap());
    assert_eq!(reload(&w, &pool).await.name, "Renamed");

    // A pool that does not exist (or not in that org) is not created by an update.
    let mut ghost = next.clone();
    ghost.pool_id = PoolId::new();
    assert!(!w.store.update_pool_settings(&ghost, 1).await.unwrap());
    assert!(
        w.store
            .get_pool(&org(ORG), &ghost.pool_id)
            .await
            .unwrap()
            .is_none()
    );
    let mut foreign = next.clone();
    foreign.org = org(OTHER_ORG);
    assert!(!w.store.update_pool_settings(&foreign, 2).await.unwrap());
    assert!(
        w.store
            .get_pool(&org(OTHER_ORG), &pool.pool_id)
            .await
            .unwrap()
            .is_none()
    );
}

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
    let first = pools::list_pools(w.dyn_store(), &org(ORG), None, None, 3)
        .await
        .unwrap();
    assert_eq!(first.items.len(), 3);
    assert!(first.next_cursor.is_some());
    let from_empty_cursor = pools::list_pools(w.dyn_store(), &org(ORG), None, Some(""), 3)
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
    let course = new_course(&w, ORG, "Rust").await;
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
    assert_eq!(all_pools(&w, ORG, Some(""), 4).await.len(), names.len());
    let long = "x".repeat(pools::MAX_SEARCH_CHARS + 1);
    let result = pools::list_pools(w.dyn_store(), &org(ORG), Some(&long), None, 10).await;
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
    let first = pools::list_pools(store, &org(ORG), None, None, 1)
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
        assert_invalid_cursor(pools::list_pools(store, &org(ORG), None, Some(c), 2).await);
    }
    // A pools cursor is not a courses cursor, nor a keys cursor, nor an assignments cursor.
    assert_invalid_cursor(pools::list_courses(store, &org(ORG), None, Some(&cursor), 2).await);
    let pool_id = last_pool.pool_id.to_string();
    assert_invalid_cursor(
        inventory::list_keys(store, &org(ORG), &pool_id, None, None, Some(&cursor), 2).await,
    );
    assert_invalid_cursor(
        redemption::list_assignments(store, &user("lea"), Some(&cursor), 2).await,
    );
    let keys_page = inventory::list_keys(store, &org(ORG), &pool_id, None, None, None, 1)
        .await
        .unwrap();
    let keys_cursor = keys_page.next_cursor.expect("more keys");
    assert_invalid_cursor(pools::list_pools(store, &org(ORG), None, Some(&keys_cursor), 2).await);
    assert_invalid_cursor(
        inventory::list_keys(store, &org(ORG), &pool_id, None, None, Some("garbage"), 2).await,
    );
    // A keys cursor naming a partition outside the pool's keys is refused.
    let escaped =
        base64url(format!(r#"{{"GSI1SK":"KEY#available#A","PK":"ORG#{OTHER_ORG}"}}"#).as_bytes());
    assert_invalid_cursor(
        inventory::list_keys(store, &org(ORG), &pool_id, None, None, Some(&escaped), 2).await,
    );

    // Our cursor, handed in by another organization, only ever yields that organization's pools.
    let mut seen = Vec::new();
    let mut next = Some(cursor);
    while let Some(c) = next {
        let page = pools::list_pools(store, &org(OTHER_ORG), None, Some(&c), 1)
            .await
            .unwrap();
        seen.extend(page.items);
        next = page.next_cursor;
    }
    assert!(seen.iter().all(|p| p.org == org(OTHER_ORG)), "{seen:?}");
    assert!(seen.iter().all(|p| theirs.contains(&p.pool_id)));
}

// ---------------------------------------------------------------------------------------------
// Keys: inserting, pasting, generating
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_keys_reports_taken_keys_and_counts_only_inserted_ones() {
    let w = World::new().await;
    let a = new_pool(&w, ORG, 30).await;
    let b = new_pool(&w, ORG, 30).await;
    let now = w.now();

    let first = w
        .store
        .insert_keys(
            &a.org,
            &a.pool_id,
            &[custom("AAAA1111"), custom("BBBB2222")],
            now,
        )
        .await
        .unwrap();
    assert_eq!(first.inserted, vec![code("AAAA1111"), code("BBBB2222")]);
    assert!(first.taken.is_empty());

    // Taken in this pool, taken in another pool, and new.
    let second = w
        .store
        .insert_keys(
            &b.org,
            &b.pool_id,
            &[custom("BBBB2222"), custom("CCCC3333"), custom("AAAA1111")],
            now,
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
        .insert_keys(&a.org, &a.pool_id, &half, now)
        .await
        .unwrap();
    assert_eq!(outcome.inserted.len(), 75);
    let outcome = w
        .store
        .insert_keys(&b.org, &b.pool_id, &batch, now)
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
        .insert_keys(&a.org, &a.pool_id, &[], now)
        .await
        .unwrap();
    assert_eq!(none, InsertOutcome::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_keys_into_a_missing_pool_writes_nothing() {
    let w = World::new().await;
    let pool = new_pool(&w, ORG, 30).await;
    let keys = [custom("GHOST-001"), custom("GHOST-002")];
    let codes: Vec<KeyCode> = keys.iter().map(|k| k.key.clone()).collect();

    let missing = w
        .store
        .insert_keys(&org(ORG), &PoolId::new(), &keys, w.now())
        .await;
    assert!(
        matches!(missing, Err(Error::NotFound("pool"))),
        "{missing:?}"
    );
    // The right pool id under the wrong organization is just as missing.
    let foreign = w
        .store
        .insert_keys(&org(OTHER_ORG), &pool.pool_id, &keys, w.now())
        .await;
    assert!(
        matches!(foreign, Err(Error::NotFound("pool"))),
        "{foreign:?}"
    );

    assert!(w.store.existing_keys(&codes).await.unwrap().is_empty());
    for k in &codes {
        assert!(w.store.get_key(k).await.unwrap().is_none());
    }
    assert_eq!(reload(&w, &pool).await.total_keys, 0);
    assert!(all_keys(&w, &pool, None, 10).await.is_empty());
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
    assert_eq!(found, HashSet::from([code("ALPHA1"), code("BRAVO2")]));
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

    let result =
        inventory::add_custom_keys(w.dyn_store(), &org(ORG), &id, &lines, false, w.now()).await;
    let rejected = rejected_lines(result);
    assert_eq!(line_codes(&rejected), [(2, "too_short")]);
    assert_eq!(rejected[0]["key"], "ab");
    assert_eq!(reload(&w, &pool).await.total_keys, 0);
    assert!(all_keys(&w, &pool, None, 10).await.is_empty());
    let good = [code("GOODKEY1"), code("GOODKEY2")];
    assert!(w.store.existing_keys(&good).await.unwrap().is_empty());

    // The same paste with partial=true adds the good lines and reports the bad one.
    let report = inventory::add_custom_keys(w.dyn_store(), &org(ORG), &id, &lines, true, w.now())
        .await
        .unwrap();
    assert_eq!(report.added, ["GOODKEY1", "GOODKEY2"]);
    assert_eq!(report.rejected.len(), 1);
    assert_eq!(
        (report.rejected[0].line, report.rejected[0].code),
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
    let lines = inventory::lines_of_text(&body);
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

    let result =
        inventory::add_custom_keys(w.dyn_store(), &org(ORG), &id, &lines, false, w.now()).await;
    let rejected = rejected_lines(result);
    let want: Vec<(u64, &str)> = expected.iter().map(|&(l, c)| (l as u64, c)).collect();
    assert_eq!(line_codes(&rejected), want);
    assert!(rejected[1]["message"].as_str().unwrap().contains("line 1"));
    assert_eq!(
        reload(&w, &pool).await.total_keys,
        1,
        "only the earlier key"
    );

    let report = inventory::add_custom_keys(w.dyn_store(), &org(ORG), &id, &lines, true, w.now())
        .await
        .unwrap();
    assert_eq!(report.added, ["ABCD1234", "FRESHKEY0001"]);
    let got: Vec<(usize, &str)> = report.rejected.iter().map(|r| (r.line, r.code)).collect();
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
        let result =
            inventory::add_custom_keys(w.dyn_store(), &org(ORG), &id, &lines, false, w.now()).await;
        assert_eq!(bad_request_code(result), "keys_rejected", "{spelling}");
        let report =
            inventory::add_custom_keys(w.dyn_store(), &org(ORG), &id, &lines, true, w.now())
                .await
                .unwrap();
        assert!(report.added.is_empty(), "{spelling}");
        assert_eq!(report.rejected[0].code, "already_exists");
    }
    assert_eq!(reload(&w, &b).await.total_keys, 0);
    assert_counts_match(&w, &a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_oversized_and_misdirected_pastes_are_refused() {
    let w = World::new().await;
    let pool = new_pool(&w, ORG, 30).await;
    let id = pool.pool_id.to_string();
    let store = w.dyn_store();

    let blank = inventory::lines_of_text("\n  \n\r\n");
    assert!(blank.is_empty());
    let result = inventory::add_custom_keys(store, &org(ORG), &id, &blank, false, w.now()).await;
    assert_eq!(bad_request_code(result), "no_keys");

    let texts: Vec<String> = (0..=inventory::MAX_SYNC_KEYS)
        .map(|i| format!("KEY{i:06}"))
        .collect();
    let many = inventory::lines_of_list(&texts);
    assert_eq!(many.len(), inventory::MAX_SYNC_KEYS + 1);
    let result = inventory::add_custom_keys(store, &org(ORG), &id, &many, true, w.now()).await;
    assert_eq!(bad_request_code(result), "too_many_keys");

    let one = numbered(&["VALID-KEY-1"]);
    let result = inventory::add_custom_keys(store, &org(OTHER_ORG), &id, &one, true, w.now()).await;
    assert!(matches!(result, Err(Error::NotFound("pool"))), "{result:?}");
    let unknown = PoolId::new().to_string();
    let result = inventory::add_custom_keys(store, &org(ORG), &unknown, &one, true, w.now()).await;
    assert!(matches!(result, Err(Error::NotFound("pool"))), "{result:?}");
    let result = inventory::add_custom_keys(store, &org(ORG), "x", &one, true, w.now()).await;
    assert!(matches!(result, Err(Error::NotFound("pool"))), "{result:?}");

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
    let texts: Vec<String> = (0..inventory::MAX_SYNC_KEYS)
        .map(|i| format!("BULK-{i:06}"))
        .collect();
    let lines = inventory::lines_of_list(&texts);
    let report = inventory::add_custom_keys(w.dyn_store(), &org(ORG), &id, &lines, false, w.now())
        .await
        .unwrap();
    assert_eq!(report.added.len(), inventory::MAX_SYNC_KEYS);
    assert!(report.rejected.is_empty());
    let max = inventory::MAX_SYNC_KEYS as u64;
    assert_eq!(reload(&w, &pool).await.total_keys, max);

    // The same paste again: every line already exists, and nothing changes.
    let again =
        inventory::add_custom_keys(w.dyn_store(), &org(ORG), &id, &lines, false, w.now()).await;
    let rejected = rejected_lines(again);
    // The answer lists the first thousand (and counts them all).
    assert_eq!(rejected.len(), inventory::MAX_REJECTED_SHOWN);
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
        inventory::MAX_SYNC_KEYS as i64 + 1,
        i64::MAX,
    ] {
        let result = inventory::generate_keys(w.dyn_store(), &org(ORG), &id, count, w.now()).await;
        assert_eq!(field_errors(result), ["count"], "count {count}");
    }
    let result = inventory::generate_keys(w.dyn_store(), &org(OTHER_ORG), &id, 5, w.now()).await;
    assert!(matches!(result, Err(Error::NotFound("pool"))), "{result:?}");
    let unknown = PoolId::new().to_string();
    let result = inventory::generate_keys(w.dyn_store(), &org(ORG), &unknown, 5, w.now()).await;
    assert!(matches!(result, Err(Error::NotFound("pool"))), "{result:?}");

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
    let made = generate(&w, &pool, inventory::MAX_SYNC_KEYS as i64).await;
    assert_eq!(made.len(), inventory::MAX_SYNC_KEYS);
    assert_eq!(
        made.iter().collect::<HashSet<_>>().len(),
        inventory::MAX_SYNC_KEYS
    );
    assert_eq!(
        reload(&w, &pool).await.total_keys,
        inventory::MAX_SYNC_KEYS as u64
    );
}

// ---------------------------------------------------------------------------------------------
// Keys: removing and listing
// ---------------------------------------------------------------------------------------------

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

    inventory::remove_key(store, &org(ORG), &id, "remove-me")
        .await
        .unwrap();
    assert!(w.store.get_key(&code("REMOVEME")).await.unwrap().is_none());
    assert_eq!(reload(&w, &pool).await.total_keys, 2);
    assert!(!key_set(&all_keys(&w, &pool, None, 10).await).contains(&code("REMOVEME")));

    let again = inventory::remove_key(store, &org(ORG), &id, "REMOVEME").await;
    assert!(matches!(again, Err(Error::NotFound("key"))), "{again:?}");
    let redeemed = inventory::remove_key(store, &org(ORG), &id, "REDEEM-ME").await;
    assert!(matches!(redeemed, Err(Error::KeyRedeemed)), "{redeemed:?}");
    let unknown = inventory::remove_key(store, &org(ORG), &id, "NEVER-SEEN").await;
    assert!(
        matches!(unknown, Err(Error::NotFound("key"))),
        "{unknown:?}"
    );
    let malformed = inventory::remove_key(store, &org(ORG), &id, "a!").await;
    assert!(
        matches!(malformed, Err(Error::NotFound("key"))),
        "{malformed:?}"
    );
    let foreign_key = inventory::remove_key(store, &org(ORG), &id, "NOT-YOURS").await;
    assert!(
        matches!(foreign_key, Err(Error::NotFound("key"))),
        "{foreign_key:?}"
    );
    let foreign_org = inventory::remove_key(store, &org(OTHER_ORG), &id, "KEEP-ME").await;
    assert!(
        matches!(foreign_org, Err(Error::NotFound("pool"))),
        "{foreign_org:?}"
    );
    let no_pool = inventory::remove_key(store, &org(ORG), "nope", "KEEP-ME").await;
    assert!(
        matches!(no_pool, Err(Error::NotFound("pool"))),
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

    let foreign_org = s
        .remove_key(&org(OTHER_ORG), &pool.pool_id, &code("AVAILABLE1"))
        .await;
    assert_eq!(foreign_org.unwrap(), Err(RemoveConflict::NotFound));
    let other = s
        .remove_key(&org(ORG), &pool.pool_id, &code("ELSEWHERE1"))
        .await;
    assert_eq!(other.unwrap(), Err(RemoveConflict::NotFound));
    let unknown = s
        .remove_key(&org(ORG), &pool.pool_id, &code("UNKNOWN1"))
        .await;
    assert_eq!(unknown.unwrap(), Err(RemoveConflict::NotFound));
    let redeemed = s
        .remove_key(&org(ORG), &pool.pool_id, &code("REDEEMED1"))
        .await;
    assert_eq!(redeemed.unwrap(), Err(RemoveConflict::Redeemed));
    assert_eq!(
        reload(&w, &pool).await.total_keys,
        2,
        "no conflict uncounts a key"
    );

    let ok = s
        .remove_key(&org(ORG), &pool.pool_id, &code("AVAILABLE1"))
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
    w.store
        .remove_available_keys(&org(ORG), &pool.pool_id, &undo)
        .await
        .unwrap();
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
        let result = inventory::list_keys(store, &org(ORG), &id, Some(status), None, None, 5).await;
        assert_eq!(field_errors(result), ["status"], "{status}");
    }
    let foreign = inventory::list_keys(store, &org(OTHER_ORG), &id, None, None, None, 5).await;
    assert!(
        matches!(foreign, Err(Error::NotFound("pool"))),
        "{foreign:?}"
    );

    // A cursor of the available listing does not continue the redeemed one.
    let page = inventory::list_keys(store, &org(ORG), &id, Some("available"), None, None, 2)
        .await
        .unwrap();
    let cursor = page.next_cursor.expect("more keys");
    let crossed = inventory::list_keys(
        store,
        &org(ORG),
        &id,
        Some("redeemed"),
        None,
        Some(&cursor),
        2,
    )
    .await;
    assert_invalid_cursor(crossed);
    // Nor does it reach into another pool: there, it just starts a listing of that pool.
    let other_id = other_pool.pool_id.to_string();
    let there = inventory::list_keys(store, &org(ORG), &other_id, None, None, Some(&cursor), 10)
        .await
        .unwrap();
    assert!(there.items.iter().all(|k| k.pool_id == other_pool.pool_id));
}

// ---------------------------------------------------------------------------------------------
// Redemption
// ---------------------------------------------------------------------------------------------

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
    pools::update_pool(w.dyn_store(), &org(ORG), &id, set(true), w.now())
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

    pools::update_pool(w.dyn_store(), &org(ORG), &id, set(false), w.now())
        .await
        .unwrap();
    created(redeem(&w, "lea", "PAUSED-KEY").await);
    assert_counts_match(&w, &pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_removed_and_mistyped_keys_are_all_invalid() {
    let w = World::new().await;
    let pool = new_pool(&w, ORG, 30).await;
    add_keys(&w, &pool, &["GONE-SOON"]).await;
    let generated = generate(&w, &pool, 1).await.remove(0);
    inventory::remove_key(
        w.dyn_store(),
        &org(ORG),
        &pool.pool_id.to_string(),
        "GONE-SOON",
    )
    .await
    .unwrap();

    let mut swapped = generated.as_str().as_bytes().to_vec();
    let pos = (0..19).find(|&i| swapped[i] != swapped[i + 1]).unwrap();
    swapped.swap(pos, pos + 1);
    let swapped = String::from_utf8(swapped).unwrap();
    let first_wrong = with_substitution(&generated, 0);
    let check_wrong = with_substitution(&generated, 19);
    for typed in [
        "NO-SUCH-KEY",
        "GONE-SOON",
        first_wrong.as_str(),
        check_wrong.as_str(),
        swapped.as_str(),
        "ab",
        "bad key!",
        "",
    ] {
        assert_invalid_key(redeem(&w, "lea", typed).await);
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
async fn ten_failures_throttle_the_learner_until_the_window_ends() {
    let w = World::new().await;
    let pool = new_pool(&w, ORG, 30).await;
    add_keys(&w, &pool, &["REAL-KEY-1", "REAL-KEY-2"]).await;

    for i in 0..redemption::MAX_FAILED_ATTEMPTS {
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
    assert!(wait <= redemption::THROTTLE_WINDOW_SECS as u64, "{wait}");
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
    assert_eq!(s.redeem(&first, pool.version, now).await.unwrap(), Ok(()));

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
            s.redeem(assignment, pool.version, now).await.unwrap(),
            Err(*conflict)
        );
        let stored = s
            .get_assignment(&assignment.learner, &assignment.assignment_id)
            .await;
        assert_eq!(stored.unwrap(), None, "{conflict:?}");
    }
    // The pool is not active at that time (before its start, at its expiry).
    for at in [pool.starts_at - Duration::milliseconds(1), pool.expires_at] {
        let a = assignment_for(&pool, "max", &code("KEYC"), at);
        assert_eq!(
            s.redeem(&a, pool.version, at).await.unwrap(),
            Err(RedeemConflict::PoolNotActive)
        );
        assert_eq!(
            s.get_assignment(&a.learner, &a.assignment_id)
                .await
                .unwrap(),
            None
        );
    }
    // A pool under another organization does not exist for the transaction.
    let mut foreign = assignment_for(&pool, "max", &code("KEYC"), now);
    foreign.org = org(OTHER_ORG);
    assert_eq!(
        s.redeem(&foreign, pool.version, now).await.unwrap(),
        Err(RedeemConflict::PoolNotActive)
    );
    // A pool edited since it was read (its settings shaped the assignment) is refused too, so
    // the redemption re-reads it instead of using stale content availability.
    let stale = assignment_for(&pool, "max", &code("KEYC"), now);
    assert_eq!(
        s.redeem(&stale, pool.version + 1, now).await.unwrap(),
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

// ---------------------------------------------------------------------------------------------
// Assignments: launching and listing
// ---------------------------------------------------------------------------------------------

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
    let first = redemption::launch(store, &lea, &id, w.now()).await.unwrap();
    assert_eq!(first.launch_count, 1);
    assert_eq!(first.last_launched_at, Some(w.now()));
    assert_eq!(first.expires_at, a.expires_at);
    w.clock.advance(Duration::minutes(1));
    let second = redemption::launch(store, &lea, &id, w.now()).await.unwrap();
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
    let last = redemption::launch(store, &lea, &id, w.now()).await.unwrap();
    assert_eq!(last.launch_count, 3);
    w.clock.advance(Duration::milliseconds(1));
    match redemption::launch(store, &lea, &id, w.now()).await {
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
    let result = redemption::launch(store, &lea, &unknown, w.now()).await;
    assert!(
        matches!(result, Err(Error::NotFound("assignment"))),
        "{result:?}"
    );
    let result = redemption::launch(store, &lea, "not-an-id", w.now()).await;
    assert!(
        matches!(result, Err(Error::NotFound("assignment"))),
        "{result:?}"
    );
    w.clock.advance(-Duration::days(1));
    let result = redemption::launch(store, &user("max"), &id, w.now()).await;
    assert!(
        matches!(result, Err(Error::NotFound("assignment"))),
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
    let page = redemption::list_assignments(store, &user("lea"), None, 2)
        .await
        .unwrap();
    let cursor = page.next_cursor.expect("more assignments");
    // Another learner holding this cursor sees nothing of lea's.
    let theirs = redemption::list_assignments(store, &user("max"), Some(&cursor), 10)
        .await
        .unwrap();
    assert!(theirs.items.is_empty(), "{theirs:?}");
    assert_invalid_cursor(redemption::list_assignments(store, &user("lea"), Some("??"), 2).await);
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
        w.store.put_pool(&pool).await.unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_a_pools_window_moves_redemption() {
    let w = World::new().await;
    let pool = new_pool(&w, ORG, 30).await;
    add_keys(&w, &pool, &["WINDOW-1", "WINDOW-2", "WINDOW-3"]).await;
    let id = pool.pool_id.to_string();
    let now = w.now();
    let acme = org(ORG);
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
            .put_course(&Course {
                course_id: keypool::pools::CourseId::new(),
                org: org(ORG),
                title: format!("Hay {i}"),
                description: None,
                created_at: w.now(),
            })
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
