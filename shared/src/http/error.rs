//! The one place where errors become HTTP responses, and the extractors that reject in the
//! same shape.

use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::{Error, ErrorCode};

impl IntoResponse for Error {
    /// `{"error": {"code", "message", "details"?}}` with the code's status; `Retry-After`
    /// where the error says how long to wait; an internal error logged and never described.
    fn into_response(self) -> Response {
        let code = self.code();
        let message = match &self {
            Error::Internal(e) => {
                tracing::error!(error = format!("{e:#}"), "internal error");
                "something went wrong on our side; try again later".to_string()
            }
            other => other.to_string(),
        };
        let mut error = json!({ "code": code.as_str(), "message": message });
        if let Some(details) = self.details() {
            error["details"] = details;
        }
        let status =
            StatusCode::from_u16(code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(json!({ "error": error }))).into_response();
        let headers = response.headers_mut();
        if let Some(secs) = self.retry_after_secs() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if code == ErrorCode::Unauthenticated {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The 413 of a body over the limit.
pub fn payload_too_large() -> Error {
    Error::refused(
        ErrorCode::PayloadTooLarge,
        format!(
            "the request body is larger than {} bytes",
            super::MAX_BODY_BYTES
        ),
    )
}

/// The 405 of a route asked with a method it does not take.
pub fn method_not_allowed() -> Error {
    Error::refused(
        ErrorCode::MethodNotAllowed,
        "this route does not take that method",
    )
}

/// The 415 of a body in a media type the route does not take.
pub fn unsupported_media_type(message: impl Into<String>) -> Error {
    Error::refused(ErrorCode::UnsupportedMediaType, message)
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
                Error::refused(ErrorCode::InvalidBody, plain(&e.body_text()))
            }
            JsonRejection::JsonSyntaxError(e) => {
                Error::refused(ErrorCode::InvalidJson, plain(&e.body_text()))
            }
            JsonRejection::MissingJsonContentType(_) => {
                unsupported_media_type("send the body as JSON with Content-Type: application/json")
            }
            JsonRejection::BytesRejection(e) => bytes_error(&e),
            other => Error::refused(ErrorCode::InvalidBody, plain(&other.body_text())),
        }
    }
}

fn bytes_error(e: &BytesRejection) -> Error {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        payload_too_large()
    } else {
        Error::refused(ErrorCode::InvalidBody, "the request body could not be read")
    }
}

impl From<BytesRejection> for Error {
    fn from(r: BytesRejection) -> Self {
        bytes_error(&r)
    }
}

impl From<QueryRejection> for Error {
    fn from(r: QueryRejection) -> Self {
        Error::refused(ErrorCode::InvalidQuery, plain(&r.body_text()))
    }
}

impl From<PathRejection> for Error {
    fn from(_: PathRejection) -> Self {
        Error::refused(
            ErrorCode::InvalidPath,
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
