//! Webhooks: an organization's endpoints, the events they take, and each delivery of an event
//! to an endpoint with its attempts. The rules of retrying, giving up and disabling live here;
//! signing and sending are the edge's (`crate::webhooks`).

use serde::{Deserialize, Serialize};

use super::ids::{DeliveryId, EventId, WebhookId};
use crate::identity::OrgId;
use crate::time::{self, Timestamp};

/// The most endpoints an organization may have.
pub const MAX_WEBHOOKS: usize = 20;
/// How long deliveries of one event are retried before they are `failed`.
pub const RETRY_FOR_HOURS: i64 = 72;
/// An endpoint whose every delivery failed for this long is disabled.
pub const DISABLE_AFTER_HOURS: i64 = 5 * 24;
/// The longest wait between two attempts.
pub const MAX_RETRY_DELAY_SECS: i64 = 6 * 3600;
/// A secret replaced by a rotation keeps signing beside the new one this long.
pub const ROTATION_OVERLAP_HOURS: i64 = 24;
/// The most secrets an endpoint signs with at once (the current one and one being retired).
pub const MAX_SECRETS: usize = 2;

/// What happened, as its `type` says in the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "assignment.created")]
    AssignmentCreated,
    #[serde(rename = "assignment.cancelled")]
    AssignmentCancelled,
    #[serde(rename = "assignment.launched")]
    AssignmentLaunched,
    #[serde(rename = "job.finished")]
    JobFinished,
    #[serde(rename = "export.finished")]
    ExportFinished,
    /// Sent on request to one endpoint, to try it.
    #[serde(rename = "webhook.test")]
    WebhookTest,
}

impl EventType {
    /// The events an endpoint can subscribe to (the test event goes to the endpoint asked).
    pub const SUBSCRIBABLE: [EventType; 5] = [
        Self::AssignmentCreated,
        Self::AssignmentCancelled,
        Self::AssignmentLaunched,
        Self::JobFinished,
        Self::ExportFinished,
    ];

    /// The type as the payload names it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AssignmentCreated => "assignment.created",
            Self::AssignmentCancelled => "assignment.cancelled",
            Self::AssignmentLaunched => "assignment.launched",
            Self::JobFinished => "job.finished",
            Self::ExportFinished => "export.finished",
            Self::WebhookTest => "webhook.test",
        }
    }

    /// Parses a type an admin subscribes to.
    pub fn parse(text: &str) -> Option<Self> {
        Self::SUBSCRIBABLE.into_iter().find(|t| t.as_str() == text)
    }
}

/// One signing secret: `whsec_` and base64 of 24 random bytes (Standard Webhooks' form).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningSecret {
    pub secret: String,
    #[serde(with = "time::rfc3339")]
    pub created_at: Timestamp,
    /// When a rotation replaced it: it signs beside the new one until then.
    #[serde(default, with = "time::rfc3339::option")]
    pub retires_at: Option<Timestamp>,
}

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningSecret")
            .field("secret", &"whsec_…")
            .field("created_at", &self.created_at)
            .field("retires_at", &self.retires_at)
            .finish()
    }
}

/// An organization's endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Webhook {
    pub webhook_id: WebhookId,
    pub org: OrgId,
    pub url: String,
    pub events: Vec<EventType>,
    #[serde(default)]
    pub description: Option<String>,
    pub enabled: bool,
    /// Why it was disabled by the service (deliveries failing for days); `None` when an admin
    /// disabled it, or it is enabled.
    #[serde(default)]
    pub disabled_reason: Option<String>,
    /// The current secret first.
    pub secrets: Vec<SigningSecret>,
    /// Since when every attempt has failed; `None` after a success.
    #[serde(default, with = "time::rfc3339::option")]
    pub failing_since: Option<Timestamp>,
    #[serde(with = "time::rfc3339")]
    pub created_at: Timestamp,
    /// Counts every change; a change is written only over the version it read.
    #[serde(default)]
    pub version: u64,
}

impl Webhook {
    /// The secrets that sign at `now`: the current one, and one being retired until its time.
    pub fn signing_secrets(&self, now: Timestamp) -> Vec<&str> {
        self.secrets
            .iter()
            .filter(|s| s.retires_at.is_none_or(|at| at > now))
            .map(|s| s.secret.as_str())
            .collect()
    }

    /// Takes `secret` as the current secret; the one before signs beside it for a day, and
    /// any older one stops.
    pub fn rotate(&mut self, secret: String, now: Timestamp) {
        let retire = now + chrono::Duration::hours(ROTATION_OVERLAP_HOURS);
        for old in &mut self.secrets {
            old.retires_at = Some(old.retires_at.map_or(retire, |at| at.min(retire)));
        }
        self.secrets
            .retain(|s| s.retires_at.is_some_and(|at| at > now));
        self.secrets.insert(
            0,
            SigningSecret {
                secret,
                created_at: now,
                retires_at: None,
            },
        );
        self.secrets.truncate(MAX_SECRETS);
    }

