//! What the API shows of domain values.

use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::{
    Assignment, AssignmentId, Course, CourseId, Export, ExportKind, ExportStatus, InvoiceLine,
    InvoiceTotals, KeyRecord, KeySource, KeyStatus, LineKind, Month, Page, Pool, PoolId,
    PoolStatus,
};
use crate::identity::UserId;
use crate::time::{self, Timestamp};

/// A page of items as the API shows it.
#[derive(Serialize, ToSchema)]
pub struct PageView<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> PageView<T> {
    /// Maps a store page into views.
    pub fn of<U>(page: Page<U>, f: impl FnMut(U) -> T) -> Self {
        Self {
            items: page.items.into_iter().map(f).collect(),
            next_cursor: page.next_cursor,
        }
    }
}

/// A course.
#[derive(Serialize, ToSchema)]
pub struct CourseView {
    #[schema(value_type = String)]
    pub course_id: CourseId,
    pub title: String,
    pub description: Option<String>,
    /// Where the course runs; launches go there with a signed token.
    pub launch_url: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    #[serde(with = "time::rfc3339")]
    pub created_at: Timestamp,
}

impl From<Course> for CourseView {
    fn from(c: Course) -> Self {
        Self {
            course_id: c.course_id,
            title: c.title,
            description: c.description,
            launch_url: c.launch_url,
            created_at: c.created_at,
        }
    }
}

/// A pool with its counts and whether it is active now.
#[derive(Serialize, ToSchema)]
pub struct PoolView {
    #[schema(value_type = String)]
    pub pool_id: PoolId,
    pub name: String,
    #[schema(value_type = String)]
    pub course_id: CourseId,
    /// The course's title (absent for a pool made before titles were kept on pools).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub course_title: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    #[serde(with = "time::rfc3339")]
    pub starts_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    #[serde(with = "time::rfc3339")]
    pub expires_at: Timestamp,
    pub content_availability_days: u16,
    pub deactivated: bool,
    pub active: bool,
    /// Where the pool stands now, from its dates and `deactivated`.
    pub status: PoolStatus,
    pub total_keys: u64,
    pub redeemed_keys: u64,
    pub available_keys: u64,
    #[schema(value_type = String, format = DateTime)]
    #[serde(with = "time::rfc3339")]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    #[serde(with = "time::rfc3339")]
    pub updated_at: Timestamp,
}

