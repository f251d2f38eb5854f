//! Peak memory per request: the worst bodies the API takes (4 MiB of bad lines, of valid short
//! keys, as text and as JSON) sent to a `serve` process, its VmHWM over its VmRSS just before,
//! against the budget that keeps a 256 MB Lambda safe.

use std::time::Duration;

use keypool::identity::{OrgId, Role, TokenAuthority, UserId};
use keypool::local::engine::EmbeddedEngine;
use keypool::schema::{self, Tables};

use super::api::make_pool;
use super::large_pools::Child;

/// Most a request may raise the server's resident memory, in MiB.
const BUDGET_MIB: f64 = 64.0;
/// How long an import's job is watched after its answer.
const JOB_WATCH: Duration = Duration::from_secs(20);
/// Just under the 4 MiB body cap.
const BODY: usize = 4 * 1024 * 1024 - 64;

/// Keys of `width` letters and digits after `prefix`, distinct, as many as fit in `budget`
/// bytes once each is written by `write`.
fn short_keys(prefix: &str, width: u32, budget: usize, per_key: usize) -> Vec<String> {
    const SYMBOLS: &[u8] = b"ABCDEFGHJKMNPQRSTVWXYZ0123456789";
    let count = (budget / per_key).min(SYMBOLS.len().pow(width));
    (0..count)
        .map(|mut i| {
            let mut key = String::from(prefix);
            for _ in 0..width {
                key.push(SYMBOLS[i % SYMBOLS.len()] as char);
                i /= SYMBOLS.len();
            }
            key
        })
        .collect()
}

/// The bodies, as (what, content type, body, expected status).
fn bodies() -> Vec<(&'static str, &'static str, Vec<u8>, u16)> {
    let bad_text = "no!\n".repeat(BODY / 4).into_bytes();
    let mut bad_json = String::from("{\"keys\":[");
    while bad_json.len() < BODY - 8 {
        bad_json.push_str("\"!\",");
    }
    bad_json.push_str("\"!\"]}");
    let valid_text = short_keys("", 4, BODY, 5).join("\n").into_bytes();
    let keys = short_keys("J", 4, BODY - 16, 8);
    let valid_json = serde_json::json!({ "keys": keys }).to_string().into_bytes();
    let same_text = "SAME-KEY\n".repeat(BODY / 9).into_bytes();
    let sync_text = short_keys("SYNC", 3, 10_000 * 8, 8).join("\n").into_bytes();
    vec![
        (
            "4 MiB of bad lines, text/plain (400)",
            "text/plain",
            bad_text,
            400,
        ),
        (
            "4 MiB JSON list of bad lines (400)",
            "application/json",
            bad_json.into_bytes(),
            400,
        ),
        (
            "4 MiB of one key repeated, text/plain (400)",
            "text/plain",
            same_text,
            400,
        ),
        (
            "10,000 valid keys, all or nothing (201)",
            "text/plain",
            sync_text,
            201,
        ),
        (
            "4 MiB of valid 4-symbol keys, text/plain (202, import)",
            "text/plain",
            valid_text,
            202,
        ),
        (
            "4 MiB JSON list of valid 5-symbol keys (202, import)",
            "application/json",
            valid_json,
            202,
        ),
    ]
}

/// A fresh `serve` process over `engine`, a pool and an admin token, settled and idle.
async fn idle_server(
    binary: &std::path::Path,
    engine: &EmbeddedEngine,
    data_dir: &std::path::Path,
    http: &reqwest::Client,
) -> anyhow::Result<(Child, String, String)> {
    let _ = std::fs::remove_dir_all(data_dir);
    std::fs::create_dir_all(data_dir)?;
    let server = Child::start(binary, engine, data_dir).await?;
    let secret = std::fs::read_to_string(data_dir.join("token-secret"))?;
    let authority = TokenAuthority::new(secret.trim().as_bytes());
    let admin = authority.mint(
        &UserId::parse("bench-admin").map_err(anyhow::Error::msg)?,
        Some(&OrgId::parse("bench").map_err(anyhow::Error::msg)?),
        Role::Admin,
        chrono::Duration::hours(4),
    )?;
    let pool_id = make_pool(http, &server.base, &admin).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok((server, admin, pool_id))
}

/// Sends each worst-case body to a fresh server process (so that nothing an earlier request
/// left in its heap hides this one's) and reports its peak over its idle memory; `binary` is
/// the `keypool-local` to run.
pub(super) async fn memory_figures(binary: &std::path::Path) -> anyhow::Result<()> {
    let data_dir = std::env::temp_dir().join(format!("keypool-bench-mem-{}", std::process::id()));
    let http = reqwest::Client::new();
    out!(
        "\n| peak memory per request (a fresh `serve` process per row, over a fresh engine of the bench's; its VmHWM less its idle VmRSS) | ours | limit | ours / limit |"
    );
    out!("|---|---|---|---|");
    for (what, content_type, body, want) in bodies() {
        // An engine of its own too: no job an earlier row left open is resumed here.
        let engine = EmbeddedEngine::memory()?;
        let client = keypool::local::dynamo_client(engine.endpoint());
        schema::ensure_tables(&client, &Tables::default()).await?;
        let (server, admin, pool_id) = idle_server(binary, &engine, &data_dir, &http).await?;
        let base = server.base.clone();
        let idle = server.rss_mib()?;
        server.reset_peak()?;
        let started = std::time::Instant::now();
        let r = http
            .post(format!("{base}/v1/pools/{pool_id}/keys"))
            .bearer_auth(&admin)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await?;
        let status = r.status().as_u16();
        let answer: serde_json::Value = r.json().await?;
        let secs = started.elapsed().as_secs_f64();
        let peak = server.peak_mib()? - idle;
        anyhow::ensure!(
            status == want,
            "{what}: answered {status}: {:.300}",
            answer.to_string()
        );
        let mut job = String::new();
        if let Some(id) = answer["job_id"].as_str() {
            // The import's job, in the background: the process's peak while it works (a
            // while of it; the whole of a 4 MiB import takes minutes on the embedded engine).
            tokio::time::sleep(JOB_WATCH).await;
            let progress = http
                .get(format!("{base}/v1/jobs/{id}"))
                .bearer_auth(&admin)
                .send()
                .await?
                .json::<serde_json::Value>()
                .await?;
            job = format!(
                "; its import job of {} keys, first {} s: {:.1} MiB",
                progress["total"],
                JOB_WATCH.as_secs(),
                server.peak_mib()? - idle,
            );
        }
        out!(
            "| {what} | {peak:.1} MiB over {idle:.1} MiB idle ({secs:.1} s){job} | {BUDGET_MIB:.0} MiB | {:.2} (goal < 1) |",
            peak / BUDGET_MIB
        );
        drop(server);
        drop(engine);
    }
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}
