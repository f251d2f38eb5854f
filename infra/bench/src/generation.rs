//! Keys generated in the domain, and keys stored through the API next to bare writes.

use std::time::Instant;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use keypool::schema::Tables;
use serde_json::json;

use super::Args;
use super::api::{make_pool, post};
use super::measure::{HashMapKey, s};

/// Generation in the domain, one core.
pub(super) fn generated_keys(args: &Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let keys = keypool::keys::generate(args.generate)?;
    let gen_secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(keys.len() == args.generate);
    drop(keys);
    out!("| figure | ours | bare store | ours / bare |");
    out!("|---|---|---|---|");
    out!(
        "| keys generated in the domain (1 core) | {:.0}/s | — (goal ≥ 1,000,000/s) | {:.2}× goal |",
        args.generate as f64 / gen_secs,
        args.generate as f64 / gen_secs / 1e6
    );
    Ok(())
}

/// Keys stored: our insert path vs bare TransactWriteItems of the same shape.
pub(super) async fn stored_keys(
    args: &Args,
    client: &Client,
    tables: &Tables,
    http: &reqwest::Client,
    base: &str,
    admin: &str,
) -> anyhow::Result<()> {
    let pool_id = make_pool(http, base, admin).await?;
    let started = Instant::now();
    let mut stored = 0;
    while stored < args.store_keys {
        let n = (args.store_keys - stored).min(10_000);
        post(
            http,
            base,
            admin,
            &format!("/v1/pools/{pool_id}/keys/generate"),
            json!({ "count": n }),
            201,
        )
        .await?;
        stored += n;
    }
    let ours = stored as f64 / started.elapsed().as_secs_f64();
    let bare = bare_key_writes(client, tables, args.store_keys).await?;
    out!(
        "| keys stored (generate via API, 99 per transaction) | {ours:.0}/s | {bare:.0}/s | {:.2} |",
        ours / bare
    );
    Ok(())
}

/// Bare TransactWriteItems of 99 conditional puts plus one counter update.
async fn bare_key_writes(client: &Client, tables: &Tables, count: usize) -> anyhow::Result<f64> {
    let counter = HashMapKey::new("BARE", "COUNTER");
    let started = Instant::now();
    let mut written = 0;
    while written < count {
        let n = (count - written).min(99);
        let mut items = Vec::with_capacity(n + 1);
        for key in keypool::keys::generate(n)? {
            let put = Put::builder()
                .table_name(&tables.main)
                .item("PK", s(format!("KEY#{key}")))
                .item("SK", s("KEY"))
                .item("GSI1PK", s("POOL#bare"))
                .item("GSI1SK", s(format!("KEY#available#{key}")))
                .item("status", s("available"))
                .item("created_at", s("2026-01-01T00:00:00.000Z"))
                .condition_expression("attribute_not_exists(PK)")
                .build()?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        let update = Update::builder()
            .table_name(&tables.main)
            .set_key(Some(counter.0.clone()))
            .update_expression("ADD total_keys :n")
            .expression_attribute_values(":n", AttributeValue::N(n.to_string()))
            .build()?;
        items.push(TransactWriteItem::builder().update(update).build());
        client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await?;
        written += n;
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}
