//! The bench's calls to the API over HTTP.

use anyhow::Context as _;
use serde_json::{Value, json};

pub(super) async fn post(
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

pub(super) async fn make_pool(
    http: &reqwest::Client,
    base: &str,
    admin: &str,
) -> anyhow::Result<String> {
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
