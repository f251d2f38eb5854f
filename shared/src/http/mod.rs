//! The HTTP API: one router per function, merged by the local server, over shared state.

pub mod access;
mod admin;
mod audit;
pub mod error;
mod events;
mod exports;
pub use events::{export_event_routes, key_generation_event_routes};
pub use exports::local_files;
mod invoices;
mod learner;
pub mod openapi;
mod stats;
pub(crate) mod views;
mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::domain::MaxOpenJobs;
use crate::error::{Error, Missing};
use crate::identity::{Principal, TokenAuthority};
use crate::jobs::{Jobs, NoJobs};
use crate::launch::LaunchSigner;
use crate::objects::{NoObjects, ObjectStore};
use crate::ops::redeem::PoolCache;
use crate::settings::Settings;
use crate::store::{ExportStore, KeyGenerationStore, PoolAdminStore, RedemptionStore, Store};
use crate::time::Clock;

/// Largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Default page size of listings.
pub const DEFAULT_PAGE: usize = 100;
/// Largest page size of listings.
pub const MAX_PAGE: usize = 1000;

/// How requests prove who sends them.
#[derive(Debug, Clone)]
pub enum Authenticator {
    /// Bearer tokens signed by the local server's secret.
    Local(Box<TokenAuthority>),
    /// Claims that API Gateway's JWT authorizer verified, read from the request context.
    ApiGateway(ClaimNames),
}

/// Which JWT claims carry the organization and the role (Cognito, for one, prefixes custom
/// attributes with `custom:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimNames {
    pub org: String,
    pub role: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        Self {
            org: "org".into(),
            role: "role".into(),
        }
    }
}

impl ClaimNames {
    /// `ORG_CLAIM` and `ROLE_CLAIM`, defaulting to `org` and `role`.
    pub fn from_env() -> Self {
        let default = Self::default();
        Self {
            org: std::env::var("ORG_CLAIM").unwrap_or(default.org),
            role: std::env::var("ROLE_CLAIM").unwrap_or(default.role),
        }
    }
}

/// The principal from an API Gateway HTTP API request's JWT authorizer claims. API Gateway has
/// verified the token; a request without claims never passed an authorizer and is refused.
fn principal_from_context(parts: &Parts, names: &ClaimNames) -> Result<Principal, Error> {
    use lambda_http::request::RequestContext;
    let claims = match parts.extensions.get::<RequestContext>() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx
            .authorizer
            .as_ref()
            .and_then(|a| a.jwt.as_ref())
            .map(|jwt| &jwt.claims),
        _ => None,
    }
    .ok_or_else(|| Error::Unauthenticated("the request carries no verified token".into()))?;
    let claim = |name: &str| claims.get(name).map(String::as_str);
    let sub = claim("sub").ok_or_else(|| Error::Unauthenticated("the token has no sub".into()))?;
    let role = claim(&names.role)
        .ok_or_else(|| Error::Unauthenticated(format!("the token has no {} claim", names.role)))?;
    crate::identity::principal_from_claims(sub, claim(&names.org), role)
}

/// Makes each of a function's shared parts extractable from its state (`State<Arc<…>>`), and
/// the principal with it.
macro_rules! state_parts {
    ($state:ident { $($field:ident: $ty:ty),* $(,)? }) => {
        $(impl FromRef<$state> for $ty {
            fn from_ref(state: &$state) -> Self {
                state.$field.clone()
            }
        })*
    };
}

/// What webhooks' routes work with: the sender that checks an endpoint's URL as it would send
/// to it, and where new deliveries (a test, a redelivery) go to be sent.
#[derive(Clone)]
pub struct WebhookParts {
    pub sender: Arc<crate::webhooks::Sender>,
    pub deliveries: Arc<dyn crate::webhooks::DeliveryQueue>,
}

impl WebhookParts {
    /// Public targets only, and deliveries stored for a sender elsewhere.
    pub fn strict() -> anyhow::Result<Self> {
        Ok(Self {
            sender: Arc::new(crate::webhooks::Sender::new(
                Arc::new(crate::webhooks::SystemResolver),
                crate::webhooks::Reach::default(),
            )?),
            deliveries: Arc::new(crate::webhooks::Stored),
        })
    }
}

