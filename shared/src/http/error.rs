//! The one place where errors become HTTP responses, and the extractors that reject in the
//! same shape.

use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::Error;
use crate::time;

/// The error body of the contract: `{"error": {"code", "message", "details"?}}`.
fn body(
    status: StatusCode,
    code: &str,
    message: &str,
    details: Option<serde_json::Value>,
) -> Response {
    let mut error = json!({ "code": code, "message": message });
    if let Some(details) = details {
        error["details"] = details;
    }
    (status, axum::Json(json!({ "error": error }))).into_response()
}

fn not_found_code(what: &str) -> &'static str {
    match what {
        "course" => "course_not_found",
        "pool" => "pool_not_found",
        "key" => "key_not_found",
        "assignment" => "assignment_not_found",
        "export" => "export_not_found",
        "job" => "job_not_found",
        "file" => "file_not_found",
        _ => "not_found",
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let message = self.to_string();
        match self {
            Error::InvalidFields(fields) => body(
                StatusCode::BAD_REQUEST,
                "invalid_input",
                &message,
                Some(json!({ "fields": fields })),
            ),
            Error::BadRequest { code, details, .. } => {
                body(StatusCode::BAD_REQUEST, code, &message, details)
            }
            Error::PayloadTooLarge => body(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                &format!(
                    "the request body is larger than {} bytes",
                    super::MAX_BODY_BYTES
                ),
                None,
            ),
            Error::MethodNotAllowed => body(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                &message,
                None,
            ),
            Error::UnsupportedMediaType(_) => body(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                &message,
                None,
            ),
            Error::Unauthenticated(_) => {
                let mut r = body(StatusCode::UNAUTHORIZED, "unauthenticated", &message, None);
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                r
            }
            Error::WrongRole(_) => body(StatusCode::FORBIDDEN, "forbidden", &message, None),
            Error::NotFound(what) => {
                body(StatusCode::NOT_FOUND, not_found_code(what), &message, None)
            }
            Error::InvalidKey => body(StatusCode::NOT_FOUND, "invalid_key", &message, None),
            Error::KeyAlreadyRedeemed => {
                body(StatusCode::CONFLICT, "key_already_redeemed", &message, None)
            }
            Error::KeyRedeemed => body(StatusCode::CONFLICT, "key_redeemed", &message, None),
            Error::PoolNotActive {
                starts_at,
                expires_at,
                deactivated,
            } => body(
                StatusCode::FORBIDDEN,
                "pool_not_active",
                &message,
                Some(json!({
                    "starts_at": time::format(&starts_at),
                    "expires_at": time::format(&expires_at),
                    "deactivated": deactivated,
                })),
            ),
            Error::AssignmentExpired { expires_at } => body(
                StatusCode::FORBIDDEN,
                "assignment_expired",
                &message,
                Some(json!({ "expires_at": time::format(&expires_at) })),
            ),
            Error::AssignmentCancelled { cancelled_at } => body(
                StatusCode::FORBIDDEN,
                "assignment_cancelled",
                &message,
                Some(json!({ "cancelled_at": time::format(&cancelled_at) })),
            ),
            Error::Conflict { code, .. } => body(StatusCode::CONFLICT, code, &message, None),
            Error::Throttled { retry_after_secs } => {
                let mut r = body(
                    StatusCode::TOO_MANY_REQUESTS,
                    "throttled",
                    &format!("too many failed attempts; try again in {retry_after_secs} seconds"),
                    Some(json!({ "retry_after_seconds": retry_after_secs })),
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
                r
            }
            Error::RateLimited {
                code,
                retry_after_secs,
                ..
            } => {
                let mut r = body(
                    StatusCode::TOO_MANY_REQUESTS,
                    code,
                    &message,
                    Some(json!({ "retry_after_seconds": retry_after_secs })),
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
                r
            }
            Error::TooManyJobs {
                max_open,
                retry_after_secs,
            } => {
                let mut r = body(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_jobs",
                    &message,
                    Some(json!({
                        "max_open_jobs": max_open,
                        "retry_after_seconds": retry_after_secs,
                    })),
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
                r
            }
            Error::StoreBusy { retry_after_secs } => {
                let mut r = body(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_busy",
                    &message,
                    Some(json!({ "retry_after_seconds": retry_after_secs })),
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
                r
            }
            Error::NotImplemented(_) => body(
                StatusCode::NOT_IMPLEMENTED,
                "not_implemented",
                &message,
                None,
            ),
            Error::Internal(e) => {
                tracing::error!(error = format!("{e:#}"), "internal error");
                body(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "something went wrong on our side; try again later",
                    None,
                )
            }
        }
    }
}

/// A deserializer's message in the API's words: no Rust type names (`struct CourseInput`,
/// `enum Status`), no axum preamble, JSON's names for its shapes.
pub fn plain(message: &str) -> String {
    let mut text = message;
    for preamble in [
        "Failed to deserialize the JSON body into the target type: ",
        "Failed to parse the request body as JSON: ",
        "Failed to deserialize query string: ",
        "Invalid URL: ",
    ] {
        text = text.strip_prefix(preamble).unwrap_or(text);
    }
    let text = text
        .replace("a map", "an object")
        .replace("a sequence", "an array");
    let mut out = String::with_capacity(text.len());
    let mut words = text.split(' ').peekable();
    while let Some(word) = words.next() {
        let replaced = match word {
            "struct" | "enum" | "tuple" if words.peek().is_some() => {
                let name = words.next().unwrap_or_default();
                // Keep what follows the name (`,` or `:`).
                let tail: String = name
                    .chars()
                    .skip_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                let what = if word == "enum" {
                    "one of the allowed values"
                } else {
                    "a JSON object"
                };
                format!("{what}{tail}")
            }
            "map" => "object".to_string(),
            "map," => "object,".to_string(),
            "sequence" => "array".to_string(),
            "sequence," => "array,".to_string(),
            other => other.to_string(),
        };
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&replaced);
    }
    out
}

impl From<JsonRejection> for Error {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::JsonDataError(e) => {
                Error::bad_request("invalid_body", plain(&e.body_text()))
            }
            JsonRejection::JsonSyntaxError(e) => {
                Error::bad_request("invalid_json", plain(&e.body_text()))
            }
            JsonRejection::MissingJsonContentType(_) => Error::UnsupportedMediaType(
                "send the body as JSON with Content-Type: application/json".into(),
            ),
            JsonRejection::BytesRejection(e) => bytes_error(&e),
            other => Error::bad_request("invalid_body", plain(&other.body_text())),
        }
    }
}

