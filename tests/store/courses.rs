//! Courses: creating, reading back, refusing overwrites, listing.

use std::collections::HashSet;

use keypool::domain::CourseId;
use keypool::ops::pools;
use keypool::ops::pools::CourseInput;
use keypool::store::prelude::*;
use keypool_tests::World;

use super::fixtures::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_course_trims_and_reads_back_in_its_org_only() {
    let w = World::new().await;
    let course = pools::create_course(
        w.dyn_store(),
        &keypool_tests::admin_of(&org(ORG)),
        CourseInput {
            launch_url: None,
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
        &keypool_tests::admin_of(&org(ORG)),
        CourseInput {
            launch_url: None,
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
                launch_url: None,
                title: String::new(),
                description: None,
            },
            &["title"],
        ),
        (
            "blank title",
            CourseInput {
                launch_url: None,
                title: " \t ".into(),
                description: None,
            },
            &["title"],
        ),
        (
            "title too long",
            CourseInput {
                launch_url: None,
                title: "x".repeat(pools::MAX_NAME_CHARS + 1),
                description: None,
            },
            &["title"],
        ),
        (
            "control character in title",
            CourseInput {
                launch_url: None,
                title: "Rust\u{7}101".into(),
                description: None,
            },
            &["title"],
        ),
        (
            "description too long",
            CourseInput {
                launch_url: None,
                title: "Rust".into(),
                description: Some("d".repeat(pools::MAX_DESCRIPTION_CHARS + 1)),
            },
            &["description"],
        ),
        (
            "both at once",
            CourseInput {
                launch_url: None,
                title: String::new(),
                description: Some("bad\u{0}".into()),
            },
            &["description", "title"],
        ),
    ];
    for (what, input, fields) in cases {
        let result = pools::create_course(
            w.dyn_store(),
            &keypool_tests::admin_of(&org(ORG)),
            input,
            w.now(),
        )
        .await;
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
    assert!(
        w.store
            .put_course(&copy, &keypool_tests::test_record())
            .await
            .is_err()
    );
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
