//! Reading the audit log: filters as a reader types them, pages newest first, CSV rows. No
//! operation here writes or removes a record: each change writes its own (see
//! `domain::Caller::record`), and nothing edits one afterwards.

use serde::Deserialize;

use crate::domain::{AuditAction, AuditFilter, AuditRecord, Page};
use crate::error::{Error, Result};
use crate::identity::OrgId;
use crate::spreadsheet::cell;
use crate::store::AuditLog;
use crate::time::{self, Timestamp};

/// The filters of a request, each checked by `filter`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only this action, such as `pool.updated`.
    pub action: Option<String>,
    /// Only changes by this subject.
    pub actor: Option<String>,
    /// Only changes of this resource (a key as the audit masks it: `…ABCD`).
    pub resource_id: Option<String>,
    /// Only changes that concern this pool (the pool, its keys, jobs, exports, assignments).
    pub pool_id: Option<String>,
    /// From this instant (RFC 3339), included.
    pub since: Option<String>,
    /// Up to this instant (RFC 3339), included.
    pub until: Option<String>,
}

fn instant(name: &str, text: Option<&str>) -> Result<Option<Timestamp>> {
    match text.filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(t) => time::parse(t)
            .map(Some)
            .ok_or_else(|| Error::field(name, format!("{name} is an RFC 3339 timestamp"))),
    }
}

fn bounded(name: &str, text: Option<&str>) -> Result<Option<String>> {
    match text.filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(t) if t.chars().count() > 200 => Err(Error::field(
            name,
            format!("{name} has at most 200 characters"),
        )),
        Some(t) => Ok(Some(t.to_owned())),
    }
}

impl AuditQuery {
    /// The filter the request asks for.
    pub fn filter(&self) -> Result<AuditFilter> {
        let action = match self.action.as_deref().filter(|a| !a.is_empty()) {
            None => None,
            Some(a) => Some(
                AuditAction::parse(a)
                    .ok_or_else(|| Error::field("action", format!("no action is named {a:?}")))?,
            ),
        };
        let filter = AuditFilter {
            action,
            actor: bounded("actor", self.actor.as_deref())?,
            resource_id: bounded("resource_id", self.resource_id.as_deref())?,
            pool_id: bounded("pool_id", self.pool_id.as_deref())?,
            since: instant("since", self.since.as_deref())?,
            until: instant("until", self.until.as_deref())?,
        };
        if let (Some(since), Some(until)) = (filter.since, filter.until)
            && until < since
        {
            return Err(Error::field("until", "until is not before since"));
        }
        Ok(filter)
    }
}

/// A page of the organization's records, newest first.
pub async fn list<S: AuditLog + ?Sized>(
    store: &S,
    org: &OrgId,
    filter: &AuditFilter,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Page<AuditRecord>> {
    store.list_audit(org, filter, cursor, limit).await
}

/// The CSV header of an audit export.
pub const CSV_HEADER: [&str; 11] = [
    "at",
    "event_id",
    "action",
    "actor",
    "role",
    "resource_type",
    "resource_id",
    "pool_id",
    "request_id",
    "client_address",
    "summary",
];

/// Writes records as CSV rows, each cell safe from spreadsheets' formulas.
pub fn write_csv_rows<W: std::io::Write>(
    out: &mut csv::Writer<W>,
    records: &[AuditRecord],
) -> csv::Result<()> {
    for r in records {
        let summary = serde_json::Value::Object(r.summary.clone()).to_string();
        let row = [
            time::format(&r.at),
            r.event_id.to_string(),
            r.action.clone(),
            r.actor.sub.clone(),
            r.actor.role.as_str().to_owned(),
            r.resource.kind.clone(),
            r.resource.id.clone(),
            r.pool_id.clone().unwrap_or_default(),
            r.request_id.clone().unwrap_or_default(),
            r.client_address.clone().unwrap_or_default(),
            summary,
        ];
        out.write_record(row.iter().map(|c| cell(c).into_owned()))?;
    }
    Ok(())
}