    /// Whether it takes events of `kind`.
    pub fn wants(&self, kind: EventType) -> bool {
        self.enabled && self.events.contains(&kind)
    }

    /// What one attempt's outcome does to the endpoint: a success clears its failing
    /// streak; a failure starts one, or disables it once the streak is `DISABLE_AFTER_HOURS`
    /// old. True when it changed.
    pub fn after_attempt(&mut self, delivered: bool, now: Timestamp) -> bool {
        if delivered {
            return self.failing_since.take().is_some();
        }
        match self.failing_since {
            None => {
                self.failing_since = Some(now);
                true
            }
            Some(since)
                if self.enabled && now - since >= chrono::Duration::hours(DISABLE_AFTER_HOURS) =>
            {
                self.enabled = false;
                self.disabled_reason = Some(format!(
                    "disabled by KeyPool: every delivery failed since {}",
                    time::format(&since)
                ));
                true
            }
            Some(_) => false,
        }
    }
}

/// Where a delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt.
    Pending,
    /// An attempt got a 2xx answer in time.
    Delivered,
    /// Retried for `RETRY_FOR_HOURS` without success, or its endpoint went away.
    Failed,
}

impl DeliveryStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Pending, Self::Delivered, Self::Failed]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// One event's delivery to one endpoint, with its attempts so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// Derived from the event and the endpoint, so an event handed over twice makes one.
    pub delivery_id: DeliveryId,
    pub webhook_id: WebhookId,
    pub org: OrgId,
    /// The `webhook-id` of every attempt: the same however often it is sent.
    pub event_id: EventId,
    #[serde(rename = "type")]
    pub kind: EventType,
    /// The body sent, exactly (signatures cover these bytes).
    pub payload: String,
    pub status: DeliveryStatus,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub last_status_code: Option<u16>,
    /// What went wrong last, for people (never the answer's body).
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default, with = "time::rfc3339::option")]
    pub last_attempt_at: Option<Timestamp>,
    #[serde(default, with = "time::rfc3339::option")]
    pub next_attempt_at: Option<Timestamp>,
    #[serde(with = "time::rfc3339")]
    pub created_at: Timestamp,
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// A 2xx within the time allowed.
    Delivered { status: u16 },
    /// Any other answer, or none.
    Failed { status: Option<u16>, error: String },
}

impl Delivery {
    /// Records an attempt made at `now`, and schedules the next one: exponential backoff from
    /// `first_retry` (doubling, with full jitter from `jitter` in 0..1, capped at
    /// `MAX_RETRY_DELAY_SECS`) until `RETRY_FOR_HOURS` after the event, then `failed`.
    pub fn record(
        &mut self,
        outcome: &AttemptOutcome,
        now: Timestamp,
        first_retry: chrono::Duration,
        jitter: f64,
    ) {
        self.attempts += 1;
        self.last_attempt_at = Some(now);
        match outcome {
            AttemptOutcome::Delivered { status } => {
                self.status = DeliveryStatus::Delivered;
                self.last_status_code = Some(*status);
                self.last_error = None;
                self.next_attempt_at = None;
            }
            AttemptOutcome::Failed { status, error } => {
                self.last_status_code = *status;
                self.last_error = Some(error.clone());
                let next = now + retry_delay(self.attempts, first_retry, jitter);
                let give_up = self.created_at + chrono::Duration::hours(RETRY_FOR_HOURS);
                if next > give_up {
                    self.status = DeliveryStatus::Failed;
                    self.next_attempt_at = None;
                } else {
                    self.status = DeliveryStatus::Pending;
                    self.next_attempt_at = Some(next);
                }
            }
        }
    }

    /// Gives up without sending, for `why` (the endpoint is gone or disabled).
    pub fn abandon(&mut self, why: &str) {
        self.status = DeliveryStatus::Failed;
        self.last_error = Some(why.to_string());
        self.next_attempt_at = None;
    }

    /// Asked to be sent again now (an admin's retry), whatever it came to before.
    pub fn retry_now(&mut self, now: Timestamp) {
        self.status = DeliveryStatus::Pending;
        self.next_attempt_at = Some(now);
    }
}

/// The wait after attempt `attempts` failed: `first * 2^(attempts-1)`, capped, and drawn
/// uniformly from its upper half (jitter in 0..1), so that retries of many deliveries spread
/// out yet never come sooner than half the schedule.
pub fn retry_delay(attempts: u32, first: chrono::Duration, jitter: f64) -> chrono::Duration {
    let first_ms = first.num_milliseconds().max(1) as f64;
    let cap_ms = (MAX_RETRY_DELAY_SECS * 1000) as f64;
    let exp = attempts.saturating_sub(1).min(40) as i32;
    let full = (first_ms * 2f64.powi(exp)).min(cap_ms);
    let ms = full / 2.0 + full / 2.0 * jitter.clamp(0.0, 1.0);
    chrono::Duration::milliseconds(ms.round() as i64)
}

