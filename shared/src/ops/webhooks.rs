//! Webhooks: an organization's endpoints, managed by its admins; events fanned out to the
//! endpoints that take them, one delivery each; and one attempt of a delivery, with what it
//! does to the delivery's schedule and to the endpoint.

use serde::Deserialize;

use crate::domain::{
    AttemptOutcome, AuditAction, Caller, Delivery, DeliveryId, DeliveryStatus, Event, EventType,
    MAX_WEBHOOKS, Page, Resource, SigningSecret, Summary, Webhook, WebhookId, derived_uuid,
};
use crate::error::{Error, ErrorCode, Missing, Result, Validator};
use crate::identity::OrgId;
use crate::store::Webhooks;
use crate::time::Timestamp;
use crate::webhooks::{DeliveryQueue, Sender, new_secret};

/// Longest description of an endpoint, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 500;

/// An endpoint as an admin sends it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookInput {
    /// Where events are posted (https; a public address).
    #[schema(max_length = 2000)]
    pub url: String,
    /// The events it takes: `assignment.created`, `assignment.cancelled`,
    /// `assignment.launched`, `job.finished`, `export.finished`.
    pub events: Vec<String>,
    #[serde(default)]
    #[schema(max_length = 500)]
    pub description: Option<String>,
}

/// Changes to an endpoint; absent fields stay as they are. Enabling it again forgets why it
/// was disabled and its failing streak.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookPatch {
    #[schema(max_length = 2000)]
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub enabled: Option<bool>,
    /// An empty description removes it.
    #[schema(max_length = 500)]
    pub description: Option<String>,
}

fn parse_events(events: &[String]) -> Result<Vec<EventType>, String> {
    if events.is_empty() {
        return Err("events names at least one event".into());
    }
    let mut parsed = Vec::new();
    for event in events {
        let kind = EventType::parse(event).ok_or_else(|| {
            format!(
                "{event:?} is not an event; the events are {}",
                EventType::SUBSCRIBABLE.map(EventType::as_str).join(", ")
            )
        })?;
        if !parsed.contains(&kind) {
            parsed.push(kind);
        }
    }
    parsed.sort();
    Ok(parsed)
}

fn parse_description(text: &str) -> Result<Option<String>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if text.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(format!(
            "description has at most {MAX_DESCRIPTION_CHARS} characters"
        ));
    }
    if text.chars().any(char::is_control) {
        return Err("description must not contain control characters".into());
    }
    Ok(Some(text.to_string()))
}

fn webhook_id(text: &str) -> Result<WebhookId> {
    WebhookId::parse(text).ok_or(Error::NotFound(Missing::Webhook))
}

/// Creates an endpoint: its URL checked (https, every address it resolves to public) and its
/// first secret made; the secret is answered this once.
pub async fn create<S: Webhooks + ?Sized>(
    store: &S,
    sender: &Sender,
    caller: &Caller,
    input: WebhookInput,
    now: Timestamp,
) -> Result<(Webhook, String)> {
    let org = &caller.org;
    let mut v = Validator::default();
    let url = v.check("url", sender.check_target(&input.url).await);
    let events = v.check("events", parse_events(&input.events));
    let description = match input.description.as_deref() {
        Some(d) => v.check("description", parse_description(d)).flatten(),
        None => None,
    };
    v.finish()?;
    let (Some(url), Some(events)) = (url, events) else {
        return Err(anyhow::anyhow!("validated input went missing").into());
    };
    if store.list_webhooks(org).await?.len() >= MAX_WEBHOOKS {
        return Err(Error::refused(
            ErrorCode::TooManyWebhooks,
            format!("an organization has at most {MAX_WEBHOOKS} webhook endpoints"),
        ));
    }
    let secret = new_secret()?;
    let webhook = Webhook {
        webhook_id: WebhookId::new(),
        org: org.clone(),
        url: url.to_string(),
        events,
        description,
        enabled: true,
        disabled_reason: None,
        secrets: vec![SigningSecret {
            secret: secret.clone(),
            created_at: now,
            retires_at: None,
        }],
        failing_since: None,
        created_at: now,
        version: 1,
    };
    // The URL, never the secret.
    let record = caller.record(
        AuditAction::WebhookCreated,
        Resource::new("webhook", webhook.webhook_id),
        Summary::new()
            .with("url", webhook.url.clone())
            .with("events", webhook.events.len()),
        now,
    );
    store.put_webhook(&webhook, &record).await?;
    Ok((webhook, secret))
}