impl PoolView {
    /// The pool as seen at `now`.
    pub fn new(p: Pool, now: Timestamp) -> Self {
        Self {
            active: p.is_active(now),
            status: p.status(now),
            available_keys: p.total_keys.saturating_sub(p.redeemed_count),
            pool_id: p.pool_id,
            name: p.name,
            course_id: p.course_id,
            course_title: p.course_title,
            starts_at: p.starts_at,
            expires_at: p.expires_at,
            content_availability_days: p.content_availability_days,
            deactivated: p.deactivated,
            total_keys: p.total_keys,
            redeemed_keys: p.redeemed_count,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

/// A key in a pool listing.
#[derive(Serialize, ToSchema)]
pub struct KeyView {
    pub key: String,
    pub status: KeyStatus,
    pub source: KeySource,
    #[schema(value_type = String, format = DateTime)]
    #[serde(with = "time::rfc3339")]
    pub created_at: Timestamp,
    #[schema(value_type = Option<String>)]
    pub redeemed_by: Option<UserId>,
    #[schema(value_type = Option<String>, format = DateTime)]
    #[serde(with = "time::rfc3339::option")]
    pub redeemed_at: Option<Timestamp>,
    #[schema(value_type = Option<String>)]
    pub assignment_id: Option<AssignmentId>,
    #[schema(value_type = Option<String>, format = DateTime)]
    #[serde(with = "time::rfc3339::option")]
    pub assignment_expires_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    #[serde(with = "time::rfc3339::option")]
    pub distributed_at: Option<Timestamp>,
}

impl From<KeyRecord> for KeyView {
    fn from(k: KeyRecord) -> Self {
        Self {
            key: k.key.display_form(),
            status: k.status,
            source: k.source,
            created_at: k.created_at,
            redeemed_by: k.redeemed_by,
            redeemed_at: k.redeemed_at,
            assignment_id: k.assignment_id,
            assignment_expires_at: k.assignment_expires_at,
            distributed_at: k.distributed_at,
        }
    }
}

/// A key found by its code, with the pool that holds it.
#[derive(Serialize, ToSchema)]
pub struct FoundKeyView {
    #[serde(flatten)]
    pub key: KeyView,
    #[schema(value_type = String)]
    pub pool_id: PoolId,
    pub pool_name: String,
    /// Where the pool stands now.
    pub pool_status: PoolStatus,
}

impl FoundKeyView {
    /// The key and its pool as seen at `now`.
    pub fn new(key: KeyRecord, pool: &Pool, now: Timestamp) -> Self {
        Self {
            pool_id: key.pool_id,
            key: KeyView::from(key),
            pool_name: pool.name.clone(),
            pool_status: pool.status(now),
        }
    }
}

/// A launch: the assignment, its launch counted, and the way into its course when the course
/// has a launch URL.
#[derive(Serialize, ToSchema)]
pub struct LaunchedView {
    #[serde(flatten)]
    pub assignment: AssignmentView,
    /// Where the learner goes, with a signed token (absent when the course has no launch URL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub launch: Option<LaunchView>,
}

/// The course's launch URL with a short-lived token the course's platform checks against
/// `GET /.well-known/jwks.json`.
#[derive(Serialize, ToSchema)]
pub struct LaunchView {
    /// The launch URL with the token as its `launch_token` query parameter.
    pub url: String,
    /// The token alone: a JWT (ES256) with iss, aud (the launch URL's origin), sub, org,
    /// course_id, assignment_id, assignment_expires_at, iat, exp and jti.
    pub token: String,
    #[schema(value_type = String, format = DateTime)]
    #[serde(with = "time::rfc3339")]
    pub expires_at: Timestamp,
}

impl LaunchedView {
    pub fn new(launched: crate::ops::launch::Launched, now: Timestamp) -> Self {
        Self {
            assignment: AssignmentView::new(launched.assignment, now),
            launch: launched.grant.map(|g| LaunchView {
                url: g.url,
                token: g.token,
                expires_at: g.expires_at,
            }),
        }
    }
}

/// An assignment as its learner sees it.
#[derive(Serialize, ToSchema)]
pub struct AssignmentView {
    #[schema(value_type = String)]
    pub assignment_id: AssignmentId,
    #[schema(value_type = String)]
    pub course_id: CourseId,
    /// The course's title (absent for an assignment made before titles were kept).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub course_title: Option<String>,
    #[schema(value_type = String)]
    pub pool_id: PoolId,
    #[schema(value_type = String, format = DateTime)]
    #[serde(with = "time::rfc3339")]
    pub redeemed_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    #[serde(with = "time::rfc3339")]
    pub expires_at: Timestamp,
    pub valid: bool,
    pub launch_count: u64,
    #[schema(value_type = Option<String>, format = DateTime)]
    #[serde(with = "time::rfc3339::option")]
    pub last_launched_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    #[serde(with = "time::rfc3339::option")]
    pub cancelled_at: Option<Timestamp>,
}

impl AssignmentView {
    /// The assignment as seen at `now`.
    pub fn new(a: Assignment, now: Timestamp) -> Self {
        Self {
            valid: a.is_valid(now),
            assignment_id: a.assignment_id,
            course_id: a.course_id,
            course_title: a.course_title,
            pool_id: a.pool_id,
            redeemed_at: a.redeemed_at,
            expires_at: a.expires_at,
            launch_count: a.launch_count,
            last_launched_at: a.last_launched_at,
            cancelled_at: a.cancelled_at,
        }
    }
}

/// An assignment in a webhook event (`assignment.*`): as its learner sees it, with who the
/// learner is and the organization.
#[derive(Serialize, ToSchema)]
pub struct AssignmentEventView {
    #[serde(flatten)]
    pub assignment: AssignmentView,
    #[schema(value_type = String)]
    pub learner: UserId,
    #[schema(value_type = String)]
    pub organization: crate::identity::OrgId,
}

impl AssignmentEventView {
    /// The assignment as seen at `at`.
    pub fn new(a: Assignment, at: Timestamp) -> Self {
        Self {
            learner: a.learner.clone(),
            organization: a.org.clone(),
            assignment: AssignmentView::new(a, at),
        }
    }
}

/// An assignment an admin just cancelled.
#[derive(Serialize, ToSchema)]
pub struct CancelledView {
    #[schema(value_type = String)]
    pub assignment_id: AssignmentId,
    #[schema(value_type = String)]
    pub learner: UserId,
    #[schema(value_type = String)]
    pub pool_id: PoolId,
    #[schema(value_type = String)]
    pub course_id: CourseId,
    pub key: String,
    pub key_status: KeyStatus,
    #[schema(value_type = String, format = DateTime)]
    #[serde(with = "time::rfc3339")]
    pub redeemed_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    #[serde(with = "time::rfc3339::option")]
    pub cancelled_at: Option<Timestamp>,
}

impl From<Assignment> for CancelledView {
    fn from(a: Assignment) -> Self {
        Self {
            assignment_id: a.assignment_id,
            learner: a.learner,
            pool_id: a.pool_id,
            course_id: a.course_id,
            key: a.key.display_form(),
            key_status: KeyStatus::Available,
            redeemed_at: a.redeemed_at,
            cancelled_at: a.cancelled_at,
        }
    }
}

/// One line of an invoice.
#[derive(Serialize, ToSchema)]
pub struct InvoiceLineView {
    #[schema(value_type = String)]
    pub assignment_id: AssignmentId,
    pub kind: LineKind,
    pub quantity: i64,
    #[schema(value_type = String)]
    pub pool_id: PoolId,
    #[schema(value_type = String)]
    pub course_id: CourseId,
    pub key: String,
    #[schema(value_type = String)]
    pub learner: UserId,
    #[schema(value_type = String, format = DateTime)]
    #[serde(with = "time::rfc3339")]
    pub redeemed_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    #[serde(with = "time::rfc3339::option")]
    pub cancelled_at: Option<Timestamp>,
}

impl From<InvoiceLine> for InvoiceLineView {
    fn from(l: InvoiceLine) -> Self {
        Self {
            assignment_id: l.assignment_id,
            kind: l.kind,
            quantity: l.quantity,
            pool_id: l.pool_id,
            course_id: l.course_id,
            key: l.key.display_form(),
            learner: l.learner,
            redeemed_at: l.redeemed_at,
            cancelled_at: l.cancelled_at,
        }
    }
}

/// A page of a month's invoice with the month's totals: `count` is the units billed
/// (redemptions less credits).
#[derive(Serialize, ToSchema)]
pub struct InvoiceView {
    #[schema(value_type = String, pattern = r"^[0-9]{4}-[0-9]{2}$", example = "2026-11")]
    pub month: Month,
    pub count: i64,
    pub redemptions: u64,
    pub credits: u64,
    pub lines: Vec<InvoiceLineView>,
    pub next_cursor: Option<String>,
}

impl InvoiceView {
    /// The month's totals with one page of its lines.
    pub fn new(month: Month, totals: InvoiceTotals, page: Page<InvoiceLine>) -> Self {
        Self {
            month,
            count: totals.count(),
            redemptions: totals.redemptions,
            credits: totals.credits,
            lines: page.items.into_iter().map(InvoiceLineView::from).collect(),
            next_cursor: page.next_cursor,
        }
    }
}

/// An export, with its download link once done.
#[derive(Serialize, ToSchema)]
pub struct ExportView {
    #[schema(value_type = String)]
    pub export_id: crate::domain::ExportId,
    #[schema(value_type = String)]
    pub pool_id: PoolId,
    pub kind: ExportKind,
    pub status: ExportStatus,
    pub rows: u64,
    pub url: Option<String>,
    pub file_name: String,
    pub key_status: Option<KeyStatus>,
    pub undistributed: bool,
    pub mark_distributed: bool,
    pub error: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    #[serde(with = "time::rfc3339")]
    pub created_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    #[serde(with = "time::rfc3339::option")]
    pub finished_at: Option<Timestamp>,
}

impl ExportView {
    /// The export and, when done, a link to download it.
    pub fn new(e: Export, url: Option<String>) -> Self {
        Self {
            export_id: e.export_id,
            pool_id: e.pool_id,
            kind: e.kind,
            status: e.status,
            rows: e.rows,
            url,
            file_name: e.file_name,
            key_status: e.key_status,
            undistributed: e.undistributed,
            mark_distributed: e.mark_distributed,
            error: e.error,
            created_at: e.created_at,
            finished_at: e.finished_at,
        }
    }
}

/// A key job and its progress.
#[derive(Serialize, ToSchema)]
pub struct JobView {
    #[schema(value_type = String)]
    pub job_id: crate::domain::JobId,
    pub kind: crate::domain::JobKind,
    #[schema(value_type = String)]
    pub pool_id: PoolId,
    pub status: crate::domain::JobStatus,
    pub done: u64,
    pub total: u64,
    pub error: Option<String>,
    /// Imports: keys another request took before the job wrote them (the first thousand).
    pub rejected_keys: Vec<String>,
    /// Imports: how many keys another request took, in all.
    pub rejected_count: u64,
    #[schema(value_type = String, format = DateTime)]
    #[serde(with = "time::rfc3339")]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    #[serde(with = "time::rfc3339")]
    pub updated_at: Timestamp,
}

impl From<crate::domain::KeyJob> for JobView {
    fn from(j: crate::domain::KeyJob) -> Self {
        Self {
            job_id: j.job_id,
            kind: j.kind,
            pool_id: j.pool_id,
            status: j.status,
            done: j.done,
            total: j.total,
            error: j.error,
            rejected_keys: j.rejected,
            rejected_count: j.rejected_count,
            created_at: j.created_at,
            updated_at: j.updated_at,
        }
    }
}

/// A line of a key list that was not added.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // Only described: the handler answers the operation's own report.
pub struct RejectedLineView {
    /// Line number, counting from 1 (blank lines count).
    pub line: u64,
    /// The line as sent (trimmed, shortened when long).
    pub key: String,
    pub code: RejectedLineCode,
    pub message: String,
}

/// Why a line of a key list was not added.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // Only described, as `RejectedLineView` (and mapped from `LineCode` to prove it).
pub enum RejectedLineCode {
    /// The line is blank once spaces and dashes are removed.
    EmptyKey,
    /// Letters and digits only.
    InvalidCharacters,
    /// Fewer than 4 symbols.
    TooShort,
    /// More than 64 symbols.
    TooLong,
    /// Shaped like a generated key but with a wrong check symbol.
    ReservedKeyShape,
    /// The same key twice in one request.
    DuplicateInRequest,
    /// The key exists already (in any pool).
    AlreadyExists,
}

impl From<crate::ops::paste::LineCode> for RejectedLineCode {
    fn from(code: crate::ops::paste::LineCode) -> Self {
        use crate::ops::paste::LineCode as C;
        match code {
            C::EmptyKey => Self::EmptyKey,
            C::InvalidCharacters => Self::InvalidCharacters,
            C::TooShort => Self::TooShort,
            C::TooLong => Self::TooLong,
            C::ReservedKeyShape => Self::ReservedKeyShape,
            C::DuplicateInRequest => Self::DuplicateInRequest,
            C::AlreadyExists => Self::AlreadyExists,
        }
    }
}

/// What adding a list of keys did (the document's view of `ops::add_keys::AddReport`).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // Only described: the handler answers the operation's own report.
pub struct AddReportView {
    /// Keys added, as learners type them.
    pub added: Vec<String>,
    /// The first 1,000 lines not added, in line order.
    pub rejected: Vec<RejectedLineView>,
    /// How many lines were not added in all.
    pub rejected_count: u64,
}

/// A started import job, with the lines rejected before it started.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // Only described: the handler answers the operation's own report.
pub struct ImportStartedView {
    #[serde(flatten)]
    pub job: JobView,
    /// The first 1,000 lines rejected, in line order.
    pub rejected: Vec<RejectedLineView>,
    /// How many lines were rejected in all.
    pub rejected_count: u64,
}

#[cfg(test)]
mod tests {
    use super::RejectedLineCode;
    use crate::ops::paste::LineCode;

    #[test]
    fn the_documented_line_codes_are_the_ones_answered() {
        for code in LineCode::ALL {
            assert_eq!(
                serde_json::to_value(RejectedLineCode::from(code)).unwrap(),
                serde_json::to_value(code).unwrap()
            );
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
    }
}

/// One change in the audit log.
#[derive(Serialize, ToSchema)]
pub struct AuditRecordView {
    #[schema(value_type = String)]
    pub event_id: crate::domain::EventId,
    #[schema(value_type = String, format = DateTime)]
    #[serde(with = "time::rfc3339")]
    pub at: crate::time::Timestamp,
    /// Who: the token's subject and the role they acted in.
    #[schema(value_type = Object)]
    pub actor: crate::domain::Actor,
    /// A stable dotted name, such as `pool.updated`.
    pub action: String,
    /// What: `{type, id}`.
    #[schema(value_type = Object)]
    pub resource: crate::domain::Resource,
    /// The pool the change concerns, when it concerns one (the pool, its keys, jobs,
    /// exports or assignments).
    pub pool_id: Option<String>,
    pub request_id: Option<String>,
    pub client_address: Option<String>,
    /// Counts; for edits, the fields `before` and `after`.
    #[schema(value_type = Object)]
    pub summary: serde_json::Map<String, serde_json::Value>,
}

impl From<crate::domain::AuditRecord> for AuditRecordView {
    fn from(r: crate::domain::AuditRecord) -> Self {
        Self {
            event_id: r.event_id,
            at: r.at,
            actor: r.actor,
            action: r.action,
            resource: r.resource,
            pool_id: r.pool_id,
            request_id: r.request_id,
            client_address: r.client_address,
            summary: r.summary,
        }
    }
}

/// A pool's progress as a picture: its funnel and its days.
#[derive(Serialize, ToSchema)]
pub struct PoolStatsView {
    #[schema(value_type = String)]
    pub pool_id: PoolId,
    pub funnel: FunnelView,
    /// Every UTC day from the pool's opening to today (or to the last day its assignments can
    /// be launched), zero-filled, oldest first; at most the last 1000; empty before it opens.
    pub days: Vec<DayView>,
}

/// A pool's funnel: keys, handed out, redeemed, launched.
#[derive(Serialize, ToSchema)]
pub struct FunnelView {
    /// Keys in the pool now.
    pub keys: u64,
    /// Keys handed out; not counted yet (always null): a later step counts distribution marks.
    pub handed_out: Option<u64>,
    /// Keys redeemed now (a cancelled redemption is not).
    pub redeemed: u64,
    /// Assignments launched at least once (from the assignments stream, a moment behind).
    pub launched: u64,
}

/// A pool's counts on one UTC day.
#[derive(Serialize, ToSchema)]
pub struct DayView {
    #[schema(value_type = String, format = Date, example = "2026-11-28")]
    pub date: chrono::NaiveDate,
    /// Redemptions that day, cancelled ones included.
    pub redeemed: u64,
    /// Launches that day (every launch).
    pub launched: u64,
    /// Cancellations that day.
    pub cancelled: u64,
}

impl From<crate::domain::PoolStats> for PoolStatsView {
    fn from(s: crate::domain::PoolStats) -> Self {
        Self {
            pool_id: s.pool_id,
            funnel: FunnelView {
                keys: s.keys,
                handed_out: None,
                redeemed: s.redeemed,
                launched: s.launched,
            },
            days: s
                .days
                .into_iter()
                .map(|d| DayView {
                    date: d.date,
                    redeemed: d.redeemed,
                    launched: d.launched,
                    cancelled: d.cancelled,
                })
                .collect(),
        }
    }
}

/// An organization's redemptions per UTC month.
#[derive(Serialize, ToSchema)]
pub struct MonthlyRedemptionsView {
    /// The last `months` months, this one included, zero-filled, oldest first.
    pub months: Vec<MonthRedemptionsView>,
}

/// An organization's redemptions in one UTC month.
#[derive(Serialize, ToSchema)]
pub struct MonthRedemptionsView {
    #[schema(value_type = String, pattern = r"^[0-9]{4}-[0-9]{2}$", example = "2026-11")]
    pub month: Month,
    /// Redemptions that month, cancelled ones included.
    pub redeemed: u64,
    /// Cancellations that month.
    pub cancelled: u64,
}

impl MonthlyRedemptionsView {
    /// The months as the API shows them.
    pub fn new(months: Vec<crate::domain::MonthCounts>) -> Self {
        Self {
            months: months
                .into_iter()
                .map(|m| MonthRedemptionsView {
                    month: m.month,
                    redeemed: m.redeemed,
                    cancelled: m.cancelled,
                })
                .collect(),
        }
    }
}
