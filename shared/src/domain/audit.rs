//! The audit log: one record per change an organization's people make, written in the same
//! atomic write as the change (see docs/audit.md). A record never holds a secret: no token,
//! no webhook secret, no link's signature, and keys only masked.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::ids::EventId;
use crate::identity::{OrgId, Principal, Role};
use crate::keys::KeyCode;
use crate::time::Timestamp;

/// Who made a change, and from where: what every audited operation is given by its edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The organization changed.
    pub org: OrgId,
    /// The person who changed it.
    pub actor: Actor,
    /// The request that carried the change, when one did.
    pub request_id: Option<String>,
    /// The address the request came from, when known.
    pub client_address: Option<String>,
}

impl Caller {
    /// A caller of `org` with no request around it (tests, tools).
    pub fn new(org: OrgId, sub: &str, role: Role) -> Self {
        Self {
            org,
            actor: Actor {
                sub: sub.to_owned(),
                role,
            },
            request_id: None,
            client_address: None,
        }
    }

    /// Who this caller is and whence they came, to be kept with a long change they start.
    pub fn origin(&self) -> Origin {
        Origin {
            actor: self.actor.clone(),
            request_id: self.request_id.clone(),
            client_address: self.client_address.clone(),
        }
    }

    /// The caller who started a long change of `org`, as its `origin` kept them: the write
    /// that ends the change records its end in their name.
    pub fn resumed(org: &OrgId, origin: &Origin) -> Self {
        Self {
            org: org.clone(),
            actor: origin.actor.clone(),
            request_id: origin.request_id.clone(),
            client_address: origin.client_address.clone(),
        }
    }

    /// The caller a verified principal of `org` makes.
    pub fn of(principal: &Principal, org: &OrgId) -> Self {
        Self::new(org.clone(), principal.sub.as_str(), principal.role)
    }

    /// The record of `action` on `resource` at `now`. A record of a pool names it as its
    /// pool; `AuditRecord::in_pool` names the pool of any other resource.
    pub fn record(
        &self,
        action: AuditAction,
        resource: Resource,
        summary: Summary,
        now: Timestamp,
    ) -> AuditRecord {
        AuditRecord {
            event_id: EventId::new(),
            org: self.org.clone(),
            at: now,
            actor: self.actor.clone(),
            action: action.as_str().to_owned(),
            pool_id: (resource.kind == "pool").then(|| resource.id.clone()),
            resource,
            request_id: self.request_id.clone(),
            client_address: self.client_address.clone(),
            summary: summary.0,
        }
    }
}

/// Who started a long change (a job, an export) and from where, kept with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub actor: Actor,
    #[serde(default)]
    pub request_id: Option<String>,
    #[serde(default)]
    pub client_address: Option<String>,
}

/// The person behind a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The token's subject.
    pub sub: String,
    /// The role they acted in.
    pub role: Role,
}

/// What was changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    /// `course`, `pool`, `key`, `job`, `export`, `assignment`, `webhook`, `console`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its id (a key's id is masked: `key_id`).
    pub id: String,
}

impl Resource {
    /// A resource of `kind` with `id`.
    pub fn new(kind: &str, id: impl ToString) -> Self {
        Self {
            kind: kind.to_owned(),
            id: id.to_string(),
        }
    }
}

/// How a key is named in the audit: its last four symbols only. A key not yet redeemed is a
/// bearer credential, and finance reads the audit but may not see keys.
pub fn key_id(key: &KeyCode) -> String {
    let text = key.as_str();
    let tail: String = text
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("…{tail}")
}

/// The counts of a change, or its fields before and after.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary(pub Map<String, Value>);

