//! The OpenAPI 3.1 document of the API, built from the same `#[utoipa::path]` annotations that
//! register the routes (utoipa-axum's `routes!`), so a route cannot exist without its entry.
//!
//! Error responses are declared per route by their codes (`errors!`), taken from the one
//! catalogue ([`ErrorCode`], which says each code's status and meaning); each becomes the
//! contract's error shape with `code` restricted to the codes that route can answer.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Components, ContentBuilder, HeaderBuilder, InfoBuilder, OpenApi, RefOr};

use crate::error::ErrorCode;

mod webhooks;

/// The error responses of one route, as its `errors!` declaration builds them: codes of the
/// catalogue ([`ErrorCode`]), grouped by the status each carries.
#[derive(Default)]
pub struct Errors(BTreeMap<u16, Vec<ErrorCode>>);

impl Errors {
    /// Adds codes (each under its own status).
    pub fn with(mut self, codes: &[ErrorCode]) -> Self {
        for &code in codes {
            let entry = self.0.entry(code.status()).or_default();
            if !entry.contains(&code) {
                entry.push(code);
            }
        }
        self
    }

    /// A route that needs a token of some role: 401, 403 and, as everywhere, 500 and 503.
    pub fn authenticated(self) -> Self {
        self.with(&[
            ErrorCode::Unauthenticated,
            ErrorCode::ForbiddenRole,
            ErrorCode::InternalError,
            ErrorCode::StoreBusy,
        ])
    }

    /// A route with a JSON body.
    pub fn json_body(self) -> Self {
        self.with(&[
            ErrorCode::InvalidJson,
            ErrorCode::InvalidBody,
            ErrorCode::PayloadTooLarge,
            ErrorCode::UnsupportedMediaType,
        ])
    }

    /// A route with a query string.
    pub fn query(self) -> Self {
        self.with(&[ErrorCode::InvalidQuery])
    }

    /// A route with path parameters.
    pub fn path(self) -> Self {
        self.with(&[ErrorCode::InvalidPath])
    }

    /// A route that lists a page: `limit` and `cursor`.
    pub fn paged(self) -> Self {
        self.query()
            .with(&[ErrorCode::InvalidInput, ErrorCode::InvalidCursor])
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
pub fn error_response(status: u16, codes: &[ErrorCode]) -> Response {
    let description = codes
        .iter()
        .map(|c| format!("`{c}`: {}", c.meaning()))
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
fn error_schema(codes: &[ErrorCode]) -> Schema {
    let error = ObjectBuilder::new()
        .property(
            "code",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(codes.iter().map(|c| c.as_str()))),
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

/// Declares a route's error responses: `errors!(Name, |e| e.authenticated().with(&[..]))`.
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

/// Writes each operation's roles (`x-roles`, from `access::ROUTES`) into the document's JSON,
/// and says them in its description; an operation the table does not declare is a bug.
fn add_roles(doc: &mut serde_json::Value) {
    use super::access::{Access, ROUTES};
    let Some(paths) = doc
        .get_mut("paths")
        .and_then(serde_json::Value::as_object_mut)
    else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in item.iter_mut() {
            let Some((_, _, access)) = ROUTES
                .iter()
                .find(|(m, p, _)| m.eq_ignore_ascii_case(method) && p == path)
            else {
                panic!("{method} {path} has no access declared in http::access::ROUTES");
            };
            let roles: Vec<&str> = match access {
                Access::Anyone => vec![],
                Access::Roles(roles) => roles.iter().map(|r| r.as_str()).collect(),
            };
            op["x-roles"] = serde_json::json!(roles);
            if !roles.is_empty() {
                let said = format!("Roles: {}.", roles.join(", "));
                let text = match op.get("description").and_then(serde_json::Value::as_str) {
                    Some(text) => format!("{text}\n\n{said}"),
                    None => said,
                };
                op["description"] = text.into();
            }
        }
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
             `uri_too_long`, 421 `misdirected_request` and 431 `headers_too_large`, and 403 \
             `cross_origin_refused` to a write from another site's page.",
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
    webhooks::add_schemas(components);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some(
                    "claims `sub`, `org` (everyone but learners) and `role` (`admin`, \
                     `viewer`, `finance` or `learner`)",
                ))
                .build(),
        ),
    );
    for (name, code) in [
        ("NotFound", ErrorCode::NotFound),
        ("MethodNotAllowed", ErrorCode::MethodNotAllowed),
        ("MalformedRequest", ErrorCode::MalformedRequest),
        ("UriTooLong", ErrorCode::UriTooLong),
        ("HeadersTooLarge", ErrorCode::HeadersTooLarge),
        ("MisdirectedRequest", ErrorCode::MisdirectedRequest),
        ("CrossOriginRefused", ErrorCode::CrossOriginRefused),
    ] {
        components.responses.insert(
            name.to_string(),
            RefOr::T(error_response(code.status(), &[code])),
        );
    }
    doc
}

/// The document as pretty JSON with a final newline, as committed in `docs/openapi.json`.
pub fn document_json() -> String {
    let mut json = serde_json::to_value(document())
        .unwrap_or_else(|e| panic!("the OpenAPI document does not serialize: {e}"));
    add_links(&mut json);
    add_roles(&mut json);
    webhooks::add_webhooks(&mut json);
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
