//! Redemption races with a fifth of all transactions cancelled by injected
//! `TransactionConflict`s (`keypool_faults`, the tests' injector): what matters is that no key
//! is redeemed twice and that the counts stay exact, whatever the retries did.

use std::sync::Arc;

use anyhow::Context as _;
use keypool::http::{AppState, Authenticator, app};
use keypool::identity::{OrgId, Role, TokenAuthority, UserId};
use keypool::schema::Tables;
use keypool::store::DynamoStore;
use keypool::time::SystemClock;
use keypool_faults::{Faults, Injector, faulty_client};
use serde_json::{Value, json};

use super::api::make_pool;
use super::redemption::generate;

/// Keys raced for, and learners racing for each.
const KEYS: usize = 100;
const LEARNERS: usize = 8;

pub(super) async fn conflict_figures(
    client: &aws_sdk_dynamodb::Client,
    tables: &Tables,
    authority: &TokenAuthority,
) -> anyhow::Result<()> {
    let seed = 1;
    let injector = Arc::new(Injector::new(Faults::NONE, seed));
    let store = Arc::new(DynamoStore::new(
        faulty_client(client, injector.clone()),
        tables.clone(),
    ));
    let state = AppState::new(
        store,
        Authenticator::Local(Box::new(authority.clone())),
        Arc::new(SystemClock),
    )?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    // Without the peer's address: 700 losers from one address would pass its limit of 30
    // failures, and answer 429 rather than 409.
    let server = tokio::spawn(async move { axum::serve(listener, app(state)).await });
    let http = reqwest::Client::new();
    let org = OrgId::parse("bench-conflicts").map_err(anyhow::Error::msg)?;
    let admin = authority.mint(
        &UserId::parse("bench-admin").map_err(anyhow::Error::msg)?,
        Some(&org),
        Role::Admin,
        chrono::Duration::hours(1),
    )?;
    let pool_id = make_pool(&http, &base, &admin).await?;
    let keys = generate(&http, &base, &admin, &pool_id, KEYS).await?;

    injector.set(Faults::conflicts(0.2));
    let barrier = Arc::new(tokio::sync::Barrier::new(KEYS * LEARNERS));
    let mut tasks = Vec::with_capacity(KEYS * LEARNERS);
    for (k, key) in keys.iter().enumerate() {
        for l in 0..LEARNERS {
            let token = authority.mint(
                &UserId::parse(&format!("racer-{k}-{l}")).map_err(anyhow::Error::msg)?,
                None,
                Role::Learner,
                chrono::Duration::hours(1),
            )?;
            let (http, base, barrier, key) =
                (http.clone(), base.clone(), barrier.clone(), key.clone());
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                let r = http
                    .post(format!("{base}/v1/redemptions"))
                    .bearer_auth(&token)
                    .json(&json!({ "key": key }))
                    .send()
                    .await?;
                anyhow::Ok((k, r.status().as_u16()))
            }));
        }
    }
    let mut wins = vec![0usize; KEYS];
    let mut other = std::collections::BTreeMap::<u16, usize>::new();
    for t in tasks {
        let (k, status) = t.await??;
        if status == 201 {
            wins[k] += 1;
        } else {
            *other.entry(status).or_default() += 1;
        }
    }
    let conflicts = injector.conflicts();
    injector.set(Faults::NONE);
    let pool: Value = http
        .get(format!("{base}/v1/pools/{pool_id}"))
        .bearer_auth(&admin)
        .send()
        .await?
        .json()
        .await?;
    server.abort();
    let redeemed: usize = wins.iter().sum();
    let doubles = wins.iter().filter(|&&w| w > 1).count();
    let counted = pool["redeemed_keys"].as_u64().context("redeemed_keys")? as usize;
    let total = pool["total_keys"].as_u64().context("total_keys")? as usize;
    let exact = counted == redeemed && total == KEYS;
    out!(
        "\n| {KEYS} keys, {LEARNERS} learners racing for each at once, 20% of transactions cancelled (TransactionConflict, seed {seed}) | result | goal |"
    );
    out!("|---|---|---|");
    out!("| transactions cancelled by the injector | {conflicts} | > 0 |");
    out!(
        "| keys redeemed (201), keys redeemed twice | {redeemed} of {KEYS}, {doubles} twice | none twice |"
    );
    out!(
        "| other answers | {} | 409 only |",
        other
            .iter()
            .map(|(s, n)| format!("{n} × {s}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    out!(
        "| pool counts after the race (total / redeemed) | {total} / {counted} ({}) | exact |",
        if exact { "exact" } else { "NOT EXACT" }
    );
    anyhow::ensure!(
        doubles == 0 && exact,
        "a race with injected conflicts broke exactly-once"
    );
    Ok(())
}
