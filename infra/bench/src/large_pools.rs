//! Large pools through a `serve` child process: generation jobs and exports, with its memory.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
use keypool::identity::{OrgId, Role, TokenAuthority, UserId};
use keypool::local::engine::EmbeddedEngine;
use keypool::schema::{self, Tables};
use serde_json::{Value, json};

use super::Args;
use super::api::{make_pool, post};
use super::measure::s;

/// A `keypool-local serve` child process over an engine of the bench's, so that its memory
/// is the server's alone.
pub(super) struct Child {
    process: tokio::process::Child,
    pub(super) base: String,
}

impl Child {
    /// Starts `server` (a `keypool-local` binary) serving from `data_dir` over `engine`.
    pub(super) async fn start(
        server: &std::path::Path,
        engine: &EmbeddedEngine,
        data_dir: &std::path::Path,
    ) -> anyhow::Result<Self> {
        use tokio::io::AsyncBufReadExt as _;
        let mut process = tokio::process::Command::new(server)
            .args(["serve", "--port", "0", "--export-every", "0", "--data-dir"])
            .arg(data_dir)
            .env("AWS_ENDPOINT_URL_DYNAMODB", engine.endpoint())
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "bench")
            .env("AWS_SECRET_ACCESS_KEY", "bench")
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = process.stdout.take().context("the server's stdout")?;
        let mut line = String::new();
        tokio::io::BufReader::new(stdout)
            .read_line(&mut line)
            .await?;
        let base = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .with_context(|| format!("no address in {line:?}"))?
            .to_string();
        Ok(Self { process, base })
    }

    fn pid(&self) -> anyhow::Result<u32> {
        self.process.id().context("the server exited")
    }

    /// Forgets the peak resident memory so far (Linux: `clear_refs`).
    pub(super) fn reset_peak(&self) -> anyhow::Result<()> {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid()?), "5")?;
        Ok(())
    }

    /// Peak resident memory since the last reset, in MiB.
    pub(super) fn peak_mib(&self) -> anyhow::Result<f64> {
        self.status_mib("VmHWM:")
    }

    /// Resident memory now, in MiB.
    pub(super) fn rss_mib(&self) -> anyhow::Result<f64> {
        self.status_mib("VmRSS:")
    }

    fn status_mib(&self, field: &str) -> anyhow::Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?))?;
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("{field} in /proc/PID/status"))?;
        Ok(kb / 1024.0)
    }
}

