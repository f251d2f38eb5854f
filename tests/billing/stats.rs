//! Activity stats from the assignments stream: redemptions, launches and cancellations made
//! through the API, counted by the stats consumer as the local follower runs it, shown by
//! `GET /v1/pools/{pool_id}/stats` and `GET /v1/stats/redemptions` on their UTC days and
//! months, each once however often the stream delivers it.

use aws_lambda_events::event::dynamodb::EventRecord;
use aws_sdk_dynamodbstreams::types::ShardIteratorType;
use axum::http::{Method, StatusCode};
use chrono::NaiveDate;
use keypool::domain::Month;
use keypool::identity::Role;
use keypool_tests::{Reply, World};
use serde_json::Value;

use super::fixtures::*;

/// Every record now on the world's assignments stream, read straight from it (as the
/// follower reads it), oldest first per shard.
async fn stream_records(w: &World) -> Vec<EventRecord> {
    let table = w
        .store
        .client()
        .describe_table()
        .table_name(&w.tables.assignments)
        .send()
        .await
        .unwrap();
    let arn = table
        .table()
        .unwrap()
        .latest_stream_arn()
        .unwrap()
        .to_string();
    let streams = keypool::local::streams_client(w.endpoint());
    let description = streams
        .describe_stream()
        .stream_arn(&arn)
        .send()
        .await
        .unwrap()
        .stream_description
        .unwrap();
    let mut records = Vec::new();
    for shard in description.shards() {
        let mut iterator = streams
            .get_shard_iterator()
            .stream_arn(&arn)
            .shard_id(shard.shard_id().unwrap())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator;
        let mut empty = 0;
        while let Some(current) = iterator.take() {
            let out = streams
                .get_records()
                .shard_iterator(current)
                .send()
                .await
                .unwrap();
            let page = out.records.unwrap_or_default();
            if page.is_empty() {
                empty += 1;
                if empty >= 3 {
                    break;
                }
            }
            records.extend(page.into_iter().map(keypool::local::follower::event_record));
            iterator = out.next_shard_iterator;
        }
    }
    records
}

async fn get(w: &World, token: &str, path: &str) -> Reply {
    w.call(Method::GET, path, Some(token), None).await
}

async fn pool_stats(w: &World, org: &str, pool_id: &str) -> Reply {
    get(w, &w.admin(org), &format!("/v1/pools/{pool_id}/stats")).await
}

fn day(ts: keypool::time::Timestamp) -> String {
    ts.date_naive().to_string()
}

/// The entry of `date` among a picture's days.
fn on<'a>(body: &'a Value, date: &str) -> &'a Value {
    body["days"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["date"] == date)
        .unwrap_or_else(|| panic!("no day {date} in {body}"))
}

