//! What an audit record costs a change: a pool's edit and a 100-key paste through the API,
//! served by a store that writes each change with its record and by one that writes the
//! same change without it (`DynamoStore::without_audit_records`, the control arm), over one
//! engine, the two arms taking turns so that neither gets the quieter moments.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use aws_sdk_dynamodb::Client;
use keypool::identity::TokenAuthority;
use keypool::schema::Tables;
use keypool::store::DynamoStore;
use serde_json::json;

use super::api::{make_pool, post};
use super::measure::{ms, stats};
use super::served::{ApiServer, admin_of, local_state};

/// Keys in each timed paste.
const PASTE: usize = 100;

/// One arm: a server over its store, and the pool its changes go to.
struct Arm {
    server: ApiServer,
    pool_id: String,
    edits: Vec<Duration>,
    pastes: Vec<Duration>,
}

pub(super) async fn audit_figures(
    client: &Client,
    tables: &Tables,
    authority: &TokenAuthority,
    changes: usize,
) -> anyhow::Result<()> {
    anyhow::ensure!(changes > 0, "--audit-changes is at least 1");
    let http = reqwest::Client::new();
    let admin = admin_of(authority, "bench-audit")?;
    let audited = DynamoStore::new(client.clone(), tables.clone());
    let mut arms = Vec::new();
    for store in [audited.clone(), audited.without_audit_records()] {
        let server = ApiServer::start(local_state(Arc::new(store), authority)?).await?;
        let pool_id = make_pool(&http, &server.base, &admin).await?;
        arms.push(Arm {
            server,
            pool_id,
            edits: Vec::with_capacity(changes),
            pastes: Vec::with_capacity(changes),
        });
    }
    // Keys made in the domain, so that making them is not timed.
    let keys = keypool::keys::generate(2 * changes * PASTE)?;
    let mut batches = keys.chunks(PASTE);

    for i in 0..changes {
        // Which arm goes first alternates too.
        let order = if i % 2 == 0 { [0, 1] } else { [1, 0] };
        for a in order {
            let arm = &mut arms[a];
            let t = Instant::now();
            let r = http
                .patch(format!("{}/v1/pools/{}", arm.server.base, arm.pool_id))
                .bearer_auth(&admin)
                .json(&json!({ "name": format!("Bench pool, edit {i}") }))
                .send()
                .await?;
            anyhow::ensure!(r.status().is_success(), "an edit answered {}", r.status());
            r.bytes().await?;
            arm.edits.push(t.elapsed());

            let batch: Vec<&str> = batches
                .next()
                .context("a batch of keys for each paste")?
                .iter()
                .map(|k| k.as_str())
                .collect();
            let t = Instant::now();
            post(
                &http,
                &arm.server.base,
                &admin,
                &format!("/v1/pools/{}/keys", arm.pool_id),
                json!({ "keys": batch }),
                201,
            )
            .await?;
            arm.pastes.push(t.elapsed());
        }
    }

    let [with, without] = [&arms[0], &arms[1]];
    for (what, ours, bare) in [
        ("a pool's edit (PATCH)", &with.edits, &without.edits),
        (
            "a 100-key paste, all or nothing (POST …/keys)",
            &with.pastes,
            &without.pastes,
        ),
    ] {
        let ours = stats(ours.clone(), Duration::from_secs(1));
        let bare = stats(bare.clone(), Duration::from_secs(1));
        out!(
            "| {what} with its audit record, p50 / p99 ({changes} each, arms alternating) | {} / {} | {} / {} without the record (goal: ≤ 1.10) | {:.2} / {:.2} |",
            ms(ours.p50),
            ms(ours.p99),
            ms(bare.p50),
            ms(bare.p99),
            ours.p50.as_secs_f64() / bare.p50.as_secs_f64(),
            ours.p99.as_secs_f64() / bare.p99.as_secs_f64(),
        );
    }
    Ok(())
}