/// The pool-admin function's state: courses, pools, custom keys, listings, invoices and
/// cancellations, webhooks; long key lists go to the key-generation queue as import jobs.
#[derive(Clone)]
pub struct PoolAdminState {
    pub store: Arc<dyn PoolAdminStore>,
    pub auth: Arc<Authenticator>,
    pub clock: Arc<dyn Clock>,
    pub jobs: Arc<dyn Jobs>,
    pub settings: Arc<Settings>,
    /// The most open jobs one organization may have (`KEYPOOL_MAX_OPEN_JOBS`).
    pub max_open_jobs: MaxOpenJobs,
    pub webhooks: WebhookParts,
}
state_parts!(PoolAdminState { auth: Arc<Authenticator> });

/// The key-generation function's state: generations, job progress, and the jobs themselves.
#[derive(Clone)]
pub struct KeyGenerationState {
    pub store: Arc<dyn KeyGenerationStore>,
    pub auth: Arc<Authenticator>,
    pub clock: Arc<dyn Clock>,
    pub jobs: Arc<dyn Jobs>,
    /// The most open jobs one organization may have (`KEYPOOL_MAX_OPEN_JOBS`).
    pub max_open_jobs: MaxOpenJobs,
}
state_parts!(KeyGenerationState { auth: Arc<Authenticator> });

/// The redemption function's state: redeem, a learner's assignments, launches.
#[derive(Clone)]
pub struct RedemptionState {
    pub store: Arc<dyn RedemptionStore>,
    pub auth: Arc<Authenticator>,
    pub clock: Arc<dyn Clock>,
    /// Signs launch tokens and publishes their keys.
    pub launch: Arc<dyn LaunchSigner>,
    pub settings: Arc<Settings>,
    /// Pools' settings as this process last read them.
    pub pools: Arc<PoolCache>,
}
state_parts!(RedemptionState { auth: Arc<Authenticator> });

/// The export function's state: exports, their jobs and files, and the schedule.
#[derive(Clone)]
pub struct ExportState {
    pub store: Arc<dyn ExportStore>,
    pub auth: Arc<Authenticator>,
    pub clock: Arc<dyn Clock>,
    pub jobs: Arc<dyn Jobs>,
    /// The most open jobs one organization may have (`KEYPOOL_MAX_OPEN_JOBS`).
    pub max_open_jobs: MaxOpenJobs,
    pub objects: Arc<dyn ObjectStore>,
}
state_parts!(ExportState { auth: Arc<Authenticator> });

/// Every function's parts in one process, as the local server and the tests run them; each
/// function's state is cut from it and holds only what that function may touch.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub auth: Arc<Authenticator>,
    pub clock: Arc<dyn Clock>,
    /// Where background work goes (exports, large generations and imports).
    pub jobs: Arc<dyn Jobs>,
    /// Where export files go.
    pub objects: Arc<dyn ObjectStore>,
    /// Limits on guessing and probing.
    pub settings: Arc<Settings>,
    /// The most open jobs one organization may have (`KEYPOOL_MAX_OPEN_JOBS`).
    pub max_open_jobs: MaxOpenJobs,
    /// Signs launch tokens and publishes their keys.
    pub launch: Arc<dyn LaunchSigner>,
    /// Checks webhook targets, and takes deliveries to send.
    pub webhooks: WebhookParts,
    /// Sends letters (the local outbox, SMTP, SES), and the outbox when letters go there.
    pub mail: crate::mail::MailParts,
}

impl AppState {
    /// State without jobs or object storage, for runs that need neither; launch tokens are
    /// signed with a key made for this process.
    pub fn new(
        store: Arc<dyn Store>,
        auth: Authenticator,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        let key = crate::launch::LocalSigner::generate_key()?;
        Ok(Self {
            store,
            auth: Arc::new(auth),
            clock,
            jobs: Arc::new(NoJobs),
            objects: Arc::new(NoObjects),
            settings: Arc::new(Settings::default()),
            max_open_jobs: MaxOpenJobs::DEFAULT,
            launch: Arc::new(crate::launch::LocalSigner::new(
                "http://localhost",
                &[&key],
            )?),
            webhooks: WebhookParts::strict()?,
            mail: crate::mail::MailParts::none(),
        })
    }