/// The payload of an event: `{"id", "type", "created_at", "organization", "data"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: EventId,
    #[serde(rename = "type")]
    pub kind: EventType,
    #[serde(with = "time::rfc3339")]
    pub created_at: Timestamp,
    pub organization: OrgId,
    pub data: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(h: i64) -> Timestamp {
        time::parse("2026-12-01T00:00:00Z").unwrap() + chrono::Duration::hours(h)
    }

    #[test]
    fn retries_back_off_exponentially_with_jitter_and_a_cap() {
        let first = chrono::Duration::seconds(30);
        assert_eq!(retry_delay(1, first, 1.0), chrono::Duration::seconds(30));
        assert_eq!(retry_delay(1, first, 0.0), chrono::Duration::seconds(15));
        assert_eq!(retry_delay(3, first, 1.0), chrono::Duration::seconds(120));
        assert_eq!(
            retry_delay(30, first, 1.0),
            chrono::Duration::seconds(MAX_RETRY_DELAY_SECS)
        );
    }

    #[test]
    fn a_delivery_fails_for_good_three_days_after_its_event() {
        let mut d = Delivery {
            delivery_id: DeliveryId::new(),
            webhook_id: WebhookId::new(),
            org: OrgId::parse("acme").unwrap(),
            event_id: EventId::new(),
            kind: EventType::AssignmentCreated,
            payload: "{}".into(),
            status: DeliveryStatus::Pending,
            attempts: 0,
            last_status_code: None,
            last_error: None,
            last_attempt_at: None,
            next_attempt_at: Some(at(0)),
            created_at: at(0),
        };
        let failed = AttemptOutcome::Failed {
            status: Some(500),
            error: "500".into(),
        };
        let mut now = at(0);
        while d.status == DeliveryStatus::Pending {
            d.record(&failed, now, chrono::Duration::seconds(60), 1.0);
            if let Some(next) = d.next_attempt_at {
                assert!(next > now && next <= at(RETRY_FOR_HOURS));
                now = next;
            }
        }
        assert_eq!(d.status, DeliveryStatus::Failed);
        assert!(now <= at(RETRY_FOR_HOURS) && now > at(RETRY_FOR_HOURS - 7));
        assert!(d.attempts > 10, "{}", d.attempts);
        d.retry_now(at(80));
        d.record(
            &AttemptOutcome::Delivered { status: 204 },
            at(80),
            chrono::Duration::seconds(60),
            0.5,
        );
        assert_eq!(d.status, DeliveryStatus::Delivered);
    }

    #[test]
    fn rotation_keeps_the_old_secret_a_day_and_no_older_one() {
        let mut w = Webhook {
            webhook_id: WebhookId::new(),
            org: OrgId::parse("acme").unwrap(),
            url: "https://hooks.example.com/".into(),
            events: vec![EventType::AssignmentCreated],
            description: None,
            enabled: true,
            disabled_reason: None,
            secrets: vec![SigningSecret {
                secret: "whsec_a".into(),
                created_at: at(0),
                retires_at: None,
            }],
            failing_since: None,
            created_at: at(0),
            version: 1,
        };
        w.rotate("whsec_b".into(), at(1));
        assert_eq!(w.signing_secrets(at(2)), ["whsec_b", "whsec_a"]);
        assert_eq!(w.signing_secrets(at(25)), ["whsec_b"]);
        w.rotate("whsec_c".into(), at(3));
        assert_eq!(w.signing_secrets(at(4)), ["whsec_c", "whsec_b"]);
        assert_eq!(w.secrets.len(), 2);
    }

    #[test]
    fn an_endpoint_failing_for_five_days_is_disabled_and_a_success_forgives() {
        let mut w = Webhook {
            webhook_id: WebhookId::new(),
            org: OrgId::parse("acme").unwrap(),
            url: "https://hooks.example.com/".into(),
            events: vec![EventType::AssignmentCreated],
            description: None,
            enabled: true,
            disabled_reason: None,
            secrets: vec![],
            failing_since: None,
            created_at: at(0),
            version: 1,
        };
        assert!(w.after_attempt(false, at(0)));
        assert!(!w.after_attempt(false, at(50)));
        assert!(w.after_attempt(true, at(60)));
        assert!(w.failing_since.is_none());
        w.after_attempt(false, at(70));
        assert!(!w.after_attempt(false, at(70 + DISABLE_AFTER_HOURS - 1)));
        assert!(w.enabled);
        assert!(w.after_attempt(false, at(70 + DISABLE_AFTER_HOURS)));
        assert!(!w.enabled);
        assert!(
            w.disabled_reason
                .as_deref()
                .unwrap()
                .contains("every delivery failed")
        );
        assert!(!w.wants(EventType::AssignmentCreated));
    }
}
