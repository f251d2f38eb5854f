//! Billing: invoice lines from stream batches, and the delay from a redemption to its line.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use aws_sdk_dynamodb::types::AttributeValue;
use keypool::domain::{InvoiceLine, Month};
use keypool::events::billing as bill;
use keypool::identity::{OrgId, Role, TokenAuthority, UserId};
use keypool::local::engine::EmbeddedEngine;
use keypool::local::follower;
use keypool::store::DynamoStore;
use keypool::store::prelude::*;
use serde_json::json;
use tokio::sync::Mutex;

use super::Args;
use super::api::{make_pool, post};
use super::measure::{ms, s, stats};

/// Billing: lines written by the handler from batches of 100 stream records, next to bare
/// conditional puts of the same lines; and the delay from a redemption's answer to its invoice
/// line through the local server's stream follower.
pub(super) async fn billing_figures(
    args: &Args,
    store: &Arc<DynamoStore>,
    engine: &EmbeddedEngine,
    base: &str,
    http: &reqwest::Client,
    authority: &TokenAuthority,
) -> anyhow::Result<()> {
    use aws_lambda_events::event::dynamodb::{Event, EventRecord};
    let org = OrgId::parse("bench-billing").map_err(anyhow::Error::msg)?;
    let now = chrono::Utc::now();
    let records: Vec<EventRecord> = (0..args.invoice_lines)
        .map(|i| {
            let a = keypool::domain::Assignment {
                assignment_id: keypool::domain::AssignmentId::new(),
                learner: UserId::parse(&format!("billed-{i}")).map_err(anyhow::Error::msg)?,
                org: org.clone(),
                pool_id: keypool::domain::PoolId::new(),
                course_id: keypool::domain::CourseId::new(),
                course_title: None,
                key: keypool::keys::generate(1)?.remove(0),
                redeemed_at: now,
                expires_at: now,
                launch_count: 0,
                last_launched_at: None,
                cancelled_at: None,
            };
            let mut image: serde_dynamo::Item = serde_dynamo::to_item(&a)?;
            image.insert(
                "entity".into(),
                serde_dynamo::AttributeValue::S("assignment".into()),
            );
            let mut record = EventRecord::default();
            record.event_name = "INSERT".into();
            record.change.sequence_number = Some(format!("{:0>24}", i + 1));
            record.change.new_image = image;
            anyhow::Ok(record)
        })
        .collect::<anyhow::Result<_>>()?;
    let started = Instant::now();
    for batch in records.chunks(100) {
        let mut event = Event::default();
        event.records = batch.to_vec();
        let response = bill::bill(store.as_ref(), &event).await?;
        anyhow::ensure!(
            response.batch_item_failures.is_empty(),
            "billing failed a record"
        );
    }
    let ours = records.len() as f64 / started.elapsed().as_secs_f64();
    let lines: Vec<InvoiceLine> = records
        .iter()
        .filter_map(|r| bill::line_of(r).ok().flatten())
        .collect();
    let client = store.client();
    let started = Instant::now();
    for line in &lines {
        let mut item: std::collections::HashMap<String, AttributeValue> =
            serde_dynamo::to_item(line)?;
        item.insert("PK".into(), s(format!("BARE#INVOICE#{}", line.month)));
        item.insert("SK".into(), s(format!("LINE#{}", line.assignment_id)));
        client
            .put_item()
            .table_name(&store.tables().main)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(PK)")
            .send()
            .await?;
    }
    let bare = lines.len() as f64 / started.elapsed().as_secs_f64();
    out!(
        "| invoice lines billed (batches of 100 stream records; transactions of up to 100 actions: line puts + one totals ADD per org and month) | {ours:.0}/s | {bare:.0}/s (conditional PutItem of the line alone) | {:.2} |",
        ours / bare
    );

    // The delay: the local server's follower (same poll interval as `serve`) against redemptions
    // at a steady pace; a watcher reads the invoice every 5 ms.
    let follower = follower::StreamFollower::new(
        client.clone(),
        keypool::local::streams_client(engine.endpoint()),
        store.clone() as Arc<dyn Store>,
        store.tables().assignments.clone(),
    );
    // Bill what earlier steps left on the stream, so the delays measured are of new records.
    follower.drain().await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let following = tokio::spawn(follower.run(follower::DEFAULT_POLL, async move {
        let _ = stopped.await;
    }));
    // An organization of its own, so that its invoice holds only the lines timed here.
    let delay_org = OrgId::parse("bench-delay").map_err(anyhow::Error::msg)?;
    let admin = authority.mint(
        &UserId::parse("bench-admin").map_err(anyhow::Error::msg)?,
        Some(&delay_org),
        Role::Admin,
        chrono::Duration::hours(1),
    )?;
    let pool_id = make_pool(http, base, &admin).await?;
    let reply = post(
        http,
        base,
        &admin,
        &format!("/v1/pools/{pool_id}/keys/generate"),
        json!({ "count": args.billing_delays }),
        201,
    )
    .await?;
    let keys: Vec<String> = reply["keys"]
        .as_array()
        .context("keys")?
        .iter()
        .filter_map(|k| k.as_str().map(str::to_string))
        .collect();
    let redeemed: Arc<Mutex<std::collections::HashMap<String, Instant>>> = Arc::default();
    let billed: Arc<Mutex<std::collections::HashMap<String, Instant>>> = Arc::default();
    let watcher = {
        let (store, billed, want) = (store.clone(), billed.clone(), keys.len());
        tokio::spawn(async move {
            let month = Month::of(chrono::Utc::now());
            loop {
                let mut cursor = None;
                loop {
                    let page = store
                        .list_invoice_lines(&delay_org, month, cursor.as_deref(), 1000)
                        .await?;
                    let seen = Instant::now();
                    let mut billed = billed.lock().await;
                    for line in page.items {
                        billed.entry(line.assignment_id.to_string()).or_insert(seen);
                    }
                    cursor = page.next_cursor;
                    if cursor.is_none() {
                        break;
                    }
                }
                if billed.lock().await.len() >= want {
                    return anyhow::Ok(());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    for (i, key) in keys.iter().enumerate() {
        let token = authority.mint(
            &UserId::parse(&format!("delayed-{i}")).map_err(anyhow::Error::msg)?,
            None,
            Role::Learner,
            chrono::Duration::hours(1),
        )?;
        let reply = post(
            http,
            base,
            &token,
            "/v1/redemptions",
            json!({ "key": key }),
            201,
        )
        .await?;
        let at = Instant::now();
        let id = reply["assignment_id"]
            .as_str()
            .context("assignment id")?
            .to_string();
        redeemed.lock().await.insert(id, at);
        // About 40 redemptions a second, spread over the follower's polls.
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    tokio::time::timeout(Duration::from_secs(60), watcher).await???;
    let _ = stop.send(());
    let _ = following.await;
    let billed = billed.lock().await;
    let delays: Vec<Duration> = redeemed
        .lock()
        .await
        .iter()
        .filter_map(|(id, at)| {
            billed
                .get(id)
                .map(|seen| seen.saturating_duration_since(*at))
        })
        .collect();
    anyhow::ensure!(
        delays.len() == keys.len(),
        "some redemptions were never billed"
    );
    let delay = stats(delays, Duration::from_secs(1));
    out!(
        "| redemption to invoice line, local server (poll every {} ms) p50 / p99 | {} / {} | — (goal: within seconds) | — |",
        follower::DEFAULT_POLL.as_millis(),
        ms(delay.p50),
        ms(delay.p99)
    );
    Ok(())
}