impl Summary {
    /// An empty summary.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a field.
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.0.insert(name.to_owned(), value.into());
        self
    }

    /// `before` and `after` of the fields that differ between two serialisable values.
    pub fn changes<T: Serialize>(before: &T, after: &T, fields: &[&str]) -> Self {
        let (Ok(Value::Object(b)), Ok(Value::Object(a))) =
            (serde_json::to_value(before), serde_json::to_value(after))
        else {
            return Self::new();
        };
        let (mut was, mut now) = (Map::new(), Map::new());
        for &field in fields {
            let (x, y) = (b.get(field), a.get(field));
            if x != y {
                was.insert(field.to_owned(), x.cloned().unwrap_or(Value::Null));
                now.insert(field.to_owned(), y.cloned().unwrap_or(Value::Null));
            }
        }
        Self::new()
            .with("before", Value::Object(was))
            .with("after", Value::Object(now))
    }
}

/// One change, as the audit keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub event_id: EventId,
    pub org: OrgId,
    #[serde(with = "crate::time::rfc3339")]
    pub at: Timestamp,
    pub actor: Actor,
    /// A stable dotted name, `AuditAction::as_str`.
    pub action: String,
    pub resource: Resource,
    /// The pool the change concerns (the pool itself, its keys, jobs, exports, assignments),
    /// so that a pool's activity is one Query.
    #[serde(default)]
    pub pool_id: Option<String>,
    pub request_id: Option<String>,
    pub client_address: Option<String>,
    pub summary: Map<String, Value>,
}

impl AuditRecord {
    /// The record, naming `pool` as the pool its change concerns.
    pub fn in_pool(mut self, pool: impl ToString) -> Self {
        self.pool_id = Some(pool.to_string());
        self
    }
}

macro_rules! actions {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, )*) => {
        /// Every kind of change the audit records, with its stable name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum AuditAction {
            $( $(#[$doc])* $variant, )*
        }

        impl AuditAction {
            /// Every action.
            pub const ALL: &'static [AuditAction] = &[$(AuditAction::$variant),*];

            /// The action's stable name.
            pub const fn as_str(self) -> &'static str {
                match self { $(AuditAction::$variant => $name),* }
            }

            /// The action a name names.
            pub fn parse(text: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|a| a.as_str() == text)
            }
        }
    };
}

actions! {
    CourseCreated = "course.created",
    CourseUpdated = "course.updated",
    PoolCreated = "pool.created",
    PoolUpdated = "pool.updated",
    PoolDeactivated = "pool.deactivated",
    PoolReactivated = "pool.reactivated",
    KeyAdded = "key.added",
    KeysPasted = "keys.pasted",
    KeysImportStarted = "keys.import_started",
    KeysGenerated = "keys.generated",
    KeysGenerationStarted = "keys.generation_started",
    KeysGenerationFinished = "keys.generation_finished",
    KeysImportFinished = "keys.import_finished",
    KeyRemoved = "key.removed",
    ExportStarted = "export.started",
    ExportFinished = "export.finished",
    ExportDownloaded = "export.downloaded",
    AssignmentCancelled = "assignment.cancelled",
    WebhookCreated = "webhook.created",
    WebhookUpdated = "webhook.updated",
    WebhookDeleted = "webhook.deleted",
    WebhookSecretRotated = "webhook.secret_rotated",
    WebhookTested = "webhook.tested",
    WebhookDeliveryRetried = "webhook.delivery_retried",
    ConsoleSignedIn = "console.signed_in",
}

/// Which records a reader asks for; every filter is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub action: Option<AuditAction>,
    pub actor: Option<String>,
    pub resource_id: Option<String>,
    pub pool_id: Option<String>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_dotted_and_unique() {
        for a in AuditAction::ALL {
            assert_eq!(AuditAction::parse(a.as_str()), Some(*a));
            assert!(a.as_str().contains('.'));
        }
    }

    #[test]
    fn changes_hold_only_what_differs() {
        let before = serde_json::json!({"name": "a", "days": 30, "same": 1});
        let after = serde_json::json!({"name": "b", "days": 30, "same": 1});
        let s = Summary::changes(&before, &after, &["name", "days"]);
        assert_eq!(s.0["before"], serde_json::json!({"name": "a"}));
        assert_eq!(s.0["after"], serde_json::json!({"name": "b"}));
    }
}
