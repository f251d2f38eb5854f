//! Redemption latency and throughput at several concurrencies, next to the bare transaction.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Put, TransactWriteItem, Update};
use keypool::identity::{Role, TokenAuthority, UserId};
use keypool::schema::Tables;
use serde_json::json;
use tokio::sync::Mutex;

use super::Args;
use super::api::{make_pool, post};
use super::measure::{Stats, ms, s, stats};

/// Redemption through the HTTP server vs the bare transaction, at 1, 8 and 32.
pub(super) async fn redemption_figures(
    args: &Args,
    client: &Client,
    tables: &Tables,
    http: &reqwest::Client,
    base: &str,
    admin: &str,
    authority: &TokenAuthority,
) -> anyhow::Result<()> {
    for concurrency in [1usize, 8, 32] {
        let n = args.redemptions;
        let pool_id = make_pool(http, base, admin).await?;
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
        let bare = bare_redemptions(client, tables, n, concurrency).await?;
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

/// A failure counter's check, as the redemption transaction makes it of a learner who has
/// not failed lately (no counter item).
fn limit_check(table: &str, pk: String) -> anyhow::Result<TransactWriteItem> {
    Ok(TransactWriteItem::builder()
        .condition_check(
            ConditionCheck::builder()
                .table_name(table)
                .key("PK", s(pk))
                .key("SK", s("COUNTER"))
                .condition_expression("attribute_not_exists(PK)")
                .build()?,
        )
        .build())
}

/// The redemption transaction's shape, bare: key update, a count shard's update, assignment,
/// guard and pointer puts, and the checks of the learner's and the address's counters.
async fn bare_redemptions(
    client: &Client,
    tables: &Tables,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<Stats> {
    let keys = keypool::keys::generate(n)?;
    for chunk in keys.chunks(99) {
        let items = chunk
            .iter()
            .map(|k| {
                Put::builder()
                    .table_name(&tables.main)
                    .item("PK", s(format!("KEY#{k}")))
                    .item("SK", s("KEY"))
                    .item("status", s("available"))
                    .build()
                    .map(|p| TransactWriteItem::builder().put(p).build())
            })
            .collect::<Result<Vec<_>, _>>()?;
        client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await?;
    }
    let work = Arc::new(Mutex::new(keys.into_iter().enumerate().collect::<Vec<_>>()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let work = work.clone();
        let client = client.clone();
        let tables = tables.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let Some((i, key)) = work.lock().await.pop() else {
                    break;
                };
                let now = keypool::time::format(&chrono::Utc::now());
                let learner = format!("bare-{concurrency}-{i}");
                let t = Instant::now();
                let items = vec![
                    TransactWriteItem::builder()
                        .update(
                            Update::builder()
                                .table_name(&tables.main)
                                .key("PK", s(format!("KEY#{key}")))
                                .key("SK", s("KEY"))
                                .update_expression(
                                    "SET #s = :r, redeemed_by = :u, redeemed_at = :now",
                                )
                                .condition_expression("attribute_exists(PK) AND #s = :a")
                                .expression_attribute_names("#s", "status")
                                .expression_attribute_values(":r", s("redeemed"))
                                .expression_attribute_values(":a", s("available"))
                                .expression_attribute_values(":u", s(learner.clone()))
                                .expression_attribute_values(":now", s(now.clone()))
                                .build()?,
                        )
                        .build(),
                    TransactWriteItem::builder()
                        .update(
                            Update::builder()
                                .table_name(&tables.main)
                                .key("PK", s(format!("POOLSHARD#bare{concurrency}#{}", i % 64)))
                                .key("SK", s("SHARD"))
                                .update_expression("ADD redeemed_count :one, change_seq :one")
                                .condition_expression(
                                    "attribute_not_exists(version) OR version <= :one",
                                )
                                .expression_attribute_values(":one", AttributeValue::N("1".into()))
                                .build()?,
                        )
                        .build(),
                    TransactWriteItem::builder()
                        .put(
                            Put::builder()
                                .table_name(&tables.assignments)
                                .item("PK", s(format!("USER#{learner}")))
                                .item("SK", s(format!("ASSIGN#{i}")))
                                .item("redeemed_at", s(now.clone()))
                                .condition_expression("attribute_not_exists(PK)")
                                .build()?,
                        )
                        .build(),
                    TransactWriteItem::builder()
                        .put(
                            Put::builder()
                                .table_name(&tables.main)
                                .item("PK", s(format!("POOL#bare{concurrency}")))
                                .item("SK", s(format!("LEARNER#{learner}")))
                                .condition_expression("attribute_not_exists(PK)")
                                .build()?,
                        )
                        .build(),
                    TransactWriteItem::builder()
                        .put(
                            Put::builder()
                                .table_name(&tables.main)
                                .item("PK", s("ORG#bare"))
                                .item("SK", s(format!("ASSIGNMENT#{concurrency}-{i}")))
                                .item("learner", s(learner.clone()))
                                .condition_expression("attribute_not_exists(PK)")
                                .build()?,
                        )
                        .build(),
                    // The learner's and the client address's failure counters.
                    limit_check(&tables.main, format!("LIMIT#learner#{learner}"))?,
                    limit_check(&tables.main, "LIMIT#address#127.0.0.1".to_string())?,
                ];
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
