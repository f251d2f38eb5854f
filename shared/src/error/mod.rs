//! The one error type of KeyPool's operations; `http::error` maps it to responses.

use std::collections::BTreeMap;

use crate::time::Timestamp;

/// Per-field messages for invalid input, keyed by field name.
pub type FieldErrors = BTreeMap<String, String>;

/// Everything an operation can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input that fails validation, with a message per field.
    #[error("the request has invalid fields")]
    InvalidFields(FieldErrors),
    /// Input that is wrong as a whole, with its own code and optional details.
    #[error("{message}")]
    BadRequest {
        code: &'static str,
        message: String,
        details: Option<serde_json::Value>,
    },
    /// The body is larger than the service accepts.
    #[error("the request body is too large")]
    PayloadTooLarge,
    /// The route exists but not with this method.
    #[error("this route does not take that method")]
    MethodNotAllowed,
    /// The body has a media type the route does not take.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// No token, or one that does not verify.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller's role may not use this route.
    #[error("this route needs the {0} role")]
    WrongRole(&'static str),
    /// Nothing of that kind exists for the caller (another organization's things included).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The key is unknown or removed; both answer alike.
    #[error("not a valid key")]
    InvalidKey,
    /// Another learner redeemed the key.
    #[error("this key has already been redeemed")]
    KeyAlreadyRedeemed,
    /// A redeemed key cannot be removed.
    #[error("a redeemed key cannot be removed")]
    KeyRedeemed,
    /// The pool is outside its redemption window or deactivated.
    #[error("this key's pool is not active")]
    PoolNotActive {
        starts_at: Timestamp,
        expires_at: Timestamp,
        deactivated: bool,
    },
    /// The assignment's content availability is over.
    #[error("this assignment expired")]
    AssignmentExpired { expires_at: Timestamp },
    /// An admin cancelled the assignment.
    #[error("this assignment was cancelled")]
    AssignmentCancelled { cancelled_at: Timestamp },
    /// A write lost a race it cannot settle by itself; the client may retry.
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// Too many failed attempts; retry after the given number of seconds.
    #[error("too many failed attempts")]
    Throttled { retry_after_secs: u64 },
    /// Refused for a while (a budget is spent): `code` says which, with when to retry.
    #[error("{message}")]
    RateLimited {
        code: &'static str,
        message: String,
        retry_after_secs: u64,
    },
    /// The organization has as many open background jobs as it may; retry once one ends.
    #[error(
        "your organization already has {max_open} jobs running or waiting, the most it may \
         have; try again when one of them has finished"
    )]
    TooManyJobs {
        max_open: u64,
        retry_after_secs: u64,
    },
    /// The database kept refusing requests for want of capacity (DynamoDB's throttling) after
    /// every retry; the client may try again after the given number of seconds.
    #[error("the service is busy right now; try again in {retry_after_secs} seconds")]
    StoreBusy { retry_after_secs: u64 },
    /// A route whose function is deployed but whose feature is not built yet.
    #[error("{0} is not available yet")]
    NotImplemented(&'static str),
    /// Anything unexpected; logged with context, never shown to clients.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// What a throttled client is told to wait: the SDK has backed off for seconds already, and
/// DynamoDB's capacity recovers within about as long.
pub const STORE_BUSY_RETRY_AFTER_SECS: u64 = 2;

/// Result with KeyPool's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A 409 for writes that kept meeting concurrent writes to the same items.
    pub fn write_conflict() -> Self {
        Self::Conflict {
            code: "write_conflict",
            message: "too many concurrent changes to the same items; try again".into(),
        }
    }

    /// A 503 for requests the database throttled through every retry.
    pub fn store_busy() -> Self {
        Self::StoreBusy {
            retry_after_secs: STORE_BUSY_RETRY_AFTER_SECS,
        }
    }

    /// A 400 for a generated key whose check symbol does not match the rest: a typo, which
    /// the check symbol tells publicly, so saying so gives nothing away.
    pub fn key_mistyped() -> Self {
        Self::BadRequest {
            code: "key_mistyped",
            message: "this key has a typo: its last symbol, the check symbol, does not match the \
                      others; compare each symbol with the key you were given"
                .into(),
            details: Some(
                serde_json::json!({ "check_symbol_position": crate::keys::GENERATED_LEN }),
            ),
        }
    }

    /// A 400 with one message for one field.
    pub fn field(name: &str, message: impl Into<String>) -> Self {
        let mut fields = FieldErrors::new();
        fields.insert(name.to_string(), message.into());
        Self::InvalidFields(fields)
    }

    /// A 400 with its own code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
            details: None,
        }
    }
}

/// Collects field errors while parsing a request, so that one answer names every bad field.
#[derive(Debug, Default)]
pub struct Validator(FieldErrors);

impl Validator {
    /// Keeps the value, or records the error under `field`.
    pub fn check<T, E: std::fmt::Display>(
        &mut self,
        field: &str,
        result: std::result::Result<T, E>,
    ) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.entry(field.to_string()).or_insert(e.to_string());
                None
            }
        }
    }

    /// Records an error under `field`.
    pub fn fail(&mut self, field: &str, message: impl Into<String>) {
        self.0.entry(field.to_string()).or_insert(message.into());
    }

    /// Ok when nothing was recorded.
    pub fn finish(self) -> Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidFields(self.0))
        }
    }
}
