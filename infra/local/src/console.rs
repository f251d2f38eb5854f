//! The web console (admin pages at `/`, the learner's redeem page at `/redeem`) and the local
//! sign-in that only this server offers.
//!
//! The files live in `infra/console/` and are compiled into the binary, so `serve` needs
//! nothing else; with `KEYPOOL_CONSOLE_DIR` set they are read from that folder on each request
//! instead, to iterate on them without rebuilding. Only the files named here are served, from
//! either source, so no request path reaches the file system.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use keypool::error::{Error, ErrorCode, Missing};
use keypool::identity::{OrgId, Role, TokenAuthority, UserId};
use serde::Deserialize;
use serde_json::json;

/// The demo organization of the local sign-in.
pub const DEMO_ORG: &str = "demo-org";
/// The user the local sign-in makes when no `sub` is asked for, per role.
const DEMO_ADMIN: &str = "demo-admin";
const DEMO_LEARNER: &str = "demo-learner";

/// Scripts and styles only from this origin, no inline script, no framing.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

macro_rules! files {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_bytes!(concat!("../../console/", $name)) as &[u8])),*]
    };
}

/// Every file of the console, by its path under `infra/console/`.
const FILES: &[(&str, &[u8])] = files![
    "index.html",
    "redeem.html",
    "css/console.css",
    "js/api.js",
    "js/app.js",
    "js/dom.js",
    "js/pools.js",
    "js/pool.js",
    "js/billing.js",
    "js/redeem.js",
    "js/signin.js",
    "favicon.svg",
];

/// Where the console's files come from.
#[derive(Clone)]
pub struct Console {
    dir: Option<PathBuf>,
    authority: Arc<TokenAuthority>,
}

impl Console {
    /// The embedded files, or those of `KEYPOOL_CONSOLE_DIR` when it is set.
    pub fn from_env(authority: TokenAuthority) -> Self {
        Self {
            dir: std::env::var_os("KEYPOOL_CONSOLE_DIR").map(PathBuf::from),
            authority: Arc::new(authority),
        }
    }

    async fn file(&self, name: &str) -> Option<Vec<u8>> {
        let (name, embedded) = FILES.iter().find(|(n, _)| *n == name)?;
        match &self.dir {
            Some(dir) => tokio::fs::read(dir.join(name)).await.ok(),
            None => Some(embedded.to_vec()),
        }
    }
}

/// The console's routes and `POST /local/session`.
pub fn routes(console: Console) -> Router {
    Router::new()
        .route("/", get(|s| page(s, "index.html")))
        .route("/index.html", get(|s| page(s, "index.html")))
        .route("/redeem", get(|s| page(s, "redeem.html")))
        .route("/favicon.ico", get(|s| page(s, "favicon.svg")))
        .route("/console/config.json", get(config))
        .route("/console/{*path}", get(asset))
        .route("/local/session", post(session))
        .with_state(console)
}

async fn page(State(console): State<Console>, name: &'static str) -> Response {
    serve_file(&console, name).await
}

async fn asset(State(console): State<Console>, Path(path): Path<String>) -> Response {
    serve_file(&console, &path).await
}

async fn serve_file(console: &Console, name: &str) -> Response {
    match console.file(name).await {
        Some(bytes) => with_headers(bytes.into_response(), content_type(name)),
        None => Error::NotFound(Missing::File).into_response(),
    }
}

/// The console's settings: here, sign in through this server rather than an OIDC provider.
async fn config() -> Response {
    with_headers(
        Json(json!({ "mode": "local", "api": "" })).into_response(),
        "application/json",
    )
}

fn with_headers(mut response: Response, content_type: &'static str) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // Always revalidate, so a rebuilt server never runs yesterday's scripts.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionBody {
    role: String,
    /// Another demo user than the default one, e.g. a second learner.
    sub: Option<String>,
}

/// `POST /local/session {"role": "admin"|"learner", "sub"?}`: a token for the demo
/// organization, as `keypool-local token` prints one. Only this server has the route.
async fn session(
    State(console): State<Console>,
    body: Result<Json<SessionBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, Error> {
    let Json(body) = body.map_err(|e| Error::refused(ErrorCode::InvalidBody, e.body_text()))?;
    let (role, default_sub) = match body.role.as_str() {
        "admin" => (Role::Admin, DEMO_ADMIN),
        "learner" => (Role::Learner, DEMO_LEARNER),
        _ => return Err(Error::field("role", "role is admin or learner")),
    };
    let sub = UserId::parse(body.sub.as_deref().unwrap_or(default_sub))
        .map_err(|m| Error::field("sub", m))?;
    let org = OrgId::parse(DEMO_ORG).map_err(anyhow::Error::msg)?;
    let token = console
        .authority
        .mint(&sub, Some(&org), role, chrono::Duration::hours(12))?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "token": token,
            "role": role.as_str(),
            "sub": sub.as_str(),
            "org": DEMO_ORG,
        })),
    )
        .into_response())
}
