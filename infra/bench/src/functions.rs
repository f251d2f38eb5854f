//! The Lambda functions: release binary sizes, zipped sizes, cold starts through the Runtime API.

use keypool::identity::{OrgId, Role, TokenAuthority, UserId};
use keypool::store::DynamoStore;
use serde_json::Value;

use super::Args;
use super::api::make_pool;
use super::measure::ms;

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
pub(super) async fn lambda_figures(
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
        env.push(("AUDIT_TABLE".into(), store.tables().audit.clone()));
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