/// (redeemed, launched, cancelled) of every day, oldest first.
fn counts(body: &Value) -> Vec<(String, u64, u64, u64)> {
    body["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["date"].as_str().unwrap().to_string(),
                d["redeemed"].as_u64().unwrap(),
                d["launched"].as_u64().unwrap(),
                d["cancelled"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redemptions_and_launches_show_on_their_days_once_however_often_the_stream_delivers_them() {
    let w = World::new().await;
    let (_, pool_id) = w.pool("acme", 30).await;
    let opened = w.now() - chrono::Duration::hours(1);
    let keys = w.generate("acme", &pool_id, 4).await;

    // Day one: two redemptions.
    let first_day = w.now();
    let mut assignments = Vec::new();
    for (i, learner) in ["ann", "bob"].iter().enumerate() {
        let reply = redeem(&w, learner, &keys[i]).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
        assignments.push(reply.body["assignment_id"].as_str().unwrap().to_string());
    }
    // A day later: ann launches twice.
    w.clock.advance(chrono::Duration::days(1));
    let second_day = w.now();
    for _ in 0..2 {
        assert_eq!(
            launch(&w, "ann", &assignments[0]).await.status,
            StatusCode::OK
        );
    }
    // Two days after that: cid redeems and launches; ann launches once more.
    w.clock.advance(chrono::Duration::days(2));
    let fourth_day = w.now();
    let reply = redeem(&w, "cid", &keys[2]).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    let cid = reply.body["assignment_id"].as_str().unwrap().to_string();
    assert_eq!(launch(&w, "cid", &cid).await.status, StatusCode::OK);
    assert_eq!(
        launch(&w, "ann", &assignments[0]).await.status,
        StatusCode::OK
    );

    // Before the stream is followed, the funnel's launches are not counted yet.
    let before = pool_stats(&w, "acme", &pool_id).await;
    assert_eq!(before.status, StatusCode::OK, "{:?}", before.body);
    assert_eq!(before.body["funnel"]["launched"], 0);

    w.follower().drain().await.unwrap();
    let after = pool_stats(&w, "acme", &pool_id).await;
    assert_eq!(after.status, StatusCode::OK, "{:?}", after.body);
    let body = &after.body;
    assert_eq!(body["pool_id"], pool_id.as_str());
    assert_eq!(
        body["funnel"],
        serde_json::json!({"keys": 4, "handed_out": null, "redeemed": 3, "launched": 2})
    );
    let on_first = on(body, &day(first_day));
    assert_eq!(
        (on_first["redeemed"].as_u64(), on_first["launched"].as_u64()),
        (Some(2), Some(0))
    );
    let on_second = on(body, &day(second_day));
    assert_eq!(
        (
            on_second["redeemed"].as_u64(),
            on_second["launched"].as_u64()
        ),
        (Some(0), Some(2))
    );
    let on_fourth = on(body, &day(fourth_day));
    assert_eq!(
        (
            on_fourth["redeemed"].as_u64(),
            on_fourth["launched"].as_u64()
        ),
        (Some(1), Some(2))
    );
    // Every day from the opening to today, each once, zero-filled between.
    let days = counts(body);
    let first = NaiveDate::parse_from_str(&days[0].0, "%Y-%m-%d").unwrap();
    assert_eq!(first, opened.date_naive());
    assert_eq!(days.last().unwrap().0, day(w.now()));
    for (i, d) in days.iter().enumerate() {
        assert_eq!(d.0, (first + chrono::Duration::days(i as i64)).to_string());
    }
    let total = |f: fn(&(String, u64, u64, u64)) -> u64| days.iter().map(f).sum::<u64>();
    assert_eq!((total(|d| d.1), total(|d| d.2), total(|d| d.3)), (3, 4, 0));

    // The same records again: the whole stream as one batch, twice, then cut in pieces and
    // each piece doubled within its batch. Nothing counts twice.
    let records = stream_records(&w).await;
    assert!(records.len() >= 7, "{} records", records.len());
    for _ in 0..2 {
        let response = keypool::events::stats::count(w.dyn_store(), &event_of(records.clone()))
            .await
            .unwrap();
        assert!(response.batch_item_failures.is_empty());
    }
    for piece in records.chunks(3) {
        let doubled: Vec<EventRecord> = piece.iter().chain(piece).cloned().collect();
        keypool::events::stats::count(w.dyn_store(), &event_of(doubled))
            .await
            .unwrap();
    }
    let replayed = pool_stats(&w, "acme", &pool_id).await;
    assert_eq!(replayed.body, after.body, "a replay changes nothing");

    // The organization's months: this one holds the three redemptions.
    let months = get(&w, &w.staff("acme", Role::Finance), "/v1/stats/redemptions").await;
    assert_eq!(months.status, StatusCode::OK, "{:?}", months.body);
    let redeemed: u64 = months.body["months"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["redeemed"].as_u64().unwrap())
        .sum();
    assert_eq!(redeemed, 3);
    let this_month = months.body["months"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(this_month["month"], Month::of(w.now()).to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancellation_counts_on_its_day_and_the_funnel_uncounts_it() {
    let w = World::new().await;
    let (pool_id, _, body) = redeemed(&w, "acme", "ann").await;
    let assignment_id = body["assignment_id"].as_str().unwrap().to_string();
    let reply = cancel(&w, "acme", &assignment_id).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    w.follower().drain().await.unwrap();
    let stats = pool_stats(&w, "acme", &pool_id).await;
    assert_eq!(stats.body["funnel"]["redeemed"], 0);
    let today = on(&stats.body, &day(w.now()));
    assert_eq!(
        (today["redeemed"].as_u64(), today["cancelled"].as_u64()),
        (Some(1), Some(1))
    );
    let months = get(&w, &w.admin("acme"), "/v1/stats/redemptions?months=1").await;
    assert_eq!(
        months.body["months"],
        serde_json::json!([{"month": Month::of(w.now()).to_string(), "redeemed": 1, "cancelled": 1}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn days_and_months_are_zero_filled() {
    let w = World::new().await;
    let (_, pool_id) = w.pool("acme", 30).await;
    w.clock.advance(chrono::Duration::days(9));
    let stats = pool_stats(&w, "acme", &pool_id).await;
    assert_eq!(stats.status, StatusCode::OK, "{:?}", stats.body);
    let days = counts(&stats.body);
    // Opened an hour before the world's start: ten or eleven UTC days to today.
    assert!((10..=11).contains(&days.len()), "{days:?}");
    assert!(days.iter().all(|d| (d.1, d.2, d.3) == (0, 0, 0)));
    assert_eq!(
        stats.body["funnel"],
        serde_json::json!({"keys": 0, "handed_out": null, "redeemed": 0, "launched": 0})
    );

    let months = get(&w, &w.admin("acme"), "/v1/stats/redemptions").await;
    let months = months.body["months"].as_array().unwrap().clone();
    assert_eq!(months.len(), 12);
    let mut expected = Month::of(w.now());
    for m in months.iter().rev() {
        assert_eq!(m["month"], expected.to_string());
        assert_eq!(
            (m["redeemed"].as_u64(), m["cancelled"].as_u64()),
            (Some(0), Some(0))
        );
        expected = expected.previous();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_are_for_the_organizations_readers_and_a_bad_pool_is_not_found() {
    let w = World::new().await;
    let (_, pool_id) = w.pool("acme", 30).await;
    let path = format!("/v1/pools/{pool_id}/stats");
    for (token, status) in [
        (w.staff("acme", Role::Admin), StatusCode::OK),
        (w.staff("acme", Role::Viewer), StatusCode::OK),
        (w.staff("acme", Role::Finance), StatusCode::FORBIDDEN),
        (w.learner("ann"), StatusCode::FORBIDDEN),
    ] {
        let reply = get(&w, &token, &path).await;
        assert_eq!(reply.status, status, "{:?}", reply.body);
        if status == StatusCode::FORBIDDEN {
            assert_eq!(reply.code(), "forbidden_role");
        }
    }
    for missing in [
        "/v1/pools/not-a-pool/stats".to_string(),
        format!("/v1/pools/{}/stats", keypool::domain::PoolId::new()),
    ] {
        let reply = get(&w, &w.admin("acme"), &missing).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{missing}");
        assert_eq!(reply.code(), "pool_not_found");
    }
    // Another organization's pool is not found either.
    let reply = get(&w, &w.admin("globex"), &path).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.code(), "pool_not_found");

    for (token, status) in [
        (w.staff("acme", Role::Finance), StatusCode::OK),
        (w.staff("acme", Role::Admin), StatusCode::OK),
        (w.learner("ann"), StatusCode::FORBIDDEN),
    ] {
        let reply = get(&w, &token, "/v1/stats/redemptions?months=3").await;
        assert_eq!(reply.status, status, "{:?}", reply.body);
    }
    for bad in ["0", "37", "twelve"] {
        let reply = get(
            &w,
            &w.admin("acme"),
            &format!("/v1/stats/redemptions?months={bad}"),
        )
        .await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{bad}: {:?}",
            reply.body
        );
        assert_eq!(reply.code(), "invalid_input");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_not_open_yet_has_no_days() {
    let w = World::new().await;
    let (_, pool_id) = w.pool("acme", 30).await;
    w.clock.advance(chrono::Duration::days(-3));
    let stats = pool_stats(&w, "acme", &pool_id).await;
    assert_eq!(stats.status, StatusCode::OK, "{:?}", stats.body);
    assert_eq!(stats.body["days"], serde_json::json!([]));
}
