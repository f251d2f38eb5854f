//! `keypool-local bench`: figures for this machine, each next to the bare store operation
//! it is built on, so that our own overhead shows as a ratio.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use keypool::billing::{self, InvoiceLine, Month};
use keypool::embedded::EmbeddedEngine;
use keypool::http::{AppState, Authenticator, app};
use keypool::identity::{OrgId, Role, TokenAuthority, UserId};
use keypool::schema::{self, Tables};
use keypool::store::{DynamoStore, Store};
use keypool::time::SystemClock;
use serde_json::{Value, json};
use tokio::sync::Mutex;

/// The report: printed as it is measured, and kept for `--out`.
static REPORT: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

/// Prints a line of the report and keeps it.
macro_rules! out {
    ($($arg:tt)*) => {{
        let line = format!($($arg)*);
        println!("{line}");
        if let Ok(mut report) = REPORT.lock() {
            report.push_str(&line);
            report.push('\n');
        }
    }};
}

/// What to measure, and how much.
#[derive(clap::Args)]
pub struct Args {
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
    /// Also write the report (Markdown) to this file.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    /// Keys in the pool whose export is timed (also at a tenth of it); 0 skips it.
    #[arg(long, default_value_t = 1_000_000)]
    export_keys: usize,
    /// Where the functions' release binaries are (`cargo build --release -p …`).
    #[arg(long, default_value = "target/release")]
    functions: std::path::PathBuf,
    /// Cold starts per function.
    #[arg(long, default_value_t = 10)]
    starts: usize,
}

struct Stats {
    p50: Duration,
    p99: Duration,
    per_sec: f64,
}

