//! The OpenAPI 3.1 document of the API, built from the same `#[utoipa::path]` annotations that
//! register the routes (utoipa-axum's `routes!`), so a route cannot exist without its entry.
//!
//! Error responses are declared per route by their codes (`errors!`); each becomes the
//! contract's error shape with `code` restricted to the codes that route can answer, and every
//! code has one line of meaning in [`ERROR_CODES`].

use std::collections::BTreeMap;
use std::sync::LazyLock;

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Components, ContentBuilder, HeaderBuilder, InfoBuilder, OpenApi, RefOr};

/// Every error code of the API, with the status it comes with and what it means.
pub const ERROR_CODES: &[(&str, u16, &str)] = &[
    (
        "invalid_input",
        400,
        "fields fail validation; `details.fields` has a message per field",
    ),
    ("invalid_json", 400, "the body is not JSON"),
    (
        "invalid_body",
        400,
        "the body is JSON (or text) of the wrong shape",
    ),
    ("invalid_query", 400, "the query string does not parse"),
    (
        "invalid_path",
        400,
        "a part of the path is not valid, such as a broken %-escape",
    ),
    (
        "invalid_cursor",
        400,
        "the cursor is not one this listing gave out",
    ),
    ("invalid_month", 400, "the month is not `yyyy-mm`"),
    (
        "keys_rejected",
        400,
        "lines of the list are not valid keys; `details.rejected` names each line",
    ),
    ("no_keys", 400, "the request holds no key that can be added"),
    (
        "count_too_large",
        400,
        "more keys than one request may generate; `details.max`",
    ),
    (
        "malformed_request",
        400,
        "the request line or a header is not valid HTTP (local server)",
    ),
    (
        "key_mistyped",
        400,
        "a generated key whose check symbol does not match the rest: a typo; \
         `details.check_symbol_position`",
    ),
    (
        "unauthenticated",
        401,
        "no token, or one that does not verify; also an expired download link",
    ),
    ("forbidden", 403, "the token's role may not use this route"),
    (
        "pool_not_active",
        403,
        "the pool is outside its redemption window or deactivated; `details` has the dates",
    ),
    (
        "assignment_expired",
        403,
        "the assignment's content availability is over",
    ),
    (
        "assignment_cancelled",
        403,
        "an admin cancelled the assignment",
    ),
    ("not_found", 404, "no such route"),
    (
        "course_not_found",
        404,
        "no such course in the caller's organization",
    ),
    (
        "pool_not_found",
        404,
        "no such pool in the caller's organization",
    ),
    ("key_not_found", 404, "no such key in the pool"),
    (
        "assignment_not_found",
        404,
        "no such assignment for the caller",
    ),
    (
        "export_not_found",
        404,
        "no such export in the caller's organization",
    ),
    (
        "job_not_found",
        404,
        "no such job in the caller's organization",
    ),
    ("file_not_found", 404, "the linked file is gone"),
    (
        "invalid_key",
        404,
        "the key is unknown or removed (both answer alike)",
    ),
    (
        "method_not_allowed",
        405,
        "the route does not take that method",
    ),
    (
        "key_already_redeemed",
        409,
        "another learner redeemed the key",
    ),
    (
        "key_cancelled",
        409,
        "the key's redemption was cancelled for this learner",
    ),
    ("key_redeemed", 409, "a redeemed key cannot be removed"),
    (
        "redemption_contended",
        409,
        "the redemption lost a race it could not settle; retry",
    ),
    (
        "concurrent_update",
        409,
        "the pool changed meanwhile; read it and retry",
    ),
    (
        "paste_interrupted",
        409,
        "an all-or-nothing paste stopped before it committed; nothing was added, send it again",
    ),
    (
        "write_conflict",
        409,
        "a write kept meeting concurrent writes; retry",
    ),
    (
        "assignment_cancelled",
        409,
        "the assignment is cancelled already",
    ),
    (
        "assignment_launched",
        409,
        "a launched assignment cannot be cancelled",
    ),
    (
        "cancellation_window_passed",
        409,
        "assignments can be cancelled within 24 hours of redemption",
    ),
    (
        "cancellation_contended",
        409,
        "the cancellation lost a race; retry",
    ),
    ("payload_too_large", 413, "the body is larger than 4 MiB"),
    (
        "uri_too_long",
        414,
        "the request URI is too long (local server)",
    ),
    (
        "unsupported_media_type",
        415,
        "the body's Content-Type is not one the route takes",
    ),
    (
        "throttled",
        429,
        "too many failed redemptions from this learner, or too many misses of custom keys from \
         this client address; retry after `Retry-After` seconds",
    ),
    (
        "collision_budget_spent",
        429,
        "too many recent key additions met other organizations' keys; custom keys can be \
         added again after `Retry-After` seconds",
    ),
    (
        "too_many_jobs",
        429,
        "the organization has as many open jobs as it may; retry after `Retry-After` seconds",
    ),
    (
        "headers_too_large",
        431,
        "the request's headers are too large or too many (local server)",
    ),
    (
        "internal_error",
        500,
        "something failed on our side; the message says nothing more",
    ),
    (
        "store_busy",
        503,
        "the database is short of capacity (throttled) even after retries; retry after \
         `Retry-After` seconds",
    ),
];