    /// The pool-admin function's part.
    pub fn pool_admin(&self) -> PoolAdminState {
        PoolAdminState {
            store: self.store.clone(),
            auth: self.auth.clone(),
            clock: self.clock.clone(),
            jobs: self.jobs.clone(),
            settings: self.settings.clone(),
            max_open_jobs: self.max_open_jobs,
            webhooks: self.webhooks.clone(),
        }
    }

    /// The key-generation function's part.
    pub fn key_generation(&self) -> KeyGenerationState {
        KeyGenerationState {
            store: self.store.clone(),
            auth: self.auth.clone(),
            clock: self.clock.clone(),
            jobs: self.jobs.clone(),
            max_open_jobs: self.max_open_jobs,
        }
    }

    /// The redemption function's part.
    pub fn redemption(&self) -> RedemptionState {
        RedemptionState {
            store: self.store.clone(),
            auth: self.auth.clone(),
            clock: self.clock.clone(),
            settings: self.settings.clone(),
            pools: Arc::new(PoolCache::new()),
            launch: self.launch.clone(),
        }
    }

    /// The export function's part.
    pub fn export(&self) -> ExportState {
        ExportState {
            store: self.store.clone(),
            auth: self.auth.clone(),
            clock: self.clock.clone(),
            jobs: self.jobs.clone(),
            objects: self.objects.clone(),
            max_open_jobs: self.max_open_jobs,
        }
    }
}

impl<S> FromRequestParts<S> for Principal
where
    S: Send + Sync,
    Arc<Authenticator>: FromRef<S>,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        // Verified already by the route's access guard.
        if let Some(principal) = parts.extensions.get::<Principal>() {
            return Ok(principal.clone());
        }
        let auth = Arc::<Authenticator>::from_ref(state);
        let authority = match auth.as_ref() {
            Authenticator::ApiGateway(names) => return principal_from_context(parts, names),
            Authenticator::Local(authority) => authority,
        };
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| Error::Unauthenticated("send Authorization: Bearer <token>".into()))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::Unauthenticated("send Authorization: Bearer <token>".into()))?;
        authority.verify(token)
    }
}

/// The address a request came from: the source IP that API Gateway saw, or the peer of the
/// local server's connection. Never a header a client could set (X-Forwarded-For).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        use lambda_http::request::RequestContext;
        let from_gateway = match parts.extensions.get::<RequestContext>() {
            Some(RequestContext::ApiGatewayV2(ctx)) => ctx.http.source_ip.as_deref(),
            _ => None,
        }
        .and_then(|ip| ip.parse().ok());
        let from_peer = || {
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|info| info.0.ip())
        };
        Ok(Self(from_gateway.or_else(from_peer)))
    }
}

/// Who makes a change, for its audit record: the verified caller of a staff route with its
/// organization, the request's id (API Gateway's, or one made here) and the client address.
impl<S> FromRequestParts<S> for crate::domain::Caller
where
    S: Send + Sync,
    Arc<Authenticator>: FromRef<S>,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        use lambda_http::request::RequestContext;
        let principal = Principal::from_request_parts(parts, state).await?;
        let org = principal.org()?.clone();
        let ClientAddress(address) = match ClientAddress::from_request_parts(parts, state).await {
            Ok(address) => address,
            Err(never) => match never {},
        };
        let request_id = match parts.extensions.get::<RequestContext>() {
            Some(RequestContext::ApiGatewayV2(ctx)) => ctx.request_id.clone(),
            _ => None,
        }
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let mut caller = crate::domain::Caller::of(&principal, &org);
        caller.request_id = Some(request_id);
        caller.client_address = address.map(|a| a.to_string());
        Ok(caller)
    }
}

/// The pool-admin function's routes with their document.
fn pool_admin_router() -> OpenApiRouter<PoolAdminState> {
    admin::pool_admin_routes()
        .merge(invoices::routes())
        .merge(stats::routes())
        .merge(webhooks::routes())
        .merge(audit::routes())
}

/// Routes of the pool-admin function: courses, pools, custom keys, key listing and removal,
/// invoices and cancellations.
pub fn pool_admin_routes() -> Router<PoolAdminState> {
    pool_admin_router().split_for_parts().0
}