fn stats(mut latencies: Vec<Duration>, wall: Duration) -> Stats {
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Stats {
        p50: at(0.50),
        p99: at(0.99),
        per_sec: latencies.len() as f64 / wall.as_secs_f64(),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let run_started = Instant::now();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    out!(
        "# KeyPool bench — {} — {cores} cores, embedded engine (dynoxide, in memory)\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    );

    // 1. Generation in the domain, one core.
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

    // 2. Keys stored: our insert path vs bare TransactWriteItems of the same shape.
    let engine = EmbeddedEngine::memory()?;
    let client = keypool::setup::local_client(engine.endpoint());
    let tables = Tables::default();
    schema::ensure_tables(&client, &tables).await?;
    let store = Arc::new(DynamoStore::new(client.clone(), tables.clone()));
    let authority = TokenAuthority::new(&[42u8; 32]);
    let state = AppState::new(
        store.clone(),
        Authenticator::Local(Box::new(authority.clone())),
        Arc::new(SystemClock),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, app(state)).await });
    let http = reqwest::Client::new();
    let org = OrgId::parse("bench").map_err(anyhow::Error::msg)?;
    let admin = authority.mint(
        &UserId::parse("bench-admin").map_err(anyhow::Error::msg)?,
        Some(&org),
        Role::Admin,
        chrono::Duration::hours(4),
    )?;

    let pool_id = make_pool(&http, &base, &admin).await?;
    let started = Instant::now();
    let mut stored = 0;
    while stored < args.store_keys {
        let n = (args.store_keys - stored).min(10_000);
        post(
            &http,
            &base,
            &admin,
            &format!("/v1/pools/{pool_id}/keys/generate"),
            json!({ "count": n }),
            201,
        )
        .await?;
        stored += n;
    }
    let ours = stored as f64 / started.elapsed().as_secs_f64();
    let bare = bare_key_writes(&client, &tables, args.store_keys).await?;
    out!(
        "| keys stored (generate via API, 99 per transaction) | {ours:.0}/s | {bare:.0}/s | {:.2} |",
        ours / bare
    );

    // 3. Redemption through the HTTP server vs the bare transaction, at 1, 8 and 32.
    for concurrency in [1usize, 8, 32] {
        let n = args.redemptions;
        let pool_id = make_pool(&http, &base, &admin).await?;
        let mut keys = Vec::with_capacity(n);
        while keys.len() < n {
            let count = (n - keys.len()).min(10_000);
            let reply = post(
                &http,
                &base,
                &admin,
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
            let base = base.clone();
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
        let bare = bare_redemptions(&client, &tables, n, concurrency).await?;
        out!(
            "| redemption p50 / p99 at {concurrency} learners | {} / {} | {} / {} | {:.2} (p50) |",
            ms(ours.p50),
            ms(ours.p99),
            ms(bare.p50),
            ms(bare.p99),
            ours.p50.as_secs_f64() / bare.p50.as_secs_f64()
        );
        out!(
            "| redemptions per second at {concurrency} learners | {:.0}/s | {:.0}/s | {:.2} |",
            ours.per_sec,
            bare.per_sec,
            ours.per_sec / bare.per_sec
        );
    }
    billing_figures(&args, &store, &engine, &base, &http, &authority).await?;
    let lambda = lambda_figures(&args, &store, engine.endpoint(), &base, &http).await;
    server.abort();
    lambda?;
    drop(engine);
    export_figures(&args).await?;
    out!(
        "\nThe whole run took {:.0} s. Reproduce: `cargo build --release -p pool-admin -p key-generation -p redemption -p billing -p export -p keypool-local && target/release/keypool-local bench --out docs/performance.md`.",
        run_started.elapsed().as_secs_f64()
    );
    if let Some(path) = &args.out {
        let report = REPORT.lock().map(|r| r.clone()).unwrap_or_default();
        std::fs::write(path, report).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

const FUNCTIONS: [&str; 5] = [
    "pool-admin",
    "key-generation",
    "redemption",
    "billing",
    "export",
];

/// The event each function gets for its cold start: one that reaches the store where the
/// function has a store path.
fn cold_start_event(function: &str, pool_id: &str) -> String {
    let fixture = |text: &str| text.replace("{{pool_id}}", pool_id);
    match function {
        "pool-admin" => fixture(include_str!(
            "../../../tests/fixtures/apigw/get-pool-admin.json"
        )),
        "key-generation" => fixture(include_str!(
            "../../../tests/fixtures/apigw/generate-keys-admin.json"
        )),
        "redemption" => fixture(include_str!(
            "../../../tests/fixtures/apigw/my-assignments-learner.json"
        )),
        "export" => include_str!("../../../tests/fixtures/apigw/my-assignments-learner.json")
            .replace("/v1/me/assignments", "/healthz"),
        _ => include_str!("../../../tests/fixtures/dynamodb-stream/insert-assignment.json")
            .to_string(),
    }
}

/// Each function's release binary: size, zipped size, and cold start through the Runtime API.
async fn lambda_figures(
    args: &Args,
    store: &DynamoStore,
    endpoint: &str,
    base: &str,
    http: &reqwest::Client,
) -> anyhow::Result<()> {
    use keypool_runtime_api::{Outcome, RuntimeApi, cold_start, lambda_env};
    // The functions must find this pool under the fixtures' organization, `acme`.
    let acme_admin = {
        TokenAuthority::new(&[42u8; 32]).mint(
            &UserId::parse("bench-acme").map_err(anyhow::Error::msg)?,
            Some(&OrgId::parse("acme").map_err(anyhow::Error::msg)?),
            Role::Admin,
            chrono::Duration::hours(1),
        )?
    };
    let pool_id = make_pool(http, base, &acme_admin).await?;
    out!(
        "\n| function | binary | zip (deflate -9) | cold start p50 / max of {} | goal |",
        args.starts
    );
    out!("|---|---|---|---|---|");
    for function in FUNCTIONS {
        let binary = args.functions.join(function);
        let Ok(meta) = std::fs::metadata(&binary) else {
            out!("| {function} | not built: run `cargo build --release -p {function}` | | | |");
            continue;
        };
        let zipped = std::process::Command::new("gzip")
            .arg("-9c")
            .arg(&binary)
            .output()
            .map(|o| o.stdout.len() as f64 / 1e6)
            .ok();
        let runtime = RuntimeApi::start().await?;
        let mut env = lambda_env(&runtime, function, endpoint);
        env.push(("MAIN_TABLE".into(), store.tables().main.clone()));
        env.push((
            "ASSIGNMENTS_TABLE".into(),
            store.tables().assignments.clone(),
        ));
        // The export function's bucket and queue; its cold-start request touches neither.
        env.push(("EXPORT_BUCKET".into(), "keypool-bench".into()));
        env.push((
            "JOBS_QUEUE_URL".into(),
            "http://127.0.0.1:9/000000000000/keypool-bench".into(),
        ));
        let event: Value = serde_json::from_str(&cold_start_event(function, &pool_id))?;
        let mut times = Vec::new();
        for _ in 0..args.starts {
            let (elapsed, outcome) = cold_start(&binary, &env, &runtime, event.clone()).await?;
            if let Outcome::Error(e) = &outcome {
                anyhow::bail!("{function} failed its cold-start event: {e}");
            }
            times.push(elapsed);
        }
        times.sort();
        out!(
            "| {function} | {:.1} MB | {} | {} / {} | init < 60 ms, zip < 10 MB |",
            meta.len() as f64 / 1e6,
            zipped.map_or("—".into(), |z| format!("{z:.1} MB")),
            ms(times[times.len() / 2]),
            ms(times[times.len() - 1]),
        );
    }
    Ok(())
}

async fn post(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    path: &str,
    body: Value,
    want: u16,
) -> anyhow::Result<Value> {
    let r = http
        .post(format!("{base}{path}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await?;
    let status = r.status().as_u16();
    let value: Value = r.json().await?;
    anyhow::ensure!(
        status == want,
        "{path} answered {status}: {:.300}",
        value.to_string()
    );
    Ok(value)
}

async fn make_pool(http: &reqwest::Client, base: &str, admin: &str) -> anyhow::Result<String> {
    let course = post(
        http,
        base,
        admin,
        "/v1/courses",
        json!({ "title": "Bench course" }),
        201,
    )
    .await?;
    let now = chrono::Utc::now();
    let pool = post(
        http,
        base,
        admin,
        "/v1/pools",
        json!({
            "name": "Bench pool",
            "course_id": course["course_id"],
            "starts_at": keypool::time::format(&(now - chrono::Duration::hours(1))),
            "expires_at": keypool::time::format(&(now + chrono::Duration::days(1))),
            "content_availability_days": 30,
        }),
        201,
    )
    .await?;
    pool["pool_id"]
        .as_str()
        .map(str::to_string)
        .context("pool id")
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

struct HashMapKey(std::collections::HashMap<String, AttributeValue>);

impl HashMapKey {
    fn new(pk: &str, sk: &str) -> Self {
        Self(std::collections::HashMap::from([
            ("PK".to_string(), s(pk)),
            ("SK".to_string(), s(sk)),
        ]))
    }
}

/// The redemption transaction's shape, bare: key update, pool update, assignment, guard and
/// pointer puts.
async fn bare_redemptions(
    client: &Client,
    tables: &Tables,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<Stats> {
    let pool = HashMapKey::new("ORG#bare", &format!("POOL#{concurrency}"));
    client
        .put_item()
        .table_name(&tables.main)
        .set_item(Some(pool.0.clone()))
        .item("redeemed_count", AttributeValue::N("0".into()))
        .send()
        .await?;
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
        let pool = pool.0.clone();
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
                                .set_key(Some(pool.clone()))
                                .update_expression("ADD redeemed_count :one")
                                .condition_expression("attribute_exists(PK)")
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

/// Billing: lines written by the handler from batches of 100 stream records, next to bare
/// conditional puts of the same lines; and the delay from a redemption's answer to its invoice
/// line through the local server's stream follower.
async fn billing_figures(
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
            let a = keypool::redemption::Assignment {
                assignment_id: keypool::pools::AssignmentId::new(),
                learner: UserId::parse(&format!("billed-{i}")).map_err(anyhow::Error::msg)?,
                org: org.clone(),
                pool_id: keypool::pools::PoolId::new(),
                course_id: keypool::pools::CourseId::new(),
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
        let response = billing::bill(store.as_ref(), &event).await?;
        anyhow::ensure!(
            response.batch_item_failures.is_empty(),
            "billing failed a record"
        );
    }
    let ours = records.len() as f64 / started.elapsed().as_secs_f64();
    let lines: Vec<InvoiceLine> = records
        .iter()
        .filter_map(|r| billing::line_of(r).ok().flatten())
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
        "| invoice lines billed (batches of 100 stream records; line + month totals in one transaction) | {ours:.0}/s | {bare:.0}/s (conditional PutItem of the line alone) | {:.2} |",
        ours / bare
    );

    // The delay: the local server's follower (same poll interval as `serve`) against redemptions
    // at a steady pace; a watcher reads the invoice every 5 ms.
    let follower = billing::follower::StreamFollower::new(
        client.clone(),
        keypool::setup::local_streams_client(engine.endpoint()),
        store.clone() as Arc<dyn Store>,
        store.tables().assignments.clone(),
    );
    // Bill what earlier steps left on the stream, so the delays measured are of new records.
    follower.drain().await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let following = tokio::spawn(follower.run(billing::follower::DEFAULT_POLL, async move {
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
        billing::follower::DEFAULT_POLL.as_millis(),
        ms(delay.p50),
        ms(delay.p99)
    );
    Ok(())
}

/// A `keypool-local serve` child process over an engine of the bench's, so that its memory
/// is the server's alone.
struct Child {
    process: tokio::process::Child,
    base: String,
}

impl Child {
    async fn start(engine: &EmbeddedEngine, data_dir: &std::path::Path) -> anyhow::Result<Self> {
        use tokio::io::AsyncBufReadExt as _;
        let mut process = tokio::process::Command::new(std::env::current_exe()?)
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
    fn reset_peak(&self) -> anyhow::Result<()> {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid()?), "5")?;
        Ok(())
    }

    /// Peak resident memory since the last reset, in MiB.
    fn peak_mib(&self) -> anyhow::Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?))?;
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("VmHWM in /proc/PID/status")?;
        Ok(kb / 1024.0)
    }
}

/// Export of a pool of 10^5 and 10^6 keys by a server process: time and the process's peak
/// memory during the export, next to a bare paged Query of the same keys.
async fn export_figures(args: &Args) -> anyhow::Result<()> {
    if args.export_keys == 0 {
        return Ok(());
    }
    let engine = EmbeddedEngine::memory()?;
    let client = keypool::setup::local_client(engine.endpoint());
    schema::ensure_tables(&client, &Tables::default()).await?;
    let data_dir = std::env::temp_dir().join(format!("keypool-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    std::fs::create_dir_all(&data_dir)?;
    let server = Child::start(&engine, &data_dir).await?;
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