/// The error responses of one route, as its `errors!` declaration builds them.
#[derive(Default)]
pub struct Errors(BTreeMap<u16, Vec<&'static str>>);

impl Errors {
    /// Adds codes under a status.
    pub fn with(mut self, status: u16, codes: &[&'static str]) -> Self {
        let entry = self.0.entry(status).or_default();
        for code in codes {
            if !entry.contains(code) {
                entry.push(code);
            }
        }
        self
    }

    /// A route that needs a token of some role: 401, 403 and, as everywhere, 500 and 503.
    pub fn authenticated(self) -> Self {
        self.with(401, &["unauthenticated"])
            .with(403, &["forbidden"])
            .with(500, &["internal_error"])
            .with(503, &["store_busy"])
    }

    /// A route with a JSON body.
    pub fn json_body(self) -> Self {
        self.with(400, &["invalid_json", "invalid_body"])
            .with(413, &["payload_too_large"])
            .with(415, &["unsupported_media_type"])
    }

    /// A route with a query string.
    pub fn query(self) -> Self {
        self.with(400, &["invalid_query"])
    }

    /// A route with path parameters.
    pub fn path(self) -> Self {
        self.with(400, &["invalid_path"])
    }

    /// A route that lists a page: `limit` and `cursor`.
    pub fn paged(self) -> Self {
        self.query().with(400, &["invalid_input", "invalid_cursor"])
    }

    /// The responses, each in the error shape with its codes.
    pub fn build(self) -> BTreeMap<String, RefOr<Response>> {
        self.0
            .into_iter()
            .map(|(status, codes)| (status.to_string(), RefOr::T(error_response(status, &codes))))
            .collect()
    }
}

/// The error shape with `code` limited to `codes`, described code by code.
pub fn error_response(status: u16, codes: &[&str]) -> Response {
    let meaning = |code: &str| {
        ERROR_CODES
            .iter()
            .find(|(c, s, _)| *c == code && *s == status)
            .map_or("", |(_, _, m)| *m)
    };
    let description = codes
        .iter()
        .map(|c| format!("`{c}`: {}", meaning(c)))
        .collect::<Vec<_>>()
        .join("; ");
    let mut response = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(error_schema(codes)))
            .build(),
    );
    if status == 429 || status == 503 {
        response = response.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(0)),
                )
                .description(Some("seconds to wait before trying again"))
                .build(),
        );
    }
    if status == 401 {
        response = response.header(
            "WWW-Authenticate",
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::String))
                .build(),
        );
    }
    response.build()
}

/// `{"error": {"code", "message", "details"?}}` with `code` one of `codes`.
fn error_schema(codes: &[&str]) -> Schema {
    let error = ObjectBuilder::new()
        .property(
            "code",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(codes.iter().copied())),
        )
        .required("code")
        .property("message", ObjectBuilder::new().schema_type(Type::String))
        .required("message")
        .property(
            "details",
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .description(Some("more about the error; its fields depend on the code")),
        );
    ObjectBuilder::new()
        .property("error", error)
        .required("error")
        .into()
}

/// Declares a route's error responses: `errors!(Name, |e| e.authenticated().with(404, &[..]))`.
macro_rules! errors {
    ($name:ident, $build:expr) => {
        pub(super) struct $name;
        impl utoipa::IntoResponses for $name {
            fn responses() -> std::collections::BTreeMap<
                String,
                utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
            > {
                let build: fn($crate::http::openapi::Errors) -> $crate::http::openapi::Errors =
                    $build;
                build($crate::http::openapi::Errors::default()).build()
            }
        }
    };
}
pub(crate) use errors;

/// Links from what an operation answers to the operations it enables, so a client (or a
/// stateful fuzzer) can follow them: (path, method, status, link name, operation, parameters,
/// request body as JSON).
type LinkSpec = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    Option<&'static str>,
);