fn bytes_error(e: &BytesRejection) -> Error {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Error::PayloadTooLarge
    } else {
        Error::bad_request("invalid_body", "the request body could not be read")
    }
}

impl From<BytesRejection> for Error {
    fn from(r: BytesRejection) -> Self {
        bytes_error(&r)
    }
}

impl From<QueryRejection> for Error {
    fn from(r: QueryRejection) -> Self {
        Error::bad_request("invalid_query", plain(&r.body_text()))
    }
}

impl From<PathRejection> for Error {
    fn from(_: PathRejection) -> Self {
        Error::bad_request(
            "invalid_path",
            "a part of the path is not valid (for example a broken %-escape)",
        )
    }
}

/// Path parameters that reject in the contract's error shape (axum answers plain text).
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(Error))]
pub struct ApiPath<T>(pub T);

/// A JSON body that rejects in the contract's error shape.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(Error))]
pub struct ApiJson<T>(pub T);

/// A query string that rejects in the contract's error shape.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(Error))]
pub struct ApiQuery<T>(pub T);

/// Raw body bytes, with the size limit answered in the contract's error shape.
pub struct ApiBytes(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for ApiBytes {
    type Rejection = Error;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Error> {
        Ok(Self(axum::body::Bytes::from_request(req, state).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::plain;

    #[test]
    fn deserializer_messages_name_no_rust_types() {
        assert_eq!(
            plain(
                "Failed to deserialize the JSON body into the target type: invalid type: sequence, expected struct CourseInput at line 1 column 0"
            ),
            "invalid type: array, expected a JSON object at line 1 column 0"
        );
        assert_eq!(
            plain("invalid type: map, expected struct KeysBody"),
            "invalid type: object, expected a JSON object"
        );
        assert_eq!(
            plain("unknown variant `x`, expected enum Status: at line 1"),
            "unknown variant `x`, expected one of the allowed values: at line 1"
        );
        assert_eq!(
            plain("invalid type: string \"x\", expected a sequence"),
            "invalid type: string \"x\", expected an array"
        );
        assert_eq!(
            plain("unknown field `org`, expected `title` or `description`"),
            "unknown field `org`, expected `title` or `description`"
        );
    }
}
