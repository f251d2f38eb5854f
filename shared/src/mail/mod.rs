//! Mail: letters built into real messages by lettre (no hand-written MIME), and the transports
//! that carry them: an outbox folder of `.eml` files (the local default), any SMTP server, or
//! SES v2 in AWS (not yet here: see docs/mail.md).
//!
//! A letter's body holds a key: bodies are never logged, and `Letter`'s `Debug` leaves them out.
//! Whatever reaches out is bounded in time (`SEND_TIMEOUT`), size (`template`'s limits) and
//! concurrency (each transport's `SENDS_AT_ONCE`).

mod letter;
pub mod outbox;
pub mod smtp;
pub mod template;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use letter::{Letter, MailFrom};
pub use outbox::Outbox;
pub use smtp::Smtp;
pub use template::{Fields, MailTemplate, TemplateError};

/// Longest one send may take, from connecting to the server's last answer.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Sends in flight at once through one transport (a process, or a function instance).
pub const SENDS_AT_ONCE: usize = 4;

/// What a transport answers for a letter it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The `Message-ID` the letter went out with, without its angle brackets.
    pub message_id: String,
}

/// Why a letter was not sent. The sending job retries only `Transient` failures.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The letter or its address was refused for good (a 5xx answer, an address that is no
    /// address, a header that would break the message): sending it again fails again.
    #[error("refused: {0}")]
    Permanent(String),
    /// The server could not be reached, timed out, or answered 4xx: try later.
    #[error("not sent, try later: {0}")]
    Transient(String),
}

impl MailError {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient(_))
    }
}

/// A way to send letters.
#[async_trait]
pub trait Mailer: Send + Sync {
    /// Sends one letter; `Ok` once the transport took it.
    async fn send(&self, letter: &Letter) -> Result<Sent, MailError>;
}

/// What the API carries for mail: the transport letters go through and, when that is the
/// local outbox, the outbox itself (which the console lists).
#[derive(Clone)]
pub struct MailParts {
    pub mailer: Arc<dyn Mailer>,
    pub outbox: Option<Arc<Outbox>>,
}

impl MailParts {
    /// No transport: every send fails (transient, so nothing is given up for it).
    pub fn none() -> Self {
        Self {
            mailer: Arc::new(NoMail),
            outbox: None,
        }
    }

    /// Letters written into an outbox, which the console lists.
    pub fn outbox(outbox: Outbox) -> Self {
        let outbox = Arc::new(outbox);
        Self {
            mailer: outbox.clone(),
            outbox: Some(outbox),
        }
    }

    /// Letters sent through `mailer` (SMTP, SES); there is no outbox to list.
    pub fn sending(mailer: Arc<dyn Mailer>) -> Self {
        Self {
            mailer,
            outbox: None,
        }
    }
}

/// A transport that sends nothing: where no mail was configured.
pub struct NoMail;

#[async_trait]
impl Mailer for NoMail {
    async fn send(&self, _: &Letter) -> Result<Sent, MailError> {
        Err(MailError::Transient(
            "no mail transport is configured".into(),
        ))
    }
}
