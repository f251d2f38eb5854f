//! Who may use each route: the one place where roles are decided.
//!
//! Every route of every function is declared here with the roles it admits. A layer on each
//! function's router (`guard`) finds the route a request matched, verifies its token, and
//! refuses any other role with 403 `forbidden_role` before the handler runs; the handler then
//! takes the caller from the request. A route missing here is refused to everyone, the
//! OpenAPI document lists each route's roles (`x-roles`) from this same table, and a test
//! walks every route of the document with every role.

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts, MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Authenticator;
use crate::identity::{Principal, Role};

/// Who may use a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token needed.
    Anyone,
    /// A token of one of these roles.
    Roles(&'static [Role]),
}

/// An organization's administrators: changes, exports and downloads of keys.
pub const ADMIN: Access = Access::Roles(&[Role::Admin]);
/// Who reads an organization's pools, keys and exports' status.
pub const READERS: Access = Access::Roles(&[Role::Admin, Role::Viewer]);
/// Who reads an organization's invoices and activity.
pub const ACCOUNTS: Access = Access::Roles(&[Role::Admin, Role::Viewer, Role::Finance]);
/// Learners, for their own keys and assignments.
pub const LEARNER: Access = Access::Roles(&[Role::Learner]);

/// Every route (method and path as the router and the OpenAPI document write it) and who may
/// use it.
pub const ROUTES: &[(&str, &str, Access)] = &[
    ("GET", "/healthz", Access::Anyone),
    ("GET", "/v1/openapi.json", Access::Anyone),
    ("GET", "/.well-known/jwks.json", Access::Anyone),
    // The link in the query is the permission (the local server's stand-in for S3's
    // presigned URLs), handed out only to those who may export.
    ("GET", "/v1/files", Access::Anyone),
    // Queue batches and the schedule, through lambda_http's pass-through only (the route
    // refuses real HTTP requests).
    ("POST", "/events", Access::Anyone),
    ("POST", "/v1/courses", ADMIN),
    ("GET", "/v1/courses", READERS),
    ("PATCH", "/v1/courses/{course_id}", ADMIN),
    ("POST", "/v1/pools", ADMIN),
    ("GET", "/v1/pools", READERS),
    ("GET", "/v1/pools/{pool_id}", READERS),
    ("PATCH", "/v1/pools/{pool_id}", ADMIN),
    ("POST", "/v1/pools/{pool_id}/keys", ADMIN),
    ("GET", "/v1/pools/{pool_id}/keys", READERS),
    ("POST", "/v1/pools/{pool_id}/keys/generate", ADMIN),
    ("DELETE", "/v1/pools/{pool_id}/keys/{key}", ADMIN),
    ("GET", "/v1/pools/{pool_id}/stats", READERS),
    ("GET", "/v1/keys/{key}", READERS),
    ("GET", "/v1/jobs/{job_id}", READERS),
    ("POST", "/v1/pools/{pool_id}/exports", ADMIN),
    ("GET", "/v1/pools/{pool_id}/exports", READERS),
    // Readers see an export's status; only admins get its download link (`may_download`).
    ("GET", "/v1/exports/{export_id}", READERS),
    ("GET", "/v1/invoices/{month}", ACCOUNTS),
    // Beside the invoices, so whoever reads them: the counts, never a learner's identity.
    ("GET", "/v1/stats/redemptions", ACCOUNTS),
    // The audit log is read only: no route writes, edits or removes a record.
    ("GET", "/v1/audit", ACCOUNTS),
    ("GET", "/v1/audit.csv", ACCOUNTS),
    ("POST", "/v1/assignments/{assignment_id}/cancel", ADMIN),
    ("POST", "/v1/webhooks", ADMIN),
    ("GET", "/v1/webhooks", ADMIN),
    ("GET", "/v1/webhooks/{webhook_id}", ADMIN),
    ("PATCH", "/v1/webhooks/{webhook_id}", ADMIN),
    ("DELETE", "/v1/webhooks/{webhook_id}", ADMIN),
    ("POST", "/v1/webhooks/{webhook_id}/secret", ADMIN),
    ("POST", "/v1/webhooks/{webhook_id}/test", ADMIN),
    ("GET", "/v1/webhooks/{webhook_id}/deliveries", ADMIN),
    (
        "POST",
        "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/retry",
        ADMIN,
    ),
    ("POST", "/v1/redemptions", LEARNER),
    ("GET", "/v1/me/assignments", LEARNER),
    ("POST", "/v1/me/assignments/{assignment_id}/launch", LEARNER),
];

/// Who may use the route `method path`; `None` for a route not declared (refused).
pub fn access_of(method: &Method, path: &str) -> Option<Access> {
    ROUTES
        .iter()
        .find(|(m, p, _)| *m == method.as_str() && *p == path)
        .map(|(_, _, access)| *access)
}

/// Whether a caller may download keys (export links): admins only.
pub fn may_download(principal: &Principal) -> bool {
    principal.role == Role::Admin
}

/// The layer that enforces the table, before any handler: the caller is verified once and
/// handed to the handler in the request's extensions.
pub async fn guard<S>(
    axum::extract::State(state): axum::extract::State<S>,
    request: Request,
    next: Next,
) -> Response
where
    S: Clone + Send + Sync + 'static,
    Arc<Authenticator>: FromRef<S>,
{
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let Some(access) = path.as_deref().and_then(|p| access_of(request.method(), p)) else {
        tracing::error!(method = %request.method(), path = ?path, "a route with no access declared");
        return crate::error::Error::Internal(anyhow::anyhow!("a route with no access declared"))
            .into_response();
    };
    let Access::Roles(roles) = access else {
        return next.run(request).await;
    };
    let (mut parts, body) = request.into_parts();
    let principal = match Principal::from_request_parts(&mut parts, &state).await {
        Ok(principal) => principal,
        Err(e) => return e.into_response(),
    };
    if !roles.contains(&principal.role) {
        return principal.wrong_role(roles).into_response();
    }
    parts.extensions.insert(principal);
    next.run(Request::from_parts(parts, body)).await
}