/// The organization's endpoints.
pub async fn list<S: Webhooks + ?Sized>(store: &S, org: &OrgId) -> Result<Vec<Webhook>> {
    store.list_webhooks(org).await
}

/// One of the organization's endpoints.
pub async fn get<S: Webhooks + ?Sized>(store: &S, org: &OrgId, id: &str) -> Result<Webhook> {
    store
        .get_webhook(org, &webhook_id(id)?)
        .await?
        .ok_or(Error::NotFound(Missing::Webhook))
}

/// Changes an endpoint over the version read; a new URL is checked as a new endpoint's is.
pub async fn update<S: Webhooks + ?Sized>(
    store: &S,
    sender: &Sender,
    caller: &Caller,
    id: &str,
    patch: WebhookPatch,
    now: Timestamp,
) -> Result<Webhook> {
    let org = &caller.org;
    let mut v = Validator::default();
    let url = match patch.url.as_deref() {
        Some(url) => v.check("url", sender.check_target(url).await),
        None => None,
    };
    let events = match patch.events.as_deref() {
        Some(events) => v.check("events", parse_events(events)),
        None => None,
    };
    let description = match patch.description.as_deref() {
        Some(d) => v.check("description", parse_description(d)),
        None => None,
    };
    v.finish()?;
    let before = get(store, org, id).await?;
    let mut webhook = before.clone();
    let read = webhook.version;
    if let Some(url) = url {
        webhook.url = url.to_string();
    }
    if let Some(events) = events {
        webhook.events = events;
    }
    if let Some(description) = description {
        webhook.description = description;
    }
    if let Some(enabled) = patch.enabled {
        if enabled && !webhook.enabled {
            webhook.disabled_reason = None;
            webhook.failing_since = None;
        }
        webhook.enabled = enabled;
    }
    webhook.version += 1;
    let record = caller.record(
        AuditAction::WebhookUpdated,
        Resource::new("webhook", webhook.webhook_id),
        Summary::changes(
            &before,
            &webhook,
            &["url", "events", "description", "enabled"],
        ),
        now,
    );
    if !store.replace_webhook(&webhook, read, Some(&record)).await? {
        return Err(Error::conflict(
            ErrorCode::ConcurrentUpdate,
            "the endpoint changed meanwhile; read it and try again",
        ));
    }
    Ok(webhook)
}

/// Removes an endpoint.
pub async fn delete<S: Webhooks + ?Sized>(
    store: &S,
    caller: &Caller,
    id: &str,
    now: Timestamp,
) -> Result<()> {
    let id = webhook_id(id)?;
    let record = caller.record(
        AuditAction::WebhookDeleted,
        Resource::new("webhook", id),
        Summary::new(),
        now,
    );
    if store.delete_webhook(&caller.org, &id, &record).await? {
        Ok(())
    } else {
        Err(Error::NotFound(Missing::Webhook))
    }
}

/// Makes a new secret: it signs from now on, and the one before it signs beside it for a day;
/// the new secret is answered this once.
pub async fn rotate_secret<S: Webhooks + ?Sized>(
    store: &S,
    caller: &Caller,
    id: &str,
    now: Timestamp,
) -> Result<(Webhook, String)> {
    let mut webhook = get(store, &caller.org, id).await?;
    let read = webhook.version;
    let secret = new_secret()?;
    webhook.rotate(secret.clone(), now);
    webhook.version += 1;
    // That it was rotated, never what to.
    let record = caller.record(
        AuditAction::WebhookSecretRotated,
        Resource::new("webhook", webhook.webhook_id),
        Summary::new().with("secrets", webhook.secrets.len()),
        now,
    );
    if !store.replace_webhook(&webhook, read, Some(&record)).await? {
        return Err(Error::conflict(
            ErrorCode::ConcurrentUpdate,
            "the endpoint changed meanwhile; read it and try again",
        ));
    }
    Ok((webhook, secret))
}