const LINKS: &[LinkSpec] = &[
    (
        "/v1/courses",
        "post",
        "201",
        "CreatePool",
        "create_pool",
        &[],
        Some(
            r#"{"name": "Linked pool", "course_id": "$response.body#/course_id",
                "starts_at": "2026-01-01T00:00:00Z", "expires_at": "2099-01-01T00:00:00Z",
                "content_availability_days": 30}"#,
        ),
    ),
    (
        "/v1/pools",
        "post",
        "201",
        "GetPool",
        "get_pool",
        &[("pool_id", "$response.body#/pool_id")],
        None,
    ),
    (
        "/v1/pools",
        "post",
        "201",
        "UpdatePool",
        "update_pool",
        &[("pool_id", "$response.body#/pool_id")],
        None,
    ),
    (
        "/v1/pools",
        "post",
        "201",
        "AddKeys",
        "add_keys",
        &[("pool_id", "$response.body#/pool_id")],
        None,
    ),
    (
        "/v1/pools",
        "post",
        "201",
        "ListKeys",
        "list_keys",
        &[("pool_id", "$response.body#/pool_id")],
        None,
    ),
    (
        "/v1/pools",
        "post",
        "201",
        "GenerateKeys",
        "generate_keys",
        &[("pool_id", "$response.body#/pool_id")],
        None,
    ),
    (
        "/v1/pools",
        "post",
        "201",
        "StartExport",
        "start_export",
        &[("pool_id", "$response.body#/pool_id")],
        None,
    ),
    (
        "/v1/pools/{pool_id}/keys",
        "post",
        "201",
        "RemoveKey",
        "remove_key",
        &[
            ("pool_id", "$request.path.pool_id"),
            ("key", "$response.body#/added/0"),
        ],
        None,
    ),
    (
        "/v1/pools/{pool_id}/keys/generate",
        "post",
        "202",
        "ReadJob",
        "read_job",
        &[("job_id", "$response.body#/job_id")],
        None,
    ),
    (
        "/v1/pools/{pool_id}/exports",
        "post",
        "202",
        "ReadExport",
        "read_export",
        &[("export_id", "$response.body#/export_id")],
        None,
    ),
    (
        "/v1/redemptions",
        "post",
        "201",
        "Launch",
        "launch",
        &[("assignment_id", "$response.body#/assignment_id")],
        None,
    ),
];

/// Adds the links to the document's JSON (utoipa 5 writes a link's `operationId` as
/// `operation_id`, which no client reads).
fn add_links(doc: &mut serde_json::Value) {
    for (path, method, status, name, operation_id, parameters, body) in LINKS {
        let Some(response) = doc
            .pointer_mut(&format!(
                "/paths/{}/{method}/responses/{status}",
                path.replace('/', "~1")
            ))
            .and_then(serde_json::Value::as_object_mut)
        else {
            panic!("a link starts at {method} {path} {status}, which is not documented");
        };
        let mut link = serde_json::json!({ "operationId": operation_id });
        if !parameters.is_empty() {
            link["parameters"] = parameters
                .iter()
                .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
        if let Some(body) = body {
            link["requestBody"] = serde_json::from_str(body)
                .unwrap_or_else(|e| panic!("the body of link {name} is not JSON: {e}"));
        }
        response
            .entry("links")
            .or_insert_with(|| serde_json::json!({}))[*name] = link;
    }
}

/// The whole API's document (without its links, which `document_json` adds): every function's routes, the service routes, and the local
/// server's download route.
pub fn document() -> OpenApi {
    let mut doc = OpenApi::default();
    doc.info = InfoBuilder::new()
        .title("KeyPool API")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "Training key pools: admins create pools of keys for a course, learners redeem a \
             key for a course assignment. Every error answers \
             `{\"error\": {\"code\", \"message\", \"details\"?}}`; each route lists the codes \
             it can answer. Any route can also answer 404 `not_found` (no such route), 405 \
             `method_not_allowed`, and on the local server 400 `malformed_request`, 414 \
             `uri_too_long` and 431 `headers_too_large`.",
        ))
        .build();
    for part in [
        super::pool_admin_api(),
        super::key_generation_api(),
        super::redemption_api(),
        super::export_api(),
        super::service_api(),
        super::local_files_api(),
    ] {
        doc.merge(part);
    }
    let components = doc.components.get_or_insert_with(Components::new);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some(
                    "claims `sub`, `org` (admins) and `role` (`admin` or `learner`)",
                ))
                .build(),
        ),
    );
    for (name, status, codes) in [
        ("NotFound", 404, &["not_found"][..]),
        ("MethodNotAllowed", 405, &["method_not_allowed"]),
        ("MalformedRequest", 400, &["malformed_request"]),
        ("UriTooLong", 414, &["uri_too_long"]),
        ("HeadersTooLarge", 431, &["headers_too_large"]),
    ] {
        components
            .responses
            .insert(name.to_string(), RefOr::T(error_response(status, codes)));
    }
    doc
}

/// The document as pretty JSON with a final newline, as committed in `docs/openapi.json`.
pub fn document_json() -> String {
    let mut json = serde_json::to_value(document())
        .unwrap_or_else(|e| panic!("the OpenAPI document does not serialize: {e}"));
    add_links(&mut json);
    let mut text = serde_json::to_string_pretty(&json)
        .unwrap_or_else(|e| panic!("the OpenAPI document does not serialize: {e}"));
    text.push('\n');
    text
}

static DOCUMENT: LazyLock<String> = LazyLock::new(document_json);

/// The OpenAPI document of this API, as JSON.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "service",
    operation_id = "openapi",
    responses((status = 200, description = "this document", content_type = "application/json", body = Object))
)]
pub(super) async fn openapi() -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], DOCUMENT.as_str())
}

/// Health check; needs no token.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "service",
    operation_id = "healthz",
    responses((status = 200, description = "the service is up", body = Health))
)]
pub(super) async fn healthz() -> axum::Json<Health> {
    axum::Json(Health { status: "ok" })
}

/// What the health check answers.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: &'static str,
}
