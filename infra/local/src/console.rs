//! The web console (admin pages at `/`, the learner's redeem page at `/redeem`) and the demo
//! sign-in that only this server offers, and only when started with `serve --demo`: anyone who
//! reaches the port can use it, so it signs in the demo organization's demo users and no one
//! else.
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
use keypool::domain::{AuditAction, Caller, Resource, Summary};
use keypool::error::{Error, ErrorCode, Missing};
use keypool::http::ClientAddress;
use keypool::identity::{OrgId, Role, TokenAuthority, UserId};
use keypool::store::AuditLog;
use serde::Deserialize;
use serde_json::json;

/// The demo organization of the local sign-in.
pub const DEMO_ORG: &str = "demo-org";

/// The roles the demo sign-in hands out; the default user of each is its first in `DEMO_USERS`.
const DEMO_ROLES: &[Role] = &[Role::Admin, Role::Viewer, Role::Finance, Role::Learner];

/// The demo organization's users, the only ones the demo sign-in signs in: one of each staff
/// role, and a few learners so that a demo can show one learner meeting another's key.
const DEMO_USERS: &[(&str, Role)] = &[
    ("demo-admin", Role::Admin),
    ("demo-viewer", Role::Viewer),
    ("demo-finance", Role::Finance),
    ("demo-learner", Role::Learner),
    ("demo-learner-2", Role::Learner),
    ("demo-learner-3", Role::Learner),
    ("demo-learner-4", Role::Learner),
    ("demo-learner-5", Role::Learner),
];

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
    "js/charts.js",
    "js/courses.js",
    "js/webhooks.js",
    "js/activity.js",
    "js/redeem.js",
    "js/signin.js",
    "favicon.svg",
];

/// Where the console's files come from, and the demo sign-in if it is on.
#[derive(Clone)]
pub struct Console {
    dir: Option<PathBuf>,
    /// The demo sign-in; `None` when it is off.
    demo: Option<DemoSignIn>,
}

/// What the demo sign-in needs: the authority that signs the demo users' tokens, and the
/// audit that records each sign-in.
#[derive(Clone)]
pub struct DemoSignIn {
    pub authority: Arc<TokenAuthority>,
    pub audit: Arc<dyn AuditLog>,
}

impl Console {
    /// The embedded files, or those of `KEYPOOL_CONSOLE_DIR` when it is set; the demo sign-in
    /// when `demo` is given.
    pub fn from_env(demo: Option<DemoSignIn>) -> Self {
        Self {
            dir: std::env::var_os("KEYPOOL_CONSOLE_DIR").map(PathBuf::from),
            demo,
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

/// The console's routes, and `POST /local/session` when the demo sign-in is on (without it
/// the path is no route at all, and answers 404 like any other).
pub fn routes(console: Console) -> Router {
    let router = Router::new()
        .route("/", get(|s| page(s, "index.html")))
        .route("/index.html", get(|s| page(s, "index.html")))
        .route("/redeem", get(|s| page(s, "redeem.html")))
        .route("/favicon.ico", get(|s| page(s, "favicon.svg")))
        .route("/console/config.json", get(config))
        .route("/console/{*path}", get(asset));
    let router = match console.demo {
        Some(_) => router.route("/local/session", post(session)),
        None => router,
    };
    router.with_state(console)
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

/// The console's settings: here, tokens of this server rather than an OIDC provider's, and
/// whether it offers the demo sign-in.
async fn config(State(console): State<Console>) -> Response {
    with_headers(
        Json(json!({ "mode": "local", "api": "", "demo": console.demo.is_some() })).into_response(),
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
    /// Another demo user of the role than its first, e.g. a second learner.
    sub: Option<String>,
}

/// `POST /local/session {"role": "admin"|"learner", "sub"?}` (with `serve --demo` only): a
/// token for one of the demo organization's `DEMO_USERS`, as `keypool-local token` prints one.
async fn session(
    State(console): State<Console>,
    ClientAddress(address): ClientAddress,
    body: Result<Json<SessionBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, Error> {
    let Some(DemoSignIn { authority, audit }) = console.demo else {
        return Err(Error::NotFound(Missing::Route));
    };
    let Json(body) = body.map_err(|e| Error::refused(ErrorCode::InvalidBody, e.body_text()))?;
    let role = DEMO_ROLES
        .iter()
        .copied()
        .find(|r| r.as_str() == body.role)
        .ok_or_else(|| {
            let roles: Vec<&str> = DEMO_ROLES.iter().map(|r| r.as_str()).collect();
            Error::field("role", format!("role is one of: {}", roles.join(", ")))
        })?;
    let users: Vec<&str> = DEMO_USERS
        .iter()
        .filter(|(_, r)| *r == role)
        .map(|(sub, _)| *sub)
        .collect();
    let sub = match body.sub.as_deref() {
        None => users.first().copied(),
        Some(asked) => users.iter().copied().find(|sub| *sub == asked),
    }
    .ok_or_else(|| {
        Error::field(
            "sub",
            format!(
                "the demo sign-in signs in only the demo {}s: {}",
                role.as_str(),
                users.join(", ")
            ),
        )
    })?;
    let sub = UserId::parse(sub).map_err(anyhow::Error::msg)?;
    let org = OrgId::parse(DEMO_ORG).map_err(anyhow::Error::msg)?;
    let token = authority.mint(&sub, Some(&org), role, chrono::Duration::hours(12))?;
    // The sign-in is recorded before the token is handed out: none without its record.
    let mut caller = Caller::new(org, sub.as_str(), role);
    caller.request_id = Some(uuid::Uuid::now_v7().to_string());
    caller.client_address = address.map(|a| a.to_string());
    let now = chrono::Utc::now();
    let record = caller.record(
        AuditAction::ConsoleSignedIn,
        Resource::new("console", "local"),
        Summary::new().with("method", "demo"),
        now,
    );
    audit.record_audit(&record).await?;
    let mut response = (
        StatusCode::CREATED,
        Json(json!({
            "token": token,
            "role": role.as_str(),
            "sub": sub.as_str(),
            "org": DEMO_ORG,
        })),
    )
        .into_response();
    // A token is a credential: no cache keeps it.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::{DEMO_ROLES, DEMO_USERS, FILES};
    use keypool::identity::UserId;

    /// A file added to `infra/console/` but not named in `FILES` is a 404 that only the
    /// browser would notice (a module that fails to load stops the whole console).
    #[test]
    fn every_file_of_the_console_folder_is_served() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../console");
        let mut folders = vec![root.clone()];
        while let Some(folder) = folders.pop() {
            for entry in std::fs::read_dir(&folder).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    folders.push(path);
                    continue;
                }
                let name = path.strip_prefix(&root).unwrap().to_str().unwrap();
                assert!(
                    FILES.iter().any(|(n, _)| *n == name),
                    "infra/console/{name} is not in console::FILES"
                );
            }
        }
    }

    #[test]
    fn every_demo_role_has_a_default_user_and_every_demo_user_a_valid_id() {
        for role in DEMO_ROLES {
            assert!(DEMO_USERS.iter().any(|(_, r)| r == role), "{role:?}");
        }
        for (sub, role) in DEMO_USERS {
            assert!(UserId::parse(sub).is_ok(), "{sub}");
            assert!(DEMO_ROLES.contains(role), "{sub}");
        }
    }
}
