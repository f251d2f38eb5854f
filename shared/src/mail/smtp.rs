//! Sending through an SMTP server (`--smtp-url`), with lettre's async transport: `smtp://`
//! (STARTTLS when offered), `smtp://host?tls=required`, `smtps://` (TLS from the start), with
//! credentials in the URL as `smtp://user:pass@host:587`. TLS is rustls over aws-lc-rs, as
//! elsewhere in the workspace.
//!
//! Bounded: `COMMAND_TIMEOUT` for the connection and for each answer, `SEND_TIMEOUT` for the
//! whole send, `SENDS_AT_ONCE` sends at once.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use tokio::sync::Semaphore;

use super::{Letter, MailError, MailFrom, Mailer, SEND_TIMEOUT, SENDS_AT_ONCE, Sent};

/// How long to wait to connect, and for each answer of the server.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// An SMTP server to send letters through.
pub struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: MailFrom,
    slots: Arc<Semaphore>,
    send_timeout: Duration,
}

impl Smtp {
    /// A transport for `url`; nothing is connected until the first send.
    pub fn from_url(url: &str, from: MailFrom) -> Result<Self, String> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| format!("the SMTP URL is not usable: {e}"))?
            .timeout(Some(COMMAND_TIMEOUT))
            .build();
        Ok(Self {
            transport,
            from,
            slots: Arc::new(Semaphore::new(SENDS_AT_ONCE)),
            send_timeout: SEND_TIMEOUT,
        })
    }

    /// The same transport with shorter bounds (tests).
    pub fn with_timeouts(
        url: &str,
        from: MailFrom,
        command: Duration,
        send: Duration,
    ) -> Result<Self, String> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| format!("the SMTP URL is not usable: {e}"))?
            .timeout(Some(command))
            .build();
        Ok(Self {
            transport,
            from,
            slots: Arc::new(Semaphore::new(SENDS_AT_ONCE)),
            send_timeout: send,
        })
    }
}

/// Permanent when the server refused with a 5xx answer; everything else (no connection,
/// timeouts, 4xx, TLS, a dropped line) may pass later.
fn classify(e: &lettre::transport::smtp::Error) -> MailError {
    // The error's text names the server's answer, never the message's body.
    if e.is_permanent() {
        MailError::Permanent(e.to_string())
    } else {
        MailError::Transient(e.to_string())
    }
}

#[async_trait]
impl Mailer for Smtp {
    async fn send(&self, letter: &Letter) -> Result<Sent, MailError> {
        let (message, message_id) = letter.to_message(&self.from)?;
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| MailError::Transient("the SMTP transport is closed".into()))?;
        match tokio::time::timeout(self.send_timeout, self.transport.send(message)).await {
            Err(_) => Err(MailError::Transient(format!(
                "the SMTP server did not finish within {:?}",
                self.send_timeout
            ))),
            Ok(Err(e)) => {
                let e = classify(&e);
                tracing::warn!(org = %letter.org, reference = %letter.reference, error = %e, "SMTP send failed");
                Err(e)
            }
            Ok(Ok(_)) => {
                tracing::info!(org = %letter.org, reference = %letter.reference, "letter sent over SMTP");
                Ok(Sent { message_id })
            }
        }
    }
}