/// Sends a `webhook.test` event to one endpoint (enabled or not), now.
pub async fn send_test<S: Webhooks + ?Sized>(
    store: &S,
    queue: &dyn DeliveryQueue,
    caller: &Caller,
    id: &str,
    now: Timestamp,
) -> Result<Delivery> {
    let org = &caller.org;
    let webhook = get(store, org, id).await?;
    let event = Event {
        id: crate::domain::EventId::new(),
        kind: EventType::WebhookTest,
        created_at: now,
        organization: org.clone(),
        data: serde_json::json!({ "webhook_id": webhook.webhook_id }),
    };
    let delivery = delivery_of(&webhook, &event)?;
    let record = caller.record(
        AuditAction::WebhookTested,
        Resource::new("webhook", webhook.webhook_id),
        Summary::new().with("delivery_id", delivery.delivery_id.to_string()),
        now,
    );
    // The test event's id is new, so its delivery is too: a plain write, with its record.
    store.save_delivery(&delivery, None, Some(&record)).await?;
    queue
        .submit(&[(delivery.webhook_id, delivery.delivery_id)])
        .await?;
    Ok(delivery)
}

/// A page of an endpoint's deliveries, newest first.
pub async fn deliveries<S: Webhooks + ?Sized>(
    store: &S,
    org: &OrgId,
    id: &str,
    status: Option<&str>,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Page<Delivery>> {
    let status = match status {
        None | Some("") => None,
        Some(text) => Some(
            DeliveryStatus::parse(text)
                .ok_or_else(|| Error::field("status", "status is pending, delivered or failed"))?,
        ),
    };
    let webhook = get(store, org, id).await?;
    store
        .list_deliveries(&webhook.webhook_id, status, cursor, limit)
        .await
}

/// Sends a delivery again now, whatever it came to before (an admin's redelivery).
pub async fn retry<S: Webhooks + ?Sized>(
    store: &S,
    queue: &dyn DeliveryQueue,
    caller: &Caller,
    id: &str,
    delivery_id: &str,
    now: Timestamp,
) -> Result<Delivery> {
    let webhook = get(store, &caller.org, id).await?;
    let missing = || Error::NotFound(Missing::Delivery);
    let delivery_id = DeliveryId::parse(delivery_id).ok_or_else(missing)?;
    let mut delivery = store
        .get_delivery(&webhook.webhook_id, &delivery_id)
        .await?
        .ok_or_else(missing)?;
    let was_due = delivery.next_attempt_at;
    delivery.retry_now(now);
    let record = caller.record(
        AuditAction::WebhookDeliveryRetried,
        Resource::new("webhook", webhook.webhook_id),
        Summary::new()
            .with("delivery_id", delivery.delivery_id.to_string())
            .with("attempts", delivery.attempts),
        now,
    );
    store
        .save_delivery(&delivery, was_due, Some(&record))
        .await?;
    queue
        .submit(&[(delivery.webhook_id, delivery.delivery_id)])
        .await?;
    Ok(delivery)
}

/// A delivery of `event` to `webhook`, waiting for its first attempt now; its id is derived
/// from the two, so fanning the event out again makes no second one.
fn delivery_of(webhook: &Webhook, event: &Event) -> Result<Delivery> {
    let payload = serde_json::to_string(event).map_err(anyhow::Error::from)?;
    Ok(Delivery {
        delivery_id: DeliveryId(derived_uuid(
            event.created_at,
            &format!("{}/{}", event.id, webhook.webhook_id),
        )),
        webhook_id: webhook.webhook_id,
        org: event.organization.clone(),
        event_id: event.id,
        kind: event.kind,
        payload,
        status: DeliveryStatus::Pending,
        attempts: 0,
        last_status_code: None,
        last_error: None,
        last_attempt_at: None,
        next_attempt_at: Some(event.created_at),
        created_at: event.created_at,
    })
}

/// Fans events out: one delivery per enabled endpoint of the event's organization that takes
/// its type, each stored once however often the event comes, and handed to `queue` as soon as
/// it is stored (so the first are sent while the rest are stored). Answers how many
/// deliveries it made.
pub async fn emit<S: Webhooks + ?Sized>(
    store: &S,
    queue: &dyn DeliveryQueue,
    events: &[Event],
) -> Result<usize> {
    let mut made = 0;
    let mut endpoints: std::collections::HashMap<OrgId, Vec<Webhook>> = Default::default();
    for event in events {
        if !endpoints.contains_key(&event.organization) {
            let listed = store.list_webhooks(&event.organization).await?;
            endpoints.insert(event.organization.clone(), listed);
        }
        let wanting = endpoints[&event.organization]
            .iter()
            .filter(|w| w.wants(event.kind));
        let deliveries = wanting
            .map(|w| delivery_of(w, event))
            .collect::<Result<Vec<_>>>()?;
        if deliveries.is_empty() {
            continue;
        }
        let stored = store.put_deliveries(&deliveries).await?;
        let refs: Vec<(WebhookId, DeliveryId)> = stored
            .iter()
            .map(|d| (d.webhook_id, d.delivery_id))
            .collect();
        if !refs.is_empty() {
            queue.submit(&refs).await?;
        }
        made += stored.len();
    }
    Ok(made)
}

/// How one turn of a delivery went.
#[derive(Debug, Clone, PartialEq)]
pub enum Turn {
    /// It was attempted; here it is after the attempt.
    Attempted(Delivery),
    /// Not yet due: try again at this time.
    NotDue(Timestamp),
    /// Nothing to do: delivered, failed, or gone.
    Done,
}

/// One attempt of a delivery, when it is pending and due: sent, recorded, rescheduled or
/// given up; the endpoint's failing streak updated (and the endpoint disabled once every
/// delivery failed for five days). A delivery of an endpoint that is gone or disabled is
/// abandoned.
pub async fn attempt<S: Webhooks + ?Sized>(
    store: &S,
    sender: &Sender,
    webhook_id: &WebhookId,
    delivery_id: &DeliveryId,
    now: Timestamp,
    first_retry: chrono::Duration,
) -> Result<Turn> {
    let Some(mut delivery) = store.get_delivery(webhook_id, delivery_id).await? else {
        return Ok(Turn::Done);
    };
    let was_due = delivery.next_attempt_at;
    match (delivery.status, was_due) {
        (DeliveryStatus::Pending, Some(at)) if at > now => return Ok(Turn::NotDue(at)),
        (DeliveryStatus::Pending, _) => {}
        _ => return Ok(Turn::Done),
    }
    let webhook = store.get_webhook(&delivery.org, webhook_id).await?;
    let Some(mut webhook) = webhook.filter(|w| w.enabled) else {
        delivery.abandon("the endpoint was removed or disabled");
        store.save_delivery(&delivery, was_due, None).await?;
        return Ok(Turn::Attempted(delivery));
    };
    let outcome = sender.attempt(&webhook, &delivery, now).await;
    let jitter = f64::from(getrandom::u32().unwrap_or(u32::MAX / 2)) / f64::from(u32::MAX);
    delivery.record(&outcome, now, first_retry, jitter);
    store.save_delivery(&delivery, was_due, None).await?;
    // The endpoint's streak: read again if it changed meanwhile (another delivery's attempt).
    let delivered = matches!(outcome, AttemptOutcome::Delivered { .. });
    for _ in 0..3 {
        let read = webhook.version;
        if !webhook.after_attempt(delivered, now) {
            break;
        }
        webhook.version += 1;
        if store.replace_webhook(&webhook, read, None).await? {
            if !webhook.enabled {
                tracing::warn!(webhook = %webhook.webhook_id, org = %webhook.org, "webhook endpoint disabled after days of failures");
            }
            break;
        }
        match store.get_webhook(&delivery.org, webhook_id).await? {
            Some(fresh) => webhook = fresh,
            None => break,
        }
    }
    Ok(Turn::Attempted(delivery))
}
