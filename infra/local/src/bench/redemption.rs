//! Redemption latency and throughput at several concurrencies, next to the bare transaction.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use aws_sdk_dynamodb::Client;
use keypool::domain::{Assignment, AssignmentId, CounterId, PoolId};
use keypool::identity::{OrgId, Role, TokenAuthority, UserId};
use keypool::keys::KeyCode;
use keypool::store::{DynamoStore, Pools};
use serde_json::json;
use tokio::sync::Mutex;

use super::Args;
use super::api::{make_pool, post};
use super::measure::{Stats, ms, stats};

/// Redemption through the HTTP server vs the bare transaction, at 1, 8 and 32.
pub(super) async fn redemption_figures(
    args: &Args,
    client: &Client,
    store: &DynamoStore,
    http: &reqwest::Client,
    base: &str,
    admin: &str,
    authority: &TokenAuthority,
) -> anyhow::Result<()> {
    for concurrency in [1usize, 8, 32] {
        let n = args.redemptions;
        let pool_id = make_pool(http, base, admin).await?;
        let keys = generate(http, base, admin, &pool_id, n).await?;
        let tokens: Vec<String> = (0..n)
            .map(|i| {
                authority.mint(
                    &UserId::parse(&format!("learner-{concurrency}-{i}"))
                        .map_err(anyhow::Error::msg)?,
                    None,
                    Role::Learner,
                    chrono::Duration::hours(4),
                )
            })
            .collect::<anyhow::Result<_>>()?;
        let work = Arc::new(Mutex::new(keys.into_iter().zip(tokens).collect::<Vec<_>>()));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let work = work.clone();
            let http = http.clone();
            let base = base.to_string();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let Some((key, token)) = work.lock().await.pop() else {
                        break;
                    };
                    let t = Instant::now();
                    let r = http
                        .post(format!("{base}/v1/redemptions"))
                        .bearer_auth(&token)
                        .json(&json!({ "key": key }))
                        .send()
                        .await?;
                    anyhow::ensure!(r.status() == 201, "redemption answered {}", r.status());
                    latencies.push(t.elapsed());
                }
                anyhow::Ok(latencies)
            }));
        }
        let mut latencies = Vec::new();
        for t in tasks {
            latencies.extend(t.await??);
        }
        let ours = stats(latencies, started.elapsed());
        let bare = bare_redemptions(client, store, http, base, admin, n, concurrency, "").await?;
        out!(
            "| redemption p50 / p99 at {concurrency} learners | {} / {} | {} / {} | {:.2} / {:.2} |",
            ms(ours.p50),
            ms(ours.p99),
            ms(bare.p50),
            ms(bare.p99),
            ours.p50.as_secs_f64() / bare.p50.as_secs_f64(),
            ours.p99.as_secs_f64() / bare.p99.as_secs_f64()
        );
        out!(
            "| redemptions per second at {concurrency} learners | {:.0}/s | {:.0}/s | {:.2} |",
            ours.per_sec,
            bare.per_sec,
            ours.per_sec / bare.per_sec
        );
    }
    Ok(())
}

/// The bare store operation a redemption is built on: the very TransactWriteItems request
/// that our store sends on the happy path (`DynamoStore::redemption_items`, built before the
/// clock starts), sent with the SDK, for keys of a pool of its own that were added through the
/// API like ours; no reads, no HTTP API, no domain logic.
#[allow(clippy::too_many_arguments)]
pub(super) async fn bare_redemptions(
    client: &Client,
    store: &DynamoStore,
    http: &reqwest::Client,
    base: &str,
    admin: &str,
    n: usize,
    concurrency: usize,
    tag: &str,
) -> anyhow::Result<Stats> {
    let pool_id = make_pool(http, base, admin).await?;
    let keys = generate(http, base, admin, &pool_id, n).await?;
    let org = OrgId::parse("bench").map_err(anyhow::Error::msg)?;
    let pool_id = PoolId::parse(&pool_id).context("pool id")?;
    let pool = store
        .get_pool_settings(&org, &pool_id)
        .await?
        .context("the bench pool")?;
    let address = CounterId::address(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let limits = keypool::settings::Settings::default();
    let mut requests = Vec::with_capacity(n);
    for (i, key) in keys.iter().enumerate() {
        let now = chrono::Utc::now();
        let learner =
            UserId::parse(&format!("bare-{tag}{concurrency}-{i}")).map_err(anyhow::Error::msg)?;
        let assignment = Assignment {
            assignment_id: AssignmentId::new(),
            learner: learner.clone(),
            org: org.clone(),
            pool_id,
            course_id: pool.course_id,
            course_title: pool.course_title.clone(),
            key: KeyCode::parse(key).map_err(anyhow::Error::msg)?,
            redeemed_at: now,
            expires_at: pool.assignment_expiry(now),
            launch_count: 0,
            last_launched_at: None,
            cancelled_at: None,
        };
        // The checks of a learner and an address with no failures lately, as the shortcut
        // makes them.
        let checks = [
            (
                CounterId::Learner(learner),
                limits.learner_failures.quiet(now),
            ),
            (address.clone(), limits.address_failures.quiet(now)),
        ];
        requests.push(store.redemption_items(&assignment, &pool, now, &checks)?);
    }
    let work = Arc::new(Mutex::new(requests));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let work = work.clone();
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let Some(items) = work.lock().await.pop() else {
                    break;
                };
                let t = Instant::now();
                client
                    .transact_write_items()
                    .set_transact_items(Some(items))
                    .send()
                    .await?;
                latencies.push(t.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    Ok(stats(latencies, started.elapsed()))
}

/// Generates `n` keys into a pool through the API, and answers them.
pub(super) async fn generate(
    http: &reqwest::Client,
    base: &str,
    admin: &str,
    pool_id: &str,
    n: usize,
) -> anyhow::Result<Vec<String>> {
    let mut keys = Vec::with_capacity(n);
    while keys.len() < n {
        let count = (n - keys.len()).min(10_000);
        let reply = post(
            http,
            base,
            admin,
            &format!("/v1/pools/{pool_id}/keys/generate"),
            json!({ "count": count }),
            201,
        )
        .await?;
        keys.extend(
            reply["keys"]
                .as_array()
                .context("keys in the reply")?
                .iter()
                .filter_map(|k| k.as_str().map(str::to_string)),
        );
    }
    Ok(keys)
}
