//! Redemption latency and throughput at several concurrencies, next to the bare transaction.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::TransactWriteItem;
use keypool::domain::{Assignment, CounterId, PoolId};
use keypool::identity::{OrgId, Role, TokenAuthority, UserId};
use keypool::keys::KeyCode;
use keypool::store::{DynamoStore, Pools};
use serde_json::json;
use tokio::sync::Mutex;

use super::Args;
use super::api::{make_pool, post};
use super::measure::{Stats, ms, stats};

/// Redemption through the HTTP server vs the bare transaction, at 1, 8 and 32.
///
/// The engine slows as it fills, and a shared machine's speed wanders, so the two sides take
/// turns: request by request at 1 learner, and in halves in the order ours, bare, bare, ours
/// at 8 and 32; a drift weighs on both alike.
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
        let mut ours = Timed::default();
        let mut bare = Timed::default();
        let mut our_work =
            our_redemptions(http, base, admin, authority, n, &format!("{concurrency}")).await?;
        let mut bare_work =
            bare_requests(store, http, base, admin, n, &format!("{concurrency}")).await?;
        if concurrency == 1 {
            // One at a time: ours and bare take turns, request by request.
            while let (Some(our), Some(items)) = (our_work.pop(), bare_work.pop()) {
                ours.add(run_ours(http, base, vec![our], 1).await?);
                bare.add(run_bare(client, vec![items], 1).await?);
            }
        } else {
            let our_second = our_work.split_off(n / 2);
            let bare_second = bare_work.split_off(n / 2);
            ours.add(run_ours(http, base, our_work, concurrency).await?);
            bare.add(run_bare(client, bare_work, concurrency).await?);
            bare.add(run_bare(client, bare_second, concurrency).await?);
            ours.add(run_ours(http, base, our_second, concurrency).await?);
        }
        let (ours, bare) = (ours.stats(), bare.stats());
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

/// Latencies of several runs, and their wall time together.
#[derive(Default)]
pub(super) struct Timed {
    latencies: Vec<Duration>,
    wall: Duration,
}

impl Timed {
    pub(super) fn add(&mut self, (latencies, wall): (Vec<Duration>, Duration)) {
        self.latencies.extend(latencies);
        self.wall += wall;
    }

    pub(super) fn stats(self) -> Stats {
        stats(self.latencies, self.wall)
    }
}

/// `n` keys of a new pool, each with a new learner's token.
pub(super) async fn our_redemptions(
    http: &reqwest::Client,
    base: &str,
    admin: &str,
    authority: &TokenAuthority,
    n: usize,
    tag: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let pool_id = make_pool(http, base, admin).await?;
    let keys = generate(http, base, admin, &pool_id, n).await?;
    let tokens: Vec<String> = (0..n)
        .map(|i| {
            authority.mint(
                &UserId::parse(&format!("learner-{tag}-{i}")).map_err(anyhow::Error::msg)?,
                None,
                Role::Learner,
                chrono::Duration::hours(4),
            )
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(keys.into_iter().zip(tokens).collect())
}

/// Redeems each key with its learner's token through the API, `concurrency` at a time.
pub(super) async fn run_ours(
    http: &reqwest::Client,
    base: &str,
    work: Vec<(String, String)>,
    concurrency: usize,
) -> anyhow::Result<(Vec<Duration>, Duration)> {
    let work = Arc::new(Mutex::new(work));
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
                r.bytes().await?;
                latencies.push(t.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    Ok((latencies, started.elapsed()))
}

/// The bare store operation a redemption is built on: the very TransactWriteItems request
/// that our store sends on the happy path (`DynamoStore::redemption_items`, built here, before
/// any clock starts), for `n` keys of a pool of its own that were added through the API like
/// ours. Sent by [`run_bare`]: no reads, no HTTP API, no domain logic.
pub(super) async fn bare_requests(
    store: &DynamoStore,
    http: &reqwest::Client,
    base: &str,
    admin: &str,
    n: usize,
    tag: &str,
) -> anyhow::Result<Vec<Vec<TransactWriteItem>>> {
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
        let learner = UserId::parse(&format!("bare-{tag}-{i}")).map_err(anyhow::Error::msg)?;
        let key = KeyCode::parse(key).map_err(anyhow::Error::msg)?;
        let assignment = Assignment::redeemed(&pool, &learner, &key, now);
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
    Ok(requests)
}

/// Sends each bare request, `concurrency` at a time.
pub(super) async fn run_bare(
    client: &Client,
    requests: Vec<Vec<TransactWriteItem>>,
    concurrency: usize,
) -> anyhow::Result<(Vec<Duration>, Duration)> {
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
    Ok((latencies, started.elapsed()))
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
