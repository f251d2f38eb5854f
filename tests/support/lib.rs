//! A fresh world per test: its own in-memory DynamoDB engine on its own port, the tables,
//! the store, a clock the test moves, and the whole API router.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use keypool::embedded::EmbeddedEngine;
use keypool::http::{AppState, Authenticator, app};
use keypool::identity::{OrgId, Role, TokenAuthority, UserId};
use keypool::schema::{self, Tables};
use keypool::store::{DynamoStore, Store};
use keypool::time::{Clock, ManualClock, Timestamp};
use serde_json::{Value, json};
use tower::ServiceExt;

/// One test's private world.
pub struct World {
    pub store: Arc<DynamoStore>,
    pub clock: ManualClock,
    pub authority: TokenAuthority,
    pub app: Router,
    // Last, so the engine outlives the client that talks to it.
    _engine: EmbeddedEngine,
}

/// A response, decoded.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub headers: HeaderMap,
}

impl Reply {
    /// The error code of an error body.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("<none>")
    }
}

impl World {
    /// A new world over a new in-memory engine.
    pub async fn new() -> Self {
        let engine = EmbeddedEngine::memory().expect("engine starts");
        let client = keypool::setup::local_client(engine.endpoint());
        let tables = Tables::default();
        schema::ensure_tables(&client, &tables)
            .await
            .expect("tables are created");
        let store = Arc::new(DynamoStore::new(client, tables));
        let clock = ManualClock::new(chrono::Utc::now());
        let authority = TokenAuthority::new(b"test-secret-test-secret-test-secret!");
        let state = AppState {
            store: store.clone(),
            auth: Arc::new(Authenticator::Local(authority.clone())),
            clock: Arc::new(clock.clone()),
        };
        Self {
            store,
            clock,
            authority,
            app: app(state),
            _engine: engine,
        }
    }

    /// The store as the domain sees it.
    pub fn dyn_store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// The world's current time.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// A token for an admin of `org`.
    pub fn admin(&self, org: &str) -> String {
        self.authority
            .mint(
                &UserId::parse(&format!("admin-of-{org}")).unwrap(),
                Some(&OrgId::parse(org).unwrap()),
                Role::Admin,
                chrono::Duration::hours(1),
            )
            .unwrap()
    }

    /// A token for a learner.
    pub fn learner(&self, sub: &str) -> String {
        self.authority
            .mint(
                &UserId::parse(sub).unwrap(),
                Some(&OrgId::parse("learners").unwrap()),
                Role::Learner,
                chrono::Duration::hours(1),
            )
            .unwrap()
    }

    /// Sends a request with an optional JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        match body {
            Some(b) => {
                self.raw(
                    method,
                    path,
                    token,
                    Some("application/json"),
                    b.to_string().into_bytes(),
                )
                .await
            }
            None => self.raw(method, path, token, None, Vec::new()).await,
        }
    }

    /// Sends a request with any body and content type.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Reply {
        send(&self.app, method, path, token, content_type, body).await
    }

    /// Creates a course and an active pool (started an hour ago, 30 days to go) for `org`.
    pub async fn pool(&self, org: &str, days: u32) -> (String, String) {
        let admin = self.admin(org);
        let course = self
            .call(
                Method::POST,
                "/v1/courses",
                Some(&admin),
                Some(json!({"title": "Rust 101"})),
            )
            .await;
        assert_eq!(course.status, StatusCode::CREATED, "{:?}", course.body);
        let course_id = course.body["course_id"].as_str().unwrap().to_string();
        let now = self.now();
        let pool = self
            .call(
                Method::POST,
                "/v1/pools",
                Some(&admin),
                Some(json!({
                    "name": "Spring cohort",
                    "course_id": course_id,
                    "starts_at": keypool::time::format(&(now - chrono::Duration::hours(1))),
                    "expires_at": keypool::time::format(&(now + chrono::Duration::days(30))),
                    "content_availability_days": days,
                })),
            )
            .await;
        assert_eq!(pool.status, StatusCode::CREATED, "{:?}", pool.body);
        (
            course_id,
            pool.body["pool_id"].as_str().unwrap().to_string(),
        )
    }

    /// Generates `count` keys into a pool and returns them as shown.
    pub async fn generate(&self, org: &str, pool_id: &str, count: usize) -> Vec<String> {
        let reply = self
            .call(
                Method::POST,
                &format!("/v1/pools/{pool_id}/keys/generate"),
                Some(&self.admin(org)),
                Some(json!({ "count": count })),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
        reply.body["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().to_string())
            .collect()
    }
}

/// Sends one request through a router.
pub async fn send(
    app: &Router,
    method: Method,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Reply {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    if let Some(ct) = content_type {
        req = req.header(header::CONTENT_TYPE, ct);
    }
    let response = app
        .clone()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    Reply {
        status,
        body,
        headers,
    }
}
