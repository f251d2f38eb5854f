//! The one error type of KeyPool's operations, and the catalogue of codes it answers with;
//! `http::error` turns it into responses.

mod codes;

use std::collections::BTreeMap;

pub use codes::ErrorCode;

use crate::time::Timestamp;

/// Per-field messages for invalid input, keyed by field name.
pub type FieldErrors = BTreeMap<String, String>;

/// A thing that was looked for and is not there (or is another organization's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    Route,
    Course,
    Pool,
    Key,
    Assignment,
    Export,
    Job,
    File,
    Webhook,
    Delivery,
}

impl Missing {
    /// The code its 404 answers with.
    pub const fn code(self) -> ErrorCode {
        match self {
            Self::Route => ErrorCode::NotFound,
            Self::Course => ErrorCode::CourseNotFound,
            Self::Pool => ErrorCode::PoolNotFound,
            Self::Key => ErrorCode::KeyNotFound,
            Self::Assignment => ErrorCode::AssignmentNotFound,
            Self::Export => ErrorCode::ExportNotFound,
            Self::Job => ErrorCode::JobNotFound,
            Self::File => ErrorCode::FileNotFound,
            Self::Webhook => ErrorCode::WebhookNotFound,
            Self::Delivery => ErrorCode::DeliveryNotFound,
        }
    }

    /// Its name, for people.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Route => "route",
            Self::Course => "course",
            Self::Pool => "pool",
            Self::Key => "key",
            Self::Assignment => "assignment",
            Self::Export => "export",
            Self::Job => "job",
            Self::File => "file",
            Self::Webhook => "webhook",
            Self::Delivery => "delivery",
        }
    }
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Everything an operation can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input that fails validation, with a message per field.
    #[error("the request has invalid fields")]
    InvalidFields(FieldErrors),
    /// A request refused as a whole (its shape, its media type, its size, or what it asks
    /// for), with its own code (which carries its status) and optional details.
    #[error("{message}")]
    Refused {
        code: ErrorCode,
        message: String,
        details: Option<serde_json::Value>,
    },
    /// No token, or one that does not verify.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller's role may not use this route; `allowed` names the roles that may.
    #[error("this route is for {}; this token's role is {role}", allowed.join(", "))]
    WrongRole {
        allowed: Vec<&'static str>,
        role: &'static str,
    },
    /// Nothing of that kind exists for the caller (another organization's things included).
    #[error("{0} not found")]
    NotFound(Missing),
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
    /// A write lost a race it cannot settle by itself, or the state forbids it; `code` says
    /// which.
    #[error("{message}")]
    Conflict { code: ErrorCode, message: String },
    /// Too many failed attempts; retry after the given number of seconds.
    #[error("too many failed attempts; try again in {retry_after_secs} seconds")]
    Throttled { retry_after_secs: u64 },
    /// Refused for a while (a budget is spent): `code` says which, with when to retry.
    #[error("{message}")]
    RateLimited {
        code: ErrorCode,
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
    /// Its code in the catalogue, which also says its status.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidFields(_) => ErrorCode::InvalidInput,
            Self::Refused { code, .. }
            | Self::Conflict { code, .. }
            | Self::RateLimited { code, .. } => *code,
            Self::Unauthenticated(_) => ErrorCode::Unauthenticated,
            Self::WrongRole { .. } => ErrorCode::ForbiddenRole,
            Self::NotFound(missing) => missing.code(),
            Self::InvalidKey => ErrorCode::InvalidKey,
            Self::KeyAlreadyRedeemed => ErrorCode::KeyAlreadyRedeemed,
            Self::KeyRedeemed => ErrorCode::KeyRedeemed,
            Self::PoolNotActive { .. } => ErrorCode::PoolNotActive,
            Self::AssignmentExpired { .. } => ErrorCode::AssignmentExpired,
            Self::AssignmentCancelled { .. } => ErrorCode::AssignmentCancelled,
            Self::Throttled { .. } => ErrorCode::Throttled,
            Self::TooManyJobs { .. } => ErrorCode::TooManyJobs,
            Self::StoreBusy { .. } => ErrorCode::StoreBusy,
            Self::Internal(_) => ErrorCode::InternalError,
        }
    }

    /// What the answer's `details` hold, if anything.
    pub fn details(&self) -> Option<serde_json::Value> {
        use serde_json::json;
        let retry = |secs: &u64| json!({ "retry_after_seconds": secs });
        match self {
            Self::InvalidFields(fields) => Some(json!({ "fields": fields })),
            Self::WrongRole { allowed, role } => Some(json!({ "roles": allowed, "role": role })),
            Self::Refused { details, .. } => details.clone(),
            Self::PoolNotActive {
                starts_at,
                expires_at,
                deactivated,
            } => Some(json!({
                "starts_at": crate::time::format(starts_at),
                "expires_at": crate::time::format(expires_at),
                "deactivated": deactivated,
            })),
            Self::AssignmentExpired { expires_at } => {
                Some(json!({ "expires_at": crate::time::format(expires_at) }))
            }
            Self::AssignmentCancelled { cancelled_at } => {
                Some(json!({ "cancelled_at": crate::time::format(cancelled_at) }))
            }
            Self::Throttled { retry_after_secs }
            | Self::RateLimited {
                retry_after_secs, ..
            }
            | Self::StoreBusy { retry_after_secs } => Some(retry(retry_after_secs)),
            Self::TooManyJobs {
                max_open,
                retry_after_secs,
            } => Some(json!({
                "max_open_jobs": max_open,
                "retry_after_seconds": retry_after_secs,
            })),
            _ => None,
        }
    }

    /// Seconds the client should wait before trying again, for the answers that say so.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::Throttled { retry_after_secs }
            | Self::RateLimited {
                retry_after_secs, ..
            }
            | Self::TooManyJobs {
                retry_after_secs, ..
            }
            | Self::StoreBusy { retry_after_secs } => Some(*retry_after_secs),
            _ => None,
        }
    }

    /// A request refused with its own code.
    pub fn refused(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Refused {
            code,
            message: message.into(),
            details: None,
        }
    }

    /// A conflict with its own code.
    pub fn conflict(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
        }
    }

    /// A 409 for writes that kept meeting concurrent writes to the same items.
    pub fn write_conflict() -> Self {
        Self::conflict(
            ErrorCode::WriteConflict,
            "too many concurrent changes to the same items; try again",
        )
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
        Self::Refused {
            code: ErrorCode::KeyMistyped,
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
