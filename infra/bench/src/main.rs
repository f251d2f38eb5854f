//! `keypool-bench`: figures for this machine, each next to the bare store operation it is
//! built on, so that our own overhead shows as a ratio.
//!
//! One module per figure; this one holds the arguments, the order of the figures, and the
//! report they all write to. Some figures measure `keypool-local serve` processes and the
//! functions' release binaries, which it finds built beside it (`--server`, `--functions`).

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use keypool::identity::TokenAuthority;
use keypool::local::engine::EmbeddedEngine;
use keypool::schema::{self, Tables};
use keypool::store::DynamoStore;

/// The report: printed as it is measured, and kept for `--out`.
static REPORT: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

/// Prints a line of the report and keeps it.
macro_rules! out {
    ($($arg:tt)*) => {{
        let line = format!($($arg)*);
        println!("{line}");
        if let Ok(mut report) = $crate::REPORT.lock() {
            report.push_str(&line);
            report.push('\n');
        }
    }};
}

mod api;
mod audit;
mod billing;
mod breakdown;
mod conflicts;
mod functions;
mod generation;
mod large_pools;
mod measure;
mod memory;
mod redemption;
mod scale;
mod served;
mod webhooks;

use billing::billing_figures;
use functions::lambda_figures;
use large_pools::export_figures;

/// What to measure, and how much.
#[derive(clap::Parser)]
#[command(
    name = "keypool-bench",
    version,
    about = "Measure key generation, key storage and redemption on this machine"
)]
struct Args {
    /// Keys to generate in the domain (no store).
    #[arg(long, default_value_t = 2_000_000)]
    generate: usize,
    /// Keys to store into the embedded engine, through our code and bare.
    #[arg(long, default_value_t = 20_000)]
    store_keys: usize,
    /// Redemptions per concurrency level.
    #[arg(long, default_value_t = 640)]
    redemptions: usize,
    /// Invoice lines billed from stream batches, through the handler and bare.
    #[arg(long, default_value_t = 5_000)]
    invoice_lines: usize,
    /// Redemptions timed from the API's answer to their invoice line.
    #[arg(long, default_value_t = 200)]
    billing_delays: usize,
    /// Redemptions timed to their webhook, alone and beside a dead endpoint.
    #[arg(long, default_value_t = 200)]
    webhook_delays: usize,
    /// Deliveries sent to one endpoint, by us and by a bare HTTP client.
    #[arg(long, default_value_t = 2_000)]
    webhook_deliveries: usize,
    /// Pool edits and 100-key pastes, each with its audit record and without.
    #[arg(long, default_value_t = 300)]
    audit_changes: usize,
    /// Also write the report (Markdown) to this file.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    /// Keys in the pool whose export is timed (also at a tenth of it); 0 skips it.
    #[arg(long, default_value_t = 1_000_000)]
    export_keys: usize,
    /// Where the functions' release binaries are (`cargo build --release -p …`).
    #[arg(long, default_value = "target/release")]
    functions: std::path::PathBuf,
    /// The `keypool-local` binary whose `serve` processes are measured; by default the one
    /// beside this binary (`cargo build -p keypool-local`, with `--release` for the figures).
    #[arg(long)]
    server: Option<std::path::PathBuf>,
    /// Cold starts per function.
    #[arg(long, default_value_t = 10)]
    starts: usize,
    /// How long a DynamoDB transaction holds its items in the sharding simulation, in ms.
    #[arg(long, default_value_t = 10.0)]
    scale_hold_ms: f64,
    /// Seed of the sharding simulation.
    #[arg(long, default_value_t = 1)]
    scale_seed: u64,
    /// Measure only this figure (`memory`: peak memory per request; `scale`: the sharding
    /// simulation, in virtual time; `redemption`: its figures, where its time goes, and a race
    /// under injected conflicts; `webhooks`: from a redemption to its webhook, and deliveries
    /// per second; `audit`: what an audit record costs a change), quickly.
    #[arg(long, value_parser = ["memory", "scale", "redemption", "webhooks", "audit"])]
    only: Option<String>,
}

