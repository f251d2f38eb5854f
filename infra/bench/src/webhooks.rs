//! Webhook figures, in one process as `keypool-local serve` runs them: the API, the stream
//! follower that fans assignments out, and the local sender, over a fresh embedded engine,
//! sending to a receiver on this machine.
//!
//! - from a redemption (its request sent) to its `assignment.created` received, p50 and p99;
//! - the same with a dead endpoint (it never answers) subscribed beside the live one;
//! - deliveries per second to one endpoint, from events fanned out to received, against a bare
//!   HTTP client posting the same bodies to the same receiver with the same concurrency
//!   (`SENDS_PER_ENDPOINT`), for a receiver that answers at once and one that takes 20 ms.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::extract::State;
use axum::routing::post as route_post;
use keypool::domain::{Event, EventId, EventType};
use keypool::http::WebhookParts;
use keypool::identity::{OrgId, Role, TokenAuthority, UserId};
use keypool::local::engine::EmbeddedEngine;
use keypool::local::follower::{DEFAULT_POLL, StreamFollower};
use keypool::local::webhooks::Settings;
use keypool::schema::{self, Tables};
use keypool::store::{DynamoStore, Store};
use keypool::time::SystemClock;
use keypool::webhooks::SENDS_PER_ENDPOINT as PER_ENDPOINT;
use serde_json::json;
use tokio::sync::{Mutex, Notify};

use super::api::{make_pool, post};
use super::measure::{ms, stats};
use super::redemption::generate;
use super::served::{ApiServer, admin_of, local_state};

/// What the receiver heard: each event's id or assignment, when it arrived.
#[derive(Clone, Default)]
struct Heard {
    at: Arc<Mutex<HashMap<String, Instant>>>,
    count: Arc<std::sync::atomic::AtomicUsize>,
    notify: Arc<Notify>,
}

impl Heard {
    async fn wait_for(&self, n: usize, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let waiting = self.notify.notified();
            if self.count.load(std::sync::atomic::Ordering::SeqCst) >= n {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            anyhow::ensure!(
                !left.is_zero(),
                "the receiver heard fewer than {n} requests"
            );
            let _ = tokio::time::timeout(left, waiting).await;
        }
    }
}

async fn hear(State((heard, delay)): State<(Heard, Duration)>, body: axum::body::Bytes) {
    let now = Instant::now();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let event: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let id = event["data"]["assignment_id"]
        .as_str()
        .or_else(|| event["id"].as_str())
        .unwrap_or_default()
        .to_string();
    heard.at.lock().await.entry(id).or_insert(now);
    heard
        .count
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    heard.notify.notify_waiters();
}

/// A receiver on 127.0.0.1: `/live` answers 200 at once, `/slow` after 20 ms, `/dead` never.
async fn receiver(heard: Heard) -> anyhow::Result<(u16, tokio::task::JoinHandle<()>)> {
    let router = axum::Router::new()
        .route(
            "/live",
            route_post(hear).with_state((heard.clone(), Duration::ZERO)),
        )
        .route(
            "/slow",
            route_post(hear).with_state((heard, Duration::from_millis(20))),
        )
        .route("/dead", route_post(std::future::pending::<()>));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok((port, task))
}

/// Redemptions, one every 25 ms, each timed from its request to its event heard.
async fn redemption_to_webhook(
    http: &reqwest::Client,
    base: &str,
    admin: &str,
    authority: &TokenAuthority,
    heard: &Heard,
    n: usize,
) -> anyhow::Result<super::measure::Stats> {
    let pool_id = make_pool(http, base, admin).await?;
    let keys = generate(http, base, admin, &pool_id, n).await?;
    let already = heard.count.load(std::sync::atomic::Ordering::SeqCst);
    let mut sent = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let token = authority.mint(
            &UserId::parse(&format!("hooked-{}-{i}", already)).map_err(anyhow::Error::msg)?,
            None,
            Role::Learner,
            chrono::Duration::hours(1),
        )?;
        let at = Instant::now();
        let reply = post(
            http,
            base,
            &token,
            "/v1/redemptions",
            json!({ "key": key }),
            201,
        )
        .await?;
        let id = reply["assignment_id"].as_str().context("assignment id")?;
        sent.push((id.to_string(), at));
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    heard
        .wait_for(already + keys.len(), Duration::from_secs(60))
        .await?;
    let at = heard.at.lock().await;
    let delays: Vec<Duration> = sent
        .iter()
        .filter_map(|(id, sent)| at.get(id).map(|got| got.saturating_duration_since(*sent)))
        .collect();
    anyhow::ensure!(delays.len() == keys.len(), "some events were never heard");
    Ok(stats(delays, Duration::from_secs(1)))
}

async fn endpoint(
    http: &reqwest::Client,
    base: &str,
    admin: &str,
    url: String,
    events: &[&str],
) -> anyhow::Result<()> {
    post(
        http,
        base,
        admin,
        "/v1/webhooks",
        json!({ "url": url, "events": events }),
        201,
    )
    .await
    .map(|_| ())
}