/// Export of a pool of 10^5 and 10^6 keys by a server process: time and the process's peak
/// memory during the export, next to a bare paged Query of the same keys.
pub(super) async fn export_figures(args: &Args) -> anyhow::Result<()> {
    if args.export_keys == 0 {
        return Ok(());
    }
    let engine = EmbeddedEngine::memory()?;
    let client = keypool::local::dynamo_client(engine.endpoint());
    schema::ensure_tables(&client, &Tables::default()).await?;
    let data_dir = std::env::temp_dir().join(format!("keypool-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    std::fs::create_dir_all(&data_dir)?;
    let server = Child::start(&args.server()?, &engine, &data_dir).await?;
    let secret = std::fs::read_to_string(data_dir.join("token-secret"))?;
    let authority = TokenAuthority::new(secret.trim().as_bytes());
    let admin = authority.mint(
        &UserId::parse("bench-admin").map_err(anyhow::Error::msg)?,
        Some(&OrgId::parse("bench").map_err(anyhow::Error::msg)?),
        Role::Admin,
        chrono::Duration::hours(4),
    )?;
    let http = reqwest::Client::new();
    let base = server.base.clone();
    let pool_id = make_pool(&http, &base, &admin).await?;
    out!(
        "\n| large pools (a `serve` process over the same engine; its memory) | ours | limit | ours / limit |"
    );
    out!("|---|---|---|---|");
    let mut stored = 0;
    for target in [args.export_keys / 10, args.export_keys] {
        // Generation as a job through the API.
        server.reset_peak()?;
        let count = target - stored;
        let started = Instant::now();
        // Counts up to 10,000 are answered at once; more run as a job.
        let sync = count <= 10_000;
        let job = post(
            &http,
            &base,
            &admin,
            &format!("/v1/pools/{pool_id}/keys/generate"),
            json!({ "count": count }),
            if sync { 201 } else { 202 },
        )
        .await?;
        if !sync {
            let id = job["job_id"].as_str().context("job id")?.to_string();
            wait_for(&http, &base, &admin, &format!("/v1/jobs/{id}")).await?;
        }
        let secs = started.elapsed().as_secs_f64();
        let peak = server.peak_mib()?;
        stored = target;
        let rate = count as f64 / secs;
        // The limit: the same engine's bare conditional writes (100 per transaction), as many
        // as ours, into an index partition that grows as the pool's does.
        let bare_rate = bare_conditional_writes(&client, count).await?;
        out!(
            "| generation job of {count} keys via the API (pool grows to {stored}) | {rate:.0} keys/s; server peak {peak:.1} MiB | {bare_rate:.0} keys/s (bare TransactWriteItems of 100 conditional puts of the same items) | {:.2} (goal ≥ 0.80) |",
            rate / bare_rate
        );

        // Export of the whole pool.
        server.reset_peak()?;
        let started = Instant::now();
        let export = post(
            &http,
            &base,
            &admin,
            &format!("/v1/pools/{pool_id}/exports"),
            json!({}),
            202,
        )
        .await?;
        let id = export["export_id"]
            .as_str()
            .context("export id")?
            .to_string();
        let done = wait_for(&http, &base, &admin, &format!("/v1/exports/{id}")).await?;
        let ours = started.elapsed();
        let peak = server.peak_mib()?;
        let rows = done["rows"].as_u64().unwrap_or(0);
        anyhow::ensure!(rows as usize == stored, "exported {rows} of {stored} keys");
        let bare = bare_paged_query(&client, &pool_id, stored).await?;
        out!(
            "| export of {stored} keys to CSV | {:.1} s ({:.0} keys/s); server peak {peak:.1} MiB (goal < 100 MiB, flat) | {:.1} s (bare paged Query of the same keys) | {:.2} (time) |",
            ours.as_secs_f64(),
            stored as f64 / ours.as_secs_f64(),
            bare.as_secs_f64(),
            ours.as_secs_f64() / bare.as_secs_f64()
        );
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}

/// Polls a job or export until it is done; fails when it failed.
async fn wait_for(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    path: &str,
) -> anyhow::Result<Value> {
    loop {
        let r = http
            .get(format!("{base}{path}"))
            .bearer_auth(token)
            .send()
            .await?
            .json::<Value>()
            .await?;
        match r["status"].as_str() {
            Some("done") => return Ok(r),
            Some("failed") => anyhow::bail!("{path} failed: {r}"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// TransactWriteItems of 100 conditional puts of items shaped exactly like our key items (the
/// same attributes and sizes), in an index partition of their own: the engine's own rate for
/// the items generation writes, without our code.
async fn bare_conditional_writes(client: &Client, count: usize) -> anyhow::Result<f64> {
    let tables = Tables::default();
    let started = Instant::now();
    let mut written = 0;
    while written < count {
        let n = (count - written).min(100);
        let mut items = Vec::with_capacity(n);
        for key in keypool::keys::generate(n)? {
            let put = Put::builder()
                .table_name(&tables.main)
                .item("PK", s(format!("KEY#{key}")))
                .item("SK", s("KEY"))
                .item("entity", s("key"))
                .item("key", s(key.as_str()))
                .item("org", s("bench"))
                .item("pool_id", s("01a22400-0000-7000-8000-000000000000"))
                .item("status", s("available"))
                .item("source", s("generated"))
                .item("created_at", s("2026-01-01T00:00:00.000Z"))
                .item("GSI1PK", s("POOL#01a22400-0000-7000-8000-000000000000"))
                .item("GSI1SK", s(format!("KEY#available#{key}")))
                .condition_expression("attribute_not_exists(PK)")
                .build()?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await?;
        written += n;
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

/// Reads every key of a pool through GSI1, page by page, and does nothing with them.
async fn bare_paged_query(
    client: &Client,
    pool_id: &str,
    expect: usize,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut start = None;
    let mut seen = 0;
    loop {
        let page = client
            .query()
            .table_name(Tables::default().main)
            .index_name(schema::GSI1)
            .key_condition_expression("GSI1PK = :pk")
            .expression_attribute_values(":pk", s(format!("POOL#{pool_id}")))
            .limit(1000)
            .set_exclusive_start_key(start)
            .send()
            .await?;
        seen += page.items().len();
        start = page.last_evaluated_key;
        if start.is_none() {
            break;
        }
    }
    anyhow::ensure!(seen == expect, "the bare query saw {seen} of {expect} keys");
    Ok(started.elapsed())
}