/// Routes of the key-generation function.
pub fn key_generation_routes() -> Router<KeyGenerationState> {
    admin::key_generation_routes().split_for_parts().0
}

/// Routes of the redemption function: redeem, my assignments, launch.
pub fn redemption_routes() -> Router<RedemptionState> {
    learner::routes().split_for_parts().0
}

/// Routes of the export function: start an export, read it.
pub fn export_routes() -> Router<ExportState> {
    exports::routes().split_for_parts().0
}

fn pool_admin_api() -> utoipa::openapi::OpenApi {
    pool_admin_router().into_openapi()
}

fn key_generation_api() -> utoipa::openapi::OpenApi {
    admin::key_generation_routes().into_openapi()
}

fn redemption_api() -> utoipa::openapi::OpenApi {
    learner::routes().into_openapi()
}

fn export_api() -> utoipa::openapi::OpenApi {
    exports::routes().into_openapi()
}

fn service_routes<S: Clone + Send + Sync + 'static>() -> OpenApiRouter<S> {
    OpenApiRouter::new()
        .routes(routes!(openapi::healthz))
        .routes(routes!(openapi::openapi))
}

fn service_api() -> utoipa::openapi::OpenApi {
    service_routes::<()>().into_openapi()
}

fn local_files_api() -> utoipa::openapi::OpenApi {
    exports::local_files_router().into_openapi()
}

/// Wraps a function's routes into a service: who may use each route (`access`), health
/// check, the OpenAPI document, JSON 404/405, body limit, no caching, request tracing.
pub fn service<S>(routes: Router<S>, state: S) -> Router
where
    S: Clone + Send + Sync + 'static,
    Arc<Authenticator>: FromRef<S>,
{
    finish(guarded(routes, state))
}

/// A function's routes over its state, each refused to the roles `access` does not admit.
fn guarded<S>(routes: Router<S>, state: S) -> Router
where
    S: Clone + Send + Sync + 'static,
    Arc<Authenticator>: FromRef<S>,
{
    routes
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access::guard::<S>,
        ))
        .with_state(state)
}

/// What every service adds around its routes.
fn finish(routes: Router) -> Router {
    routes
        .merge(service_routes::<()>().split_for_parts().0)
        .fallback(|| async { Error::NotFound(Missing::Route) })
        .method_not_allowed_fallback(|| async { error::method_not_allowed() })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(no_store())
        .layer(tower_http::trace::TraceLayer::new_for_http())
}

/// `Cache-Control: no-store` on every answer that does not say otherwise: the API's answers
/// carry keys, signed links and learners' identities, which no browser or proxy may keep.
pub fn no_store() -> tower_http::set_header::SetResponseHeaderLayer<axum::http::HeaderValue> {
    tower_http::set_header::SetResponseHeaderLayer::if_not_present(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    )
}

/// Every function's routes on one router, each over its own state, as the local server
/// serves them.
pub fn app(state: AppState) -> Router {
    let routes = Router::new()
        .merge(guarded(pool_admin_routes(), state.pool_admin()))
        .merge(guarded(key_generation_routes(), state.key_generation()))
        .merge(guarded(redemption_routes(), state.redemption()))
        .merge(guarded(export_routes(), state.export()));
    finish(routes)
}

/// Which page of a listing to answer: every listing's `cursor` and `limit`. A listing with
/// more parameters declares them in a struct of its own that flattens this one (serde) and
/// names both in its route's `params(...)`, its own first (utoipa flattens no parameters).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct PageQuery {
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Page size, 1 to 1000 (100 when absent).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
}

impl PageQuery {
    /// The cursor, if any.
    fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }

    /// The page size asked for (400 when out of range).
    fn size(&self) -> Result<usize, Error> {
        page_size(self.limit.as_deref())
    }
}

/// Parses an optional page size.
fn page_size(limit: Option<&str>) -> Result<usize, Error> {
    match limit {
        None | Some("") => Ok(DEFAULT_PAGE),
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
            _ => Err(Error::field("limit", format!("limit is 1 to {MAX_PAGE}"))),
        },
    }
}
