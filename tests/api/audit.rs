//! The audit log: one record per change, none for a refused or failed change, filters and
//! pages, CSV safe from formulas, and who may read it (nobody may write it).

use std::collections::BTreeMap;

use axum::http::{Method, StatusCode};
use keypool::identity::Role;
use keypool_tests::{Faults, World};
use serde_json::{Value, json};

use super::fixtures::*;

const ORG: &str = "acme";

/// Every record of the organization, newest first, as the admin reads them.
async fn audit(w: &World, query: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/audit?limit=3&{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let r = w.call(GET, &path, Some(&w.admin(ORG)), None).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {:?}", r.body);
        items.extend(r.body["items"].as_array().unwrap().iter().cloned());
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return items,
        }
    }
}

fn counts(records: &[Value]) -> BTreeMap<String, usize> {
    let mut by_action = BTreeMap::new();
    for r in records {
        *by_action
            .entry(r["action"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    by_action
}

async fn patch_pool(w: &World, pool_id: &str, body: Value) -> StatusCode {
    let r = w
        .call(
            Method::PATCH,
            &format!("/v1/pools/{pool_id}"),
            Some(&w.admin(ORG)),
            Some(body),
        )
        .await;
    r.status
}

async fn add_keys(w: &World, pool_id: &str, keys: &[&str], partial: bool) -> StatusCode {
    let path = format!("/v1/pools/{pool_id}/keys?partial={partial}");
    let r = w
        .call(
            POST,
            &path,
            Some(&w.admin(ORG)),
            Some(json!({ "keys": keys })),
        )
        .await;
    r.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_writes_exactly_one_record_with_who_what_and_which() {
    let w = World::new().await;
    let (course_id, pool_id) = w.pool(ORG, 30).await;
    let admin = w.admin(ORG);
    let r = w
        .call(
            Method::PATCH,
            &format!("/v1/courses/{course_id}"),
            Some(&admin),
            Some(json!({"description": "now with more borrowing"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        patch_pool(&w, &pool_id, json!({"name": "Autumn"})).await,
        StatusCode::OK
    );
    assert_eq!(
        patch_pool(&w, &pool_id, json!({"deactivated": true})).await,
        StatusCode::OK
    );
    assert_eq!(
        patch_pool(&w, &pool_id, json!({"deactivated": false})).await,
        StatusCode::OK
    );
    assert_eq!(
        add_keys(&w, &pool_id, &["ONE-KEY-1"], false).await,
        StatusCode::CREATED
    );
    assert_eq!(
        add_keys(
            &w,
            &pool_id,
            &["PASTE-A-1", "PASTE-B-2", "PASTE-C-3"],
            false
        )
        .await,
        StatusCode::CREATED
    );
    assert_eq!(
        add_keys(&w, &pool_id, &["PART-A-1", "PART-B-2"], true).await,
        StatusCode::CREATED
    );
    w.generate(ORG, &pool_id, 5).await;
    let r = w
        .call(
            Method::DELETE,
            &format!("/v1/pools/{pool_id}/keys/PASTE-A-1"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);

    let records = audit(&w, "").await;
    let expected: BTreeMap<String, usize> = [
        ("course.created", 1),
        ("course.updated", 1),
        ("pool.created", 1),
        ("pool.updated", 1),
        ("pool.deactivated", 1),
        ("pool.reactivated", 1),
        ("key.added", 1),
        ("keys.pasted", 2),
        ("keys.generated", 1),
        ("key.removed", 1),
    ]
    .into_iter()
    .map(|(a, n)| (a.to_string(), n))
    .collect();
    assert_eq!(counts(&records), expected);
    // Newest first, each by the admin, each naming its resource and request.
    assert_eq!(records[0]["action"], "key.removed");
    // A key is named by its last four symbols only.
    assert_eq!(
        records[0]["resource"],
        json!({"type": "key", "id": "…TEA1"})
    );
    let ats: Vec<&str> = records.iter().map(|r| r["at"].as_str().unwrap()).collect();
    assert!(ats.windows(2).all(|p| p[0] >= p[1]), "{ats:?}");
    for r in &records {
        assert_eq!(
            r["actor"],
            json!({"sub": "admin-of-acme", "role": "admin"}),
            "{r}"
        );
        assert!(
            r["request_id"].as_str().is_some_and(|id| !id.is_empty()),
            "{r}"
        );
    }
    let edit = records
        .iter()
        .find(|r| r["action"] == "pool.updated")
        .unwrap();
    assert_eq!(edit["resource"], json!({"type": "pool", "id": pool_id}));
    assert_eq!(edit["summary"]["before"], json!({"name": "Spring cohort"}));
    assert_eq!(edit["summary"]["after"], json!({"name": "Autumn"}));
    let course = records
        .iter()
        .find(|r| r["action"] == "course.updated")
        .unwrap();
    assert_eq!(course["resource"]["id"], course_id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_change_leaves_no_record() {
    let w = World::new().await;
    let (_, pool_id) = w.pool(ORG, 30).await;
    let before = audit(&w, "").await.len();
    // Bad input, a pool that does not exist, keys that are not keys, a key that is not there.
    assert_eq!(
        patch_pool(&w, &pool_id, json!({"name": ""})).await,
        StatusCode::BAD_REQUEST
    );
    let unknown = "01a2486d-7117-765a-8b2a-aad43d3db2e7";
    assert_eq!(
        patch_pool(&w, unknown, json!({"name": "x"})).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        add_keys(&w, &pool_id, &["a!"], false).await,
        StatusCode::BAD_REQUEST
    );
    let r = w
        .call(
            Method::DELETE,
            &format!("/v1/pools/{pool_id}/keys/NOT-THERE-1"),
            Some(&w.admin(ORG)),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = w
        .call(
            POST,
            "/v1/pools",
            Some(&w.admin(ORG)),
            Some(json!({"name": "no course"})),
        )
        .await;
    assert!(r.status.is_client_error());
    assert_eq!(audit(&w, "").await.len(), before);
}

/// A change whose transaction DynamoDB cancels writes neither itself nor its record; once the
/// faults stop, the same change writes both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_change_without_its_record_and_no_record_without_its_change() {
    let w = World::with_faults(Faults::NONE).await;
    let (_, pool_id) = w.pool(ORG, 30).await;
    let before = audit(&w, "").await.len();
    w.injector().set(Faults::conflicts(1.0));
    let edit = patch_pool(&w, &pool_id, json!({"name": "Never"})).await;
    let added = add_keys(&w, &pool_id, &["FAULT-KEY-1"], true).await;
    w.injector().set(Faults::NONE);
    assert_eq!(edit, StatusCode::CONFLICT);
    assert_eq!(added, StatusCode::CONFLICT);
    let pool = w
        .call(
            GET,
            &format!("/v1/pools/{pool_id}"),
            Some(&w.admin(ORG)),
            None,
        )
        .await;
    assert_eq!(pool.body["name"], "Spring cohort");
    assert_eq!(pool.body["total_keys"], 0);
    assert_eq!(audit(&w, "").await.len(), before);

    assert_eq!(
        patch_pool(&w, &pool_id, json!({"name": "Now"})).await,
        StatusCode::OK
    );
    assert_eq!(audit(&w, "action=pool.updated").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_each_read_their_own_partition_and_pages_join_up() {
    let w = World::new().await;
    let (_, pool_id) = w.pool(ORG, 30).await;
    let (_, other_pool) = w.pool(ORG, 30).await;
    for name in ["a", "b", "c", "d"] {
        assert_eq!(
            patch_pool(&w, &pool_id, json!({"name": name})).await,
            StatusCode::OK
        );
    }
    assert_eq!(
        patch_pool(&w, &other_pool, json!({"name": "z"})).await,
        StatusCode::OK
    );
    // Another organization's records are not ours.
    w.pool("globex", 30).await;

    let all = audit(&w, "").await;
    assert_eq!(all.len(), 2 + 2 + 4 + 1);
    assert_eq!(audit(&w, "action=pool.updated").await.len(), 5);
    assert_eq!(audit(&w, &format!("resource_id={pool_id}")).await.len(), 5);
    assert_eq!(
        audit(&w, &format!("resource_id={pool_id}&action=pool.updated"))
            .await
            .len(),
        4
    );
    assert_eq!(audit(&w, "actor=admin-of-acme").await.len(), all.len());
    assert_eq!(audit(&w, "actor=someone-else").await.len(), 0);
    assert_eq!(
        audit(&w, "actor=admin-of-acme&action=pool.created")
            .await
            .len(),
        2
    );
    let newest = all[0]["at"].as_str().unwrap();
    let since = format!("since={}", urlencode(newest));
    assert!(!audit(&w, &since).await.is_empty());
    let until = format!("until={}", urlencode("2001-01-01T00:00:00Z"));
    assert!(audit(&w, &until).await.is_empty());

    for bad in ["action=pool.exploded", "since=yesterday", "limit=0"] {
        let r = w
            .call(GET, &format!("/v1/audit?{bad}"), Some(&w.admin(ORG)), None)
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    // A cursor of one filter does not open another partition.
    let r = w
        .call(GET, "/v1/audit?limit=1", Some(&w.admin(ORG)), None)
        .await;
    let cursor = r.body["next_cursor"].as_str().unwrap().to_string();
    let r = w
        .call(
            GET,
            &format!("/v1/audit?limit=1&actor=x&cursor={cursor}"),
            Some(&w.admin(ORG)),
            None,
        )
        .await;
    assert_eq!(r.code(), "invalid_cursor");
}

fn urlencode(text: &str) -> String {
    text.replace(':', "%3A").replace('+', "%2B")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_readers_may_read_learners_may_not_and_nobody_writes() {
    let w = World::new().await;
    w.pool(ORG, 30).await;
    for role in [Role::Admin, Role::Viewer, Role::Finance] {
        let token = w.staff(ORG, role);
        for path in ["/v1/audit", "/v1/audit.csv"] {
            let r = w.call(GET, path, Some(&token), None).await;
            assert_eq!(r.status, StatusCode::OK, "{role:?} {path}");
        }
    }
    let learner = w.learner("lea");
    for path in ["/v1/audit", "/v1/audit.csv"] {
        let r = w.call(GET, path, Some(&learner), None).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(r.code(), "forbidden_role");
    }
    let admin = w.admin(ORG);
    for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
        let r = w
            .call(method.clone(), "/v1/audit", Some(&admin), Some(json!({})))
            .await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_csv_holds_every_record_and_no_cell_a_spreadsheet_would_run() {
    let w = World::new().await;
    let (_, pool_id) = w.pool(ORG, 30).await;
    assert_eq!(
        patch_pool(&w, &pool_id, json!({"name": "=HYPERLINK(\"x\")"})).await,
        StatusCode::OK
    );
    let (status, _, body) = w.get_streamed("/v1/audit.csv", Some(&w.admin(ORG))).await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(body.unwrap()).unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(&rows[0][2], "pool.updated");

    // A record whose fields come from outside, written as CSV: every risky cell neutralised.
    let acme = keypool::identity::OrgId::parse(ORG).unwrap();
    let mut caller = keypool::domain::Caller::new(acme, "=cmd|' /C calc'!A0", Role::Admin);
    caller.client_address = Some("+1".into());
    let record = caller.record(
        keypool::domain::AuditAction::PoolUpdated,
        keypool::domain::Resource::new("pool", "@SUM(1)"),
        keypool::domain::Summary::new(),
        w.now(),
    );
    let mut out = csv::Writer::from_writer(Vec::new());
    keypool::ops::audit::write_csv_rows(&mut out, &[record]).unwrap();
    let written = String::from_utf8(out.into_inner().unwrap()).unwrap();
    let row = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(written.as_bytes())
        .records()
        .next()
        .unwrap()
        .unwrap();
    for cell in row.iter() {
        assert!(
            !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
            "{cell:?}"
        );
    }
}

/// A pool's activity: its own records and those of its keys and assignments, each naming
/// the pool; never another pool's, and never a record of no pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_filter_returns_that_pools_records_and_no_other() {
    let w = World::new().await;
    let (course_id, pool_id) = w.pool(ORG, 30).await;
    let (_, other_pool) = w.pool(ORG, 30).await;
    assert_eq!(
        patch_pool(&w, &pool_id, json!({"name": "Mine"})).await,
        StatusCode::OK
    );
    assert_eq!(
        add_keys(&w, &pool_id, &["MINE-A-1", "MINE-B-2"], false).await,
        StatusCode::CREATED
    );
    w.generate(ORG, &pool_id, 3).await;
    let r = w
        .call(
            Method::DELETE,
            &format!("/v1/pools/{pool_id}/keys/MINE-A-1"),
            Some(&w.admin(ORG)),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    assert_eq!(
        add_keys(&w, &other_pool, &["THEIRS-A-1"], false).await,
        StatusCode::CREATED
    );
    assert_eq!(
        patch_pool(&w, &other_pool, json!({"name": "Theirs"})).await,
        StatusCode::OK
    );

    let mine = audit(&w, &format!("pool_id={pool_id}")).await;
    let expected: BTreeMap<String, usize> = [
        ("pool.created", 1),
        ("pool.updated", 1),
        ("keys.pasted", 1),
        ("keys.generated", 1),
        ("key.removed", 1),
    ]
    .into_iter()
    .map(|(a, n)| (a.to_string(), n))
    .collect();
    assert_eq!(counts(&mine), expected);
    assert!(
        mine.iter().all(|r| r["pool_id"] == pool_id.as_str()),
        "{mine:?}"
    );
    // The key's record names the key as its resource and the pool as its pool.
    let removed = mine.iter().find(|r| r["action"] == "key.removed").unwrap();
    assert_eq!(removed["resource"]["type"], "key");
    // A record of no pool says so.
    let course = audit(&w, &format!("resource_id={course_id}")).await;
    assert_eq!(course.len(), 1);
    assert_eq!(course[0]["pool_id"], Value::Null);

    // Combined with the other filters, as they combine with each other.
    assert_eq!(
        audit(&w, &format!("pool_id={pool_id}&action=pool.updated"))
            .await
            .len(),
        1
    );
    assert_eq!(
        audit(
            &w,
            &format!("pool_id={other_pool}&action=pool.updated&actor=admin-of-acme")
        )
        .await
        .len(),
        1
    );
    assert_eq!(
        audit(&w, &format!("pool_id={pool_id}&actor=someone-else"))
            .await
            .len(),
        0
    );
    assert_eq!(
        audit(&w, &format!("pool_id={other_pool}&resource_id={pool_id}"))
            .await
            .len(),
        0
    );
    let until = format!("until={}", urlencode("2001-01-01T00:00:00Z"));
    assert!(
        audit(&w, &format!("pool_id={pool_id}&{until}"))
            .await
            .is_empty()
    );
    // Another organization's filter by our pool finds nothing.
    let r = w
        .call(
            GET,
            &format!("/v1/audit?pool_id={pool_id}"),
            Some(&w.admin("globex")),
            None,
        )
        .await;
    assert_eq!(r.body["items"], json!([]));

    // The CSV filters alike and names the pool in its own column.
    let (status, _, body) = w
        .get_streamed(
            &format!("/v1/audit.csv?pool_id={other_pool}"),
            Some(&w.admin(ORG)),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(body.unwrap()).unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let column = reader
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "pool_id")
        .unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|row| &row[column] == other_pool.as_str()));
}

/// The one record of `action` among the organization's, asserted single.
async fn only(w: &World, action: &str) -> Value {
    let records = audit(w, &format!("action={action}")).await;
    assert_eq!(records.len(), 1, "{action}: {records:?}");
    records.into_iter().next().unwrap()
}

/// A long job records its start with the request that starts it and its end, once, with the
/// write that ends it, in the name of whoever started it; however often it is run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_jobs_record_their_start_and_their_end_once() {
    use keypool::ops::key_jobs;
    let w = World::new().await;
    let (_, pool_id) = w.pool(ORG, 30).await;
    let acme = keypool::identity::OrgId::parse(ORG).unwrap();
    let job = w.queued_generation(ORG, &pool_id, 150).await;
    let started = only(&w, "keys.generation_started").await;
    assert_eq!(
        started["resource"],
        json!({"type": "job", "id": job.job_id.to_string()})
    );
    assert_eq!(started["pool_id"], pool_id.as_str());
    assert_eq!(started["summary"]["count"], 150);
    assert!(
        audit(&w, "action=keys.generation_finished")
            .await
            .is_empty()
    );
    for _ in 0..2 {
        key_jobs::run(w.dyn_store(), &w.clock, &acme, &job.job_id, None)
            .await
            .unwrap();
    }
    let finished = only(&w, "keys.generation_finished").await;
    assert_eq!(finished["actor"], started["actor"]);
    assert_eq!(finished["request_id"], started["request_id"]);
    assert_eq!(finished["pool_id"], pool_id.as_str());
    assert_eq!(
        finished["summary"],
        json!({"status": "done", "total": 150, "done": 150})
    );

    // An import: all or nothing, and partial.
    for (partial, prefix) in [(false, "IMPA"), (true, "IMPB")] {
        let keys: Vec<String> = (0..120).map(|i| format!("{prefix}{i:05}")).collect();
        let (job, _) = w.queued_import(ORG, &pool_id, &keys, partial).await;
        key_jobs::run(w.dyn_store(), &w.clock, &acme, &job.job_id, None)
            .await
            .unwrap();
    }
    let started = audit(&w, "action=keys.import_started").await;
    let finished = audit(&w, "action=keys.import_finished").await;
    assert_eq!((started.len(), finished.len()), (2, 2));
    for r in &finished {
        assert_eq!(r["summary"]["status"], "done", "{r}");
        assert_eq!(r["summary"]["done"], 120, "{r}");
        assert_eq!(r["pool_id"], pool_id.as_str());
    }
    // An import that fails (a key taken meanwhile) records its end as failed.
    let keys: Vec<String> = (0..50).map(|i| format!("IMPC{i:05}")).collect();
    let (job, _) = w.queued_import(ORG, &pool_id, &keys, false).await;
    assert_eq!(
        add_keys(&w, &pool_id, &[keys[7].as_str()], false).await,
        StatusCode::CREATED
    );
    key_jobs::run(w.dyn_store(), &w.clock, &acme, &job.job_id, None)
        .await
        .unwrap();
    let finished = audit(&w, "action=keys.import_finished").await;
    assert_eq!(finished.len(), 3);
    assert_eq!(finished[0]["summary"]["status"], "failed");
}

/// A person's export records its start and its end; handing its file's link to a person
/// records a download, never the link; a viewer, who gets no link, records nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_record_start_end_and_each_link_handed_out_but_never_the_link() {
    let w = World::new().await;
    let (_, pool_id) = w.pool(ORG, 30).await;
    w.generate(ORG, &pool_id, 3).await;
    let r = w
        .call(
            POST,
            &format!("/v1/pools/{pool_id}/exports"),
            Some(&w.admin(ORG)),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let export_id = r.body["export_id"].as_str().unwrap().to_string();
    w.finished_export(ORG, &export_id).await;
    let started = only(&w, "export.started").await;
    assert_eq!(
        started["resource"],
        json!({"type": "export", "id": export_id})
    );
    assert_eq!(started["pool_id"], pool_id.as_str());
    let finished = only(&w, "export.finished").await;
    assert_eq!(finished["summary"]["status"], "done");
    assert_eq!(finished["summary"]["rows"], 3);
    assert_eq!(finished["request_id"], started["request_id"]);

    let viewer = w
        .call(
            GET,
            &format!("/v1/exports/{export_id}"),
            Some(&w.staff(ORG, Role::Viewer)),
            None,
        )
        .await;
    assert_eq!(viewer.body["url"], Value::Null);
    assert!(audit(&w, "action=export.downloaded").await.is_empty());
    let read = w
        .call(
            GET,
            &format!("/v1/exports/{export_id}"),
            Some(&w.admin(ORG)),
            None,
        )
        .await;
    let url = read.body["url"].as_str().unwrap().to_string();
    let downloaded = only(&w, "export.downloaded").await;
    assert_eq!(downloaded["pool_id"], pool_id.as_str());
    let link = url.split_once('?').map(|(_, q)| q).unwrap_or(&url);
    let (_, _, csv) = w.get_streamed("/v1/audit.csv", Some(&w.admin(ORG))).await;
    let csv = String::from_utf8(csv.unwrap()).unwrap();
    for text in [downloaded.to_string(), csv] {
        assert!(!text.contains(link), "the link is recorded: {text}");
        assert!(!text.contains("link="), "{text}");
    }
    // In the pool's activity with its keys and the pool itself.
    let mine = counts(&audit(&w, &format!("pool_id={pool_id}")).await);
    for action in [
        "pool.created",
        "keys.generated",
        "export.started",
        "export.finished",
        "export.downloaded",
    ] {
        assert_eq!(mine.get(action), Some(&1), "{action}: {mine:?}");
    }
}

/// An admin's test event and redelivery are recorded with the write that queues them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_tests_and_retries_are_recorded() {
    let w = World::new().await;
    let receiver =
        keypool_tests::webhooks::Receiver::start(keypool_tests::webhooks::Answer::Ok).await;
    let r = w
        .call(
            POST,
            "/v1/webhooks",
            Some(&w.admin(ORG)),
            Some(json!({
                "url": format!("https://receiver.test:{}/hook", receiver.port),
                "events": ["assignment.created"],
            })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let webhook = r.body["webhook_id"].as_str().unwrap().to_string();
    let secret = r.body["secret"].as_str().unwrap().to_string();
    let r = w
        .call(
            POST,
            &format!("/v1/webhooks/{webhook}/test"),
            Some(&w.admin(ORG)),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let delivery = r.body["delivery_id"].as_str().unwrap().to_string();
    let r = w
        .call(
            POST,
            &format!("/v1/webhooks/{webhook}/deliveries/{delivery}/retry"),
            Some(&w.admin(ORG)),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let tested = only(&w, "webhook.tested").await;
    assert_eq!(
        tested["resource"],
        json!({"type": "webhook", "id": webhook})
    );
    assert_eq!(tested["summary"]["delivery_id"], delivery.as_str());
    let retried = only(&w, "webhook.delivery_retried").await;
    assert_eq!(retried["summary"]["delivery_id"], delivery.as_str());
    assert_eq!(retried["pool_id"], Value::Null);
    let all = audit(&w, "").await;
    assert!(!Value::Array(all).to_string().contains(&secret));
}

/// Fails the `nth` (from 0) TransactWriteItems call and no other: a transaction that
/// DynamoDB refuses part-way through a request's chunks, whose undo then goes through.
#[derive(Debug)]
struct FailOneTransaction {
    nth: usize,
    seen: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl aws_sdk_dynamodb::config::Intercept for FailOneTransaction {
    fn name(&self) -> &'static str {
        "FailOneTransaction"
    }

    fn read_before_execution(
        &self,
        context: &aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef<
            '_,
        >,
        _: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsInput;
        if context
            .input()
            .downcast_ref::<TransactWriteItemsInput>()
            .is_some()
            && self.seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == self.nth
        {
            return Err("the transaction was refused".into());
        }
        Ok(())
    }
}

/// The world's store over a client whose `nth` transaction fails.
fn failing_nth_transaction(w: &World, nth: usize) -> keypool::store::DynamoStore {
    let config = w
        .store
        .client()
        .config()
        .to_builder()
        .interceptor(FailOneTransaction {
            nth,
            seen: Default::default(),
        })
        .build();
    keypool::store::DynamoStore::new(
        aws_sdk_dynamodb::Client::from_conf(config),
        w.tables.clone(),
    )
}

/// A partial paste or a generation of more than one transaction's keys that fails after its
/// first transaction takes its keys back, and leaves no record: the record rides in the
/// transaction that decides the change lands (it was written with the first and stayed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_undone_after_its_first_chunk_leaves_no_record() {
    use keypool::ops::add_keys::{self, CheckedPaste};
    use keypool::ops::key_jobs::generate;
    let w = World::new().await;
    let (_, pool_id) = w.pool(ORG, 30).await;
    let acme = keypool::identity::OrgId::parse(ORG).unwrap();
    let caller = keypool_tests::admin_of(&acme);
    let before = audit(&w, "").await.len();
    let keys: Vec<String> = (0..250).map(|i| format!("UNDONE{i:05}")).collect();
    let paste = CheckedPaste::from_list(&keys);
    let settings = keypool::settings::Settings::default();

    // The second transaction fails: the first one's keys are taken back.
    let store = failing_nth_transaction(&w, 1);
    let cx = w.job_context_over(&store, &keypool_tests::Queued);
    let pasted = add_keys::add_custom_keys(&cx, &settings, &caller, &pool_id, &paste, true).await;
    assert!(pasted.is_err(), "{pasted:?}");
    let store = failing_nth_transaction(&w, 1);
    let generated = generate::generate_keys(&store, &caller, &pool_id, 250, w.now()).await;
    assert!(generated.is_err(), "{generated:?}");
    assert_eq!(w.total_keys(ORG, &pool_id).await, 0);
    assert!(w.listed_keys(ORG, &pool_id).await.is_empty());
    assert_eq!(
        audit(&w, "").await.len(),
        before,
        "a record without its change"
    );

    // The last transaction fails: nothing lands, nothing is recorded.
    let store = failing_nth_transaction(&w, 2);
    let cx = w.job_context_over(&store, &keypool_tests::Queued);
    let pasted = add_keys::add_custom_keys(&cx, &settings, &caller, &pool_id, &paste, true).await;
    assert!(pasted.is_err(), "{pasted:?}");
    assert_eq!(w.total_keys(ORG, &pool_id).await, 0);
    assert_eq!(
        audit(&w, "").await.len(),
        before,
        "a record without its change"
    );

    // Unhindered, the same changes land with one record each.
    let cx = w.job_context_over(w.dyn_store(), &keypool_tests::Queued);
    add_keys::add_custom_keys(&cx, &settings, &caller, &pool_id, &paste, true)
        .await
        .unwrap();
    generate::generate_keys(w.dyn_store(), &caller, &pool_id, 250, w.now())
        .await
        .unwrap();
    assert_eq!(w.total_keys(ORG, &pool_id).await, 500);
    let records = audit(&w, "").await;
    assert_eq!(records.len(), before + 2);
    assert_eq!(counts(&records[..2]).get("keys.pasted"), Some(&1));
    assert_eq!(records[0]["action"], "keys.generated");
    assert_eq!(records[0]["summary"]["count"], 250);
}

/// A tour of every route that changes something, through a router whose jobs wait to be run
/// by hand: each change's new records are exactly those it should write, and the same
/// request by a viewer or a finance user is refused and writes nothing.
struct Tour<'w> {
    w: &'w World,
    app: axum::Router,
    /// The routes of the document that change something, and whether the tour took each.
    routes: BTreeMap<(String, String), bool>,
}

impl<'w> Tour<'w> {
    fn new(w: &'w World) -> Self {
        let doc: Value = serde_json::from_str(&keypool::http::openapi::document_json()).unwrap();
        let mut routes = BTreeMap::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let roles: Vec<&str> = op["x-roles"]
                    .as_array()
                    .map(|r| r.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let mutating = ["post", "put", "patch", "delete"].contains(&method.as_str());
                // Routes for anyone carry no person's change (health, events from queues);
                // a learner's redemption is theirs, not the organization's people's.
                if mutating && !roles.is_empty() && roles != ["learner"] {
                    routes.insert((method.to_uppercase(), path.clone()), false);
                }
            }
        }
        assert!(routes.len() >= 15, "{routes:?}");
        let app = w.app_with_jobs(
            std::sync::Arc::new(keypool_tests::Queued),
            w.objects.clone(),
        );
        Self { w, app, routes }
    }

    /// `method route` (the document's path, filled in as `path`) as an admin, answering
    /// `status` and writing exactly the records of `actions`; as a viewer and a finance user,
    /// refused with nothing written.
    async fn take(
        &mut self,
        method: Method,
        route: &str,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
        status: StatusCode,
        actions: &[&str],
    ) -> Value {
        let w = self.w;
        let taken = self
            .routes
            .get_mut(&(method.to_string(), route.to_string()))
            .unwrap_or_else(|| panic!("{method} {route} is no changing route of the document"));
        *taken = true;
        let (content_type, bytes) = match &body {
            Some((t, b)) => (Some(*t), b.clone()),
            None => (None, Vec::new()),
        };
        for role in [Role::Viewer, Role::Finance] {
            let before = audit(w, "").await.len();
            let r = keypool_tests::send(
                &self.app,
                method.clone(),
                path,
                Some(&w.staff(ORG, role)),
                content_type,
                bytes.clone(),
            )
            .await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{role:?} {method} {path}");
            assert_eq!(audit(w, "").await.len(), before, "{role:?} {method} {path}");
        }
        let before = audit(w, "").await.len();
        let r = keypool_tests::send(
            &self.app,
            method.clone(),
            path,
            Some(&w.admin(ORG)),
            content_type,
            bytes,
        )
        .await;
        assert_eq!(r.status, status, "{method} {path}: {:?}", r.body);
        let records = audit(w, "").await;
        let new = &records[..records.len() - before];
        let mut want: Vec<&str> = actions.to_vec();
        let mut got: Vec<&str> = new.iter().map(|r| r["action"].as_str().unwrap()).collect();
        want.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, want, "{method} {path}");
        r.body
    }

    /// Every changing route of the document was taken.
    fn finish(self) {
        let missed: Vec<_> = self.routes.iter().filter(|(_, t)| !**t).collect();
        assert!(
            missed.is_empty(),
            "routes that change something but that the audit tour never took (a new route \
             needs its record and a stop here): {missed:?}"
        );
    }
}

fn json_body(value: Value) -> Option<(&'static str, Vec<u8>)> {
    Some(("application/json", value.to_string().into_bytes()))
}

fn text_body(lines: &[String]) -> Option<(&'static str, Vec<u8>)> {
    Some(("text/plain", lines.join("\n").into_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_changing_route_of_the_document_records_each_change_exactly_once() {
    use keypool::ops::key_jobs;
    let w = World::new().await;
    let mut tour = Tour::new(&w);
    let acme = keypool::identity::OrgId::parse(ORG).unwrap();
    let now = w.now();
    let course = tour
        .take(
            POST,
            "/v1/courses",
            "/v1/courses",
            json_body(json!({"title": "Rust 101"})),
            StatusCode::CREATED,
            &["course.created"],
        )
        .await;
    let course_id = course["course_id"].as_str().unwrap().to_string();
    let path = format!("/v1/courses/{course_id}");
    tour.take(
        Method::PATCH,
        "/v1/courses/{course_id}",
        &path,
        json_body(json!({"description": "borrowing"})),
        StatusCode::OK,
        &["course.updated"],
    )
    .await;
    let pool = tour
        .take(
            POST,
            "/v1/pools",
            "/v1/pools",
            json_body(json!({
                "name": "Spring",
                "course_id": course_id,
                "starts_at": keypool::time::format(&(now - chrono::Duration::hours(1))),
                "expires_at": keypool::time::format(&(now + chrono::Duration::days(30))),
                "content_availability_days": 30,
            })),
            StatusCode::CREATED,
            &["pool.created"],
        )
        .await;
    let pool_id = pool["pool_id"].as_str().unwrap().to_string();
    let route = "/v1/pools/{pool_id}";
    let path = format!("/v1/pools/{pool_id}");
    for (body, action) in [
        (json!({"name": "Autumn"}), "pool.updated"),
        (json!({"deactivated": true}), "pool.deactivated"),
        (json!({"deactivated": false}), "pool.reactivated"),
    ] {
        tour.take(
            Method::PATCH,
            route,
            &path,
            json_body(body),
            StatusCode::OK,
            &[action],
        )
        .await;
    }
    let route = "/v1/pools/{pool_id}/keys";
    let path = format!("/v1/pools/{pool_id}/keys");
    let partial = format!("{path}?partial=true");
    let one = vec!["TOUR-ONE-1".to_string()];
    let many: Vec<String> = (0..150).map(|i| format!("TOURP{i:05}")).collect();
    let some: Vec<String> = (0..150).map(|i| format!("TOURQ{i:05}")).collect();
    let long: Vec<String> = (0..10_001).map(|i| format!("TOURI{i:06}")).collect();
    for (path, lines, status, action) in [
        (&path, &one, StatusCode::CREATED, "key.added"),
        (&path, &many, StatusCode::CREATED, "keys.pasted"),
        (&partial, &some, StatusCode::CREATED, "keys.pasted"),
        (&path, &long, StatusCode::ACCEPTED, "keys.import_started"),
    ] {
        tour.take(POST, route, path, text_body(lines), status, &[action])
            .await;
    }
    let route = "/v1/pools/{pool_id}/keys/generate";
    let path = format!("/v1/pools/{pool_id}/keys/generate");
    let generated = tour
        .take(
            POST,
            route,
            &path,
            json_body(json!({"count": 120})),
            StatusCode::CREATED,
            &["keys.generated"],
        )
        .await;
    tour.take(
        POST,
        route,
        &path,
        json_body(json!({"count": 10_001})),
        StatusCode::ACCEPTED,
        &["keys.generation_started"],
    )
    .await;
    let key = generated["keys"][0].as_str().unwrap().to_string();
    tour.take(
        Method::DELETE,
        "/v1/pools/{pool_id}/keys/{key}",
        &format!("/v1/pools/{pool_id}/keys/{key}"),
        None,
        StatusCode::NO_CONTENT,
        &["key.removed"],
    )
    .await;
    let export = tour
        .take(
            POST,
            "/v1/pools/{pool_id}/exports",
            &format!("/v1/pools/{pool_id}/exports"),
            None,
            StatusCode::ACCEPTED,
            &["export.started"],
        )
        .await;
    // A learner's redemption is no change of the organization's people; its cancellation is.
    let redeemed = w
        .call(
            POST,
            "/v1/redemptions",
            Some(&w.learner("lea")),
            Some(json!({"key": generated["keys"][1]})),
        )
        .await;
    assert_eq!(redeemed.status, StatusCode::CREATED, "{:?}", redeemed.body);
    let assignment = redeemed.body["assignment_id"].as_str().unwrap().to_string();
    tour.take(
        POST,
        "/v1/assignments/{assignment_id}/cancel",
        &format!(
            "/v1/assignments/{assignment_id}/cancel",
            assignment_id = assignment
        ),
        None,
        StatusCode::OK,
        &["assignment.cancelled"],
    )
    .await;

    let receiver =
        keypool_tests::webhooks::Receiver::start(keypool_tests::webhooks::Answer::Ok).await;
    let url = format!("https://receiver.test:{}/hook", receiver.port);
    let webhook = tour
        .take(
            POST,
            "/v1/webhooks",
            "/v1/webhooks",
            json_body(json!({"url": url, "events": ["assignment.created"]})),
            StatusCode::CREATED,
            &["webhook.created"],
        )
        .await;
    let webhook_id = webhook["webhook_id"].as_str().unwrap().to_string();
    let one = format!("/v1/webhooks/{webhook_id}");
    tour.take(
        Method::PATCH,
        "/v1/webhooks/{webhook_id}",
        &one,
        json_body(json!({"description": "the lab"})),
        StatusCode::OK,
        &["webhook.updated"],
    )
    .await;
    tour.take(
        POST,
        "/v1/webhooks/{webhook_id}/secret",
        &format!("{one}/secret"),
        None,
        StatusCode::OK,
        &["webhook.secret_rotated"],
    )
    .await;
    let delivery = tour
        .take(
            POST,
            "/v1/webhooks/{webhook_id}/test",
            &format!("{one}/test"),
            None,
            StatusCode::ACCEPTED,
            &["webhook.tested"],
        )
        .await;
    let delivery_id = delivery["delivery_id"].as_str().unwrap().to_string();
    tour.take(
        POST,
        "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/retry",
        &format!("{one}/deliveries/{delivery_id}/retry"),
        None,
        StatusCode::ACCEPTED,
        &["webhook.delivery_retried"],
    )
    .await;
    tour.take(
        Method::DELETE,
        "/v1/webhooks/{webhook_id}",
        &one,
        None,
        StatusCode::NO_CONTENT,
        &["webhook.deleted"],
    )
    .await;
    tour.finish();

    // The long work the tour started ends with one record each, however often it is run.
    let export_id =
        keypool::domain::ExportId::parse(export["export_id"].as_str().unwrap()).unwrap();
    for _ in 0..2 {
        keypool::ops::export::run(
            w.dyn_store(),
            w.objects.as_ref(),
            &w.clock,
            &acme,
            &export_id,
        )
        .await
        .unwrap();
    }
    assert_eq!(audit(&w, "action=export.finished").await.len(), 1);
    if w.skip_volume_on_moto() {
        return;
    }
    for job in w.dyn_store().open_jobs().await.unwrap() {
        if let keypool::domain::Job::Generate { job_id, .. } = job {
            for _ in 0..2 {
                key_jobs::run(w.dyn_store(), &w.clock, &acme, &job_id, None)
                    .await
                    .unwrap();
            }
        }
    }
    let ended = counts(&audit(&w, "").await);
    assert_eq!(ended.get("keys.import_finished"), Some(&1), "{ended:?}");
    assert_eq!(ended.get("keys.generation_finished"), Some(&1), "{ended:?}");
}