impl Args {
    /// The `keypool-local` binary to start `serve` processes of.
    fn server(&self) -> anyhow::Result<std::path::PathBuf> {
        let path = match &self.server {
            Some(path) => path.clone(),
            None => std::env::current_exe()?.with_file_name("keypool-local"),
        };
        anyhow::ensure!(
            path.is_file(),
            "no keypool-local at {}: build it beside this binary (`cargo build -p keypool-local`, \
             with --release for the figures) or name it with --server",
            path.display()
        );
        Ok(path)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = <Args as clap::Parser>::parse();
    // The figures go to stdout; per-request logs would only slow the bench down.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    run(args).await
}

async fn run(args: Args) -> anyhow::Result<()> {
    let run_started = Instant::now();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    out!(
        "# KeyPool bench — {} — {cores} cores, embedded engine (dynoxide, in memory)\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    );

    if args.only.as_deref() == Some("memory") {
        memory::memory_figures(&args.server()?).await?;
        return write_report(&args);
    }
    if args.only.as_deref() == Some("webhooks") {
        webhooks::webhook_figures(args.webhook_delays, args.webhook_deliveries).await?;
        return write_report(&args);
    }
    if args.only.as_deref() == Some("scale") {
        scale::scale_figures(args.scale_hold_ms, args.scale_seed);
        return write_report(&args);
    }

    // The full run starts `serve` processes only after minutes: find the binary first.
    if args.only.is_none() {
        args.server()?;
    }

    // 1. Generation in the domain, one core.
    generation::generated_keys(&args)?;

    // 2. Keys stored: our insert path vs bare TransactWriteItems of the same shape.
    let engine = EmbeddedEngine::memory()?;
    let client = keypool::local::dynamo_client(engine.endpoint());
    let tables = Tables::default();
    schema::ensure_tables(&client, &tables).await?;
    let store = Arc::new(DynamoStore::new(client.clone(), tables.clone()));
    let authority = TokenAuthority::new(&[42u8; 32]);
    let server = served::ApiServer::start(served::local_state(store.clone(), &authority)?).await?;
    let base = server.base.clone();
    let http = reqwest::Client::new();
    let admin = served::admin_of(&authority, "bench")?;

    if args.only.as_deref() == Some("audit") {
        audit::audit_figures(&client, &tables, &authority, args.audit_changes).await?;
        return write_report(&args);
    }

    if args.only.as_deref() == Some("redemption") {
        breakdown::redemption_breakdown(
            args.redemptions,
            engine.endpoint(),
            &client,
            &tables,
            &store,
            breakdown::Served {
                http: &http,
                base: &base,
                admin: &admin,
                authority: &authority,
            },
        )
        .await?;
        redemption::redemption_figures(&args, &client, &store, &http, &base, &admin, &authority)
            .await?;
        conflicts::conflict_figures(&client, &tables, &authority).await?;
        drop(server);
        return write_report(&args);
    }

    generation::stored_keys(&args, &client, &tables, &http, &base, &admin).await?;

    // 3. Redemption through the HTTP server vs the bare transaction, at 1, 8 and 32.
    redemption::redemption_figures(&args, &client, &store, &http, &base, &admin, &authority)
        .await?;
    billing_figures(&args, &store, &engine, &base, &http, &authority).await?;
    audit::audit_figures(&client, &tables, &authority, args.audit_changes).await?;
    webhooks::webhook_figures(args.webhook_delays, args.webhook_deliveries).await?;
    breakdown::redemption_breakdown(
        args.redemptions,
        engine.endpoint(),
        &client,
        &tables,
        &store,
        breakdown::Served {
            http: &http,
            base: &base,
            admin: &admin,
            authority: &authority,
        },
    )
    .await?;
    conflicts::conflict_figures(&client, &tables, &authority).await?;
    let lambda = lambda_figures(&args, &store, engine.endpoint(), &base, &http).await;
    drop(server);
    lambda?;
    drop(engine);
    export_figures(&args).await?;
    memory::memory_figures(&args.server()?).await?;
    scale::scale_figures(args.scale_hold_ms, args.scale_seed);
    out!(
        "\nThe whole run took {:.0} s. Reproduce: `cargo build --release -p pool-admin -p key-generation -p redemption -p billing -p export -p keypool-local -p keypool-bench && target/release/keypool-bench --out docs/performance.md`.",
        run_started.elapsed().as_secs_f64()
    );
    write_report(&args)
}

fn write_report(args: &Args) -> anyhow::Result<()> {
    if let Some(path) = &args.out {
        let report = REPORT.lock().map(|r| r.clone()).unwrap_or_default();
        std::fs::write(path, report).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
