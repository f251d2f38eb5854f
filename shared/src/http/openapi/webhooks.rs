//! The document's `webhooks` section (OpenAPI 3.1): each event KeyPool sends, as the request an
//! endpoint receives, with its signature headers and its payload's schema. The payloads' data
//! are the API's own views, so the section refers to the same schemas as the routes.

use serde_json::{Value, json};
use utoipa::openapi::Components;
use utoipa::{PartialSchema, ToSchema};

use crate::domain::EventType;
use crate::http::views::AssignmentEventView;

/// The envelope every event shares.
const ENVELOPE: &str = "WebhookEvent";

/// Registers the schemas the section refers to that no route does.
pub(super) fn add_schemas(components: &mut Components) {
    components.schemas.insert(
        AssignmentEventView::name().into_owned(),
        AssignmentEventView::schema(),
    );
}

/// What each event's `data` is, and what it says.
fn data_of(kind: EventType) -> (Value, &'static str) {
    let view = |name: &str| json!({ "$ref": format!("#/components/schemas/{name}") });
    match kind {
        EventType::AssignmentCreated => (
            view("AssignmentEventView"),
            "A learner redeemed a key: the new assignment, with its learner.",
        ),
        EventType::AssignmentCancelled => (
            view("AssignmentEventView"),
            "An admin cancelled an assignment: the assignment as it is now.",
        ),
        EventType::AssignmentLaunched => (
            view("AssignmentEventView"),
            "A learner launched an assignment: the assignment, with its new launch count. One \
             event per launch.",
        ),
        EventType::JobFinished => (
            view("JobView"),
            "A generation or an import ended (done or failed): the job, with its counts.",
        ),
        EventType::ExportFinished => (
            view("ExportView"),
            "An export ended (done or failed): the export with its row count. It never carries \
             `url`: the file is fetched through the API.",
        ),
        EventType::WebhookTest => (
            json!({
                "type": "object",
                "required": ["webhook_id"],
                "properties": { "webhook_id": { "type": "string", "format": "uuid" } }
            }),
            "Sent on request (`POST /v1/webhooks/{webhook_id}/test`) to the endpoint asked.",
        ),
    }
}

fn header(name: &str, description: &str, example: &str) -> Value {
    json!({
        "name": name,
        "in": "header",
        "required": true,
        "description": description,
        "schema": { "type": "string" },
        "example": example,
    })
}

/// Adds the envelope's schema and the `webhooks` section to the document's JSON.
pub(super) fn add_webhooks(doc: &mut Value) {
    let types: Vec<&str> = EventType::SUBSCRIBABLE
        .iter()
        .chain([EventType::WebhookTest].iter())
        .map(|t| t.as_str())
        .collect();
    doc["components"]["schemas"][ENVELOPE] = json!({
        "type": "object",
        "description": "Every event's envelope. Its `id` is the `webhook-id` header: the same \
                        however often the event is sent, so a receiver can drop repeats.",
        "required": ["id", "type", "created_at", "organization", "data"],
        "properties": {
            "id": { "type": "string", "format": "uuid" },
            "type": { "type": "string", "enum": types },
            "created_at": { "type": "string", "format": "date-time" },
            "organization": { "type": "string" },
            "data": { "type": "object" }
        }
    });
    let headers = [
        header(
            "webhook-id",
            "The event's id; the same on every attempt.",
            "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
        ),
        header(
            "webhook-timestamp",
            "When this attempt was signed, in seconds since the epoch; refuse one far from \
             your clock.",
            "1765011600",
        ),
        header(
            "webhook-signature",
            "`v1,` and the base64 HMAC-SHA256 of `id.timestamp.body` under the secret's \
             bytes (Standard Webhooks); during a rotation, two signatures separated by a space.",
            "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=",
        ),
    ];
    let mut webhooks = serde_json::Map::new();
    for kind in EventType::SUBSCRIBABLE
        .into_iter()
        .chain([EventType::WebhookTest])
    {
        let (data, description) = data_of(kind);
        let schema = json!({
            "allOf": [
                { "$ref": format!("#/components/schemas/{ENVELOPE}") },
                {
                    "type": "object",
                    "properties": { "type": { "const": kind.as_str() }, "data": data }
                }
            ]
        });
        webhooks.insert(
            kind.as_str().to_string(),
            json!({ "post": {
                "summary": kind.as_str(),
                "description": format!(
                    "{description} Signed by the Standard Webhooks specification; a 2xx within \
                     10 seconds is delivered, anything else is retried with backoff for 3 days."
                ),
                "operationId": format!("webhook_{}", kind.as_str().replace('.', "_")),
                "tags": ["webhooks"],
                "parameters": headers,
                "requestBody": {
                    "required": true,
                    "content": { "application/json": { "schema": schema } }
                },
                "responses": {
                    "2XX": { "description": "delivered" },
                    "default": { "description": "not delivered: tried again later" }
                }
            }}),
        );
    }
    doc["webhooks"] = Value::Object(webhooks);
}