/// `count` events fanned out to the one endpoint of `org` and sent; deliveries per second.
async fn ours_per_second(
    store: &DynamoStore,
    parts: &WebhookParts,
    heard: &Heard,
    org: &OrgId,
    count: usize,
) -> anyhow::Result<f64> {
    let events: Vec<Event> = (0..count)
        .map(|i| Event {
            id: EventId::new(),
            kind: EventType::JobFinished,
            created_at: chrono::Utc::now(),
            organization: org.clone(),
            data: json!({ "n": i, "padding": "x".repeat(400) }),
        })
        .collect();
    let already = heard.count.load(std::sync::atomic::Ordering::SeqCst);
    let started = Instant::now();
    keypool::ops::webhooks::emit(store, parts.deliveries.as_ref(), &events).await?;
    heard
        .wait_for(already + count, Duration::from_secs(300))
        .await?;
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

/// The same number of bodies of the same size, posted by a bare client, `PER_ENDPOINT` at once.
async fn bare_per_second(url: &str, heard: &Heard, count: usize) -> anyhow::Result<f64> {
    let client = reqwest::Client::new();
    let body = json!({ "id": "x", "data": { "padding": "x".repeat(400) } }).to_string();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let already = heard.count.load(std::sync::atomic::Ordering::SeqCst);
    let started = Instant::now();
    let mut lanes = Vec::new();
    for _ in 0..PER_ENDPOINT {
        let (client, body, next, url) =
            (client.clone(), body.clone(), next.clone(), url.to_string());
        lanes.push(tokio::spawn(async move {
            while next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < count {
                client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await?
                    .error_for_status()?;
            }
            anyhow::Ok(())
        }));
    }
    for lane in lanes {
        lane.await??;
    }
    heard
        .wait_for(already + count, Duration::from_secs(60))
        .await?;
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

pub(super) async fn webhook_figures(redemptions: usize, deliveries: usize) -> anyhow::Result<()> {
    let engine = EmbeddedEngine::memory()?;
    let client = keypool::local::dynamo_client(engine.endpoint());
    let tables = Tables::default();
    schema::ensure_tables(&client, &tables).await?;
    let store = Arc::new(DynamoStore::new(client.clone(), tables.clone()));
    let heard = Heard::default();
    let (port, receiving) = receiver(heard.clone()).await?;

    // As `serve --allow-private-webhooks` has it: the receiver is on this machine.
    let sender = keypool::webhooks::Sender::new(
        Arc::new(keypool::webhooks::SystemResolver),
        keypool::webhooks::Reach {
            allow_private: true,
        },
    )?;
    let (queue, sending) = keypool::local::webhooks::start(
        store.clone(),
        sender.clone(),
        Arc::new(SystemClock),
        Settings {
            first_retry: chrono::Duration::seconds(30),
            tick: keypool::local::webhooks::DEFAULT_TICK,
        },
    );
    let parts = WebhookParts {
        sender: Arc::new(sender),
        deliveries: Arc::new(queue),
    };
    let authority = TokenAuthority::new(&[42u8; 32]);
    let mut state = local_state(store.clone(), &authority)?;
    state.webhooks = parts.clone();
    let server = ApiServer::start(state).await?;
    let base = server.base.clone();
    let follower = StreamFollower::new(
        client.clone(),
        keypool::local::streams_client(engine.endpoint()),
        store.clone() as Arc<dyn Store>,
        tables.assignments.clone(),
    )
    .with_webhooks(parts.deliveries.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let following = tokio::spawn(follower.run(DEFAULT_POLL, async move {
        let _ = stopped.await;
    }));

    let http = reqwest::Client::new();
    let admin = admin_of(&authority, "bench-hooks")?;
    let live = format!("http://127.0.0.1:{port}/live");
    endpoint(&http, &base, &admin, live.clone(), &["assignment.created"]).await?;
    let alone =
        redemption_to_webhook(&http, &base, &admin, &authority, &heard, redemptions).await?;
    endpoint(
        &http,
        &base,
        &admin,
        format!("http://127.0.0.1:{port}/dead"),
        &["assignment.created"],
    )
    .await?;
    let beside =
        redemption_to_webhook(&http, &base, &admin, &authority, &heard, redemptions).await?;
    out!(
        "| redemption to its webhook received, local server (stream polled every {} ms) p50 / p99 | {} / {} | — (goal: within seconds) | — |",
        DEFAULT_POLL.as_millis(),
        ms(alone.p50),
        ms(alone.p99)
    );
    out!(
        "| the same, beside a dead endpoint of the same organization (never answers) p50 / p99 | {} / {} | {} / {} alone (goal: p99 within 10%) | {:.2} / {:.2} |",
        ms(beside.p50),
        ms(beside.p99),
        ms(alone.p50),
        ms(alone.p99),
        beside.p50.as_secs_f64() / alone.p50.as_secs_f64(),
        beside.p99.as_secs_f64() / alone.p99.as_secs_f64()
    );

    // Throughput to one endpoint: an organization of its own, subscribed to job.finished.
    for (path, what) in [("live", "answers at once"), ("slow", "answers in 20 ms")] {
        let org = OrgId::parse(&format!("bench-{path}")).map_err(anyhow::Error::msg)?;
        let admin = admin_of(&authority, org.as_str())?;
        let url = format!("http://127.0.0.1:{port}/{path}");
        endpoint(&http, &base, &admin, url.clone(), &["job.finished"]).await?;
        let ours = ours_per_second(&store, &parts, &heard, &org, deliveries).await?;
        let bare = bare_per_second(&url, &heard, deliveries).await?;
        out!(
            "| deliveries per second to one endpoint that {what} ({deliveries} events fanned out, stored, signed, sent, recorded; {PER_ENDPOINT} at once) | {ours:.0}/s | {bare:.0}/s (bare HTTP client, {PER_ENDPOINT} at once, same bodies; goal ≥ 0.8) | {:.2} |",
            ours / bare
        );
    }

    let _ = stop.send(());
    let _ = following.await;
    sending.abort();
    receiving.abort();
    drop(server);
    Ok(())
}
