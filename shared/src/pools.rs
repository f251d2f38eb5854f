//! Courses and pools: what they are, how input becomes them, and the operations on them.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, Validator};
use crate::identity::OrgId;
use crate::store::{Page, Store};
use crate::time::{self, Timestamp};

/// Longest course title or pool name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest course description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 4000;
/// Longest content availability, in days.
pub const MAX_AVAILABILITY_DAYS: u16 = 180;
/// Longest search text, in characters.
pub const MAX_SEARCH_CHARS: usize = 200;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub uuid::Uuid);

        impl $name {
            /// A new, time-ordered id.
            pub fn new() -> Self {
                Self(uuid::Uuid::now_v7())
            }
            /// Parses an id from a path or body; `None` for anything that is not one.
            pub fn parse(text: &str) -> Option<Self> {
                uuid::Uuid::try_parse(text).ok().map(Self)
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }
    };
}

uuid_id!(
    /// A course's id.
    CourseId
);
uuid_id!(
    /// A pool's id.
    PoolId
);
uuid_id!(
    /// An assignment's id.
    AssignmentId
);
uuid_id!(
    /// An export's id.
    ExportId
);
uuid_id!(
    /// A background key job's id.
    JobId
);

/// A course that pools hand out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Course {
    pub course_id: CourseId,
    pub org: OrgId,
    pub title: String,
    pub description: Option<String>,
    #[serde(with = "time::rfc3339")]
    pub created_at: Timestamp,
}

/// A pool of keys for one course, redeemable within a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pool {
    pub pool_id: PoolId,
    pub org: OrgId,
    pub name: String,
    pub course_id: CourseId,
    #[serde(with = "time::rfc3339")]
    pub starts_at: Timestamp,
    #[serde(with = "time::rfc3339")]
    pub expires_at: Timestamp,
    pub content_availability_days: u16,
    pub deactivated: bool,
    /// Keys in the pool; changes only in the same atomic write as the keys.
    pub total_keys: u64,
    /// Keys redeemed; changes only in the redemption transaction.
    pub redeemed_count: u64,
    /// Bumped by every metadata update, for optimistic concurrency.
    pub version: u64,
    /// Bumped by every write that changes the pool's keys (added, removed, redeemed,
    /// cancelled), in the same atomic write.
    #[serde(default)]
    pub change_seq: u64,
    /// The change mark (`version + change_seq`) that the last scheduled export covered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_mark: Option<u64>,
    #[serde(with = "time::rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "time::rfc3339")]
    pub updated_at: Timestamp,
}

impl Pool {
    /// Grows with every change of the pool's settings or keys.
    pub fn change_mark(&self) -> u64 {
        self.version + self.change_seq
    }

    /// True while keys can be redeemed.
    pub fn is_active(&self, now: Timestamp) -> bool {
        !self.deactivated && self.starts_at <= now && now < self.expires_at
    }

    /// Ok while active, otherwise the error that tells the learner the dates.
    pub fn check_active(&self, now: Timestamp) -> Result<()> {
        if self.is_active(now) {
            Ok(())
        } else {
            Err(Error::PoolNotActive {
                starts_at: self.starts_at,
                expires_at: self.expires_at,
                deactivated: self.deactivated,
            })
        }
    }

    /// When an assignment made at `redeemed_at` expires.
    pub fn assignment_expiry(&self, redeemed_at: Timestamp) -> Timestamp {
        redeemed_at + chrono::Duration::days(i64::from(self.content_availability_days))
    }
}

/// A course as an admin sends it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CourseInput {
    pub title: String,
    #[serde(default)]
    pub description: Option<String>,
}

/// A pool as an admin sends it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolInput {
    pub name: String,
    pub course_id: String,
    pub starts_at: String,
    pub expires_at: String,
    pub content_availability_days: i64,
}

/// Changes to a pool; absent fields stay as they are.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolPatch {
    pub name: Option<String>,
    pub starts_at: Option<String>,
    pub expires_at: Option<String>,
    pub content_availability_days: Option<i64>,
    pub deactivated: Option<bool>,
}

fn parse_text(text: &str, max: usize, what: &str) -> Result<String, String> {
    parse_text_allowing(text, max, what, &[])
}

/// Like `parse_text`, for prose: line breaks and tabs are kept.
fn parse_prose(text: &str, max: usize, what: &str) -> Result<String, String> {
    parse_text_allowing(text, max, what, &['\n', '\r', '\t'])
}

fn parse_text_allowing(
    text: &str,
    max: usize,
    what: &str,
    allowed: &[char],
) -> Result<String, String> {
    let trimmed = text.trim();
    let chars = trimmed.chars().count();
    if chars == 0 {
        Err(format!("{what} must not be empty"))
    } else if chars > max {
        Err(format!("{what} has at most {max} characters"))
    } else if trimmed
        .chars()
        .any(|c| c.is_control() && !allowed.contains(&c))
    {
        Err(format!("{what} must not contain control characters"))
    } else {
        Ok(trimmed.to_string())
    }
}

fn parse_days(days: i64) -> Result<u16, String> {
    if (1..=i64::from(MAX_AVAILABILITY_DAYS)).contains(&days) {
        Ok(days as u16)
    } else {
        Err(format!(
            "content availability is 1 to {MAX_AVAILABILITY_DAYS} days"
        ))
    }
}

fn parse_instant(text: &str) -> Result<Timestamp, String> {
    time::parse(text)
        .ok_or_else(|| "expected an RFC 3339 timestamp such as 2026-01-31T09:00:00Z".into())
}

/// The search text, lower-cased for case-insensitive matching; empty means no filter.
pub fn parse_search(search: Option<&str>) -> Result<Option<String>> {
    match search.map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) if s.chars().count() > MAX_SEARCH_CHARS => Err(Error::field(
            "search",
            format!("search has at most {MAX_SEARCH_CHARS} characters"),
        )),
        Some(s) => Ok(Some(s.to_lowercase())),
    }
}

/// Creates a course in the admin's organization.
pub async fn create_course(
    store: &dyn Store,
    org: &OrgId,
    input: CourseInput,
    now: Timestamp,
) -> Result<Course> {
    let mut v = Validator::default();
    let title = v.check("title", parse_text(&input.title, MAX_NAME_CHARS, "title"));
    let description = match input.description.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(d) => v.check(
            "description",
            parse_prose(d, MAX_DESCRIPTION_CHARS, "description"),
        ),
    };
    v.finish()?;
    let course = Course {
        course_id: CourseId::new(),
        org: org.clone(),
        title: title.unwrap_or_default(),
        description,
        created_at: now,
    };
    store.put_course(&course).await?;
    Ok(course)
}

/// Creates a pool for a course of the admin's organization.
pub async fn create_pool(
    store: &dyn Store,
    org: &OrgId,
    input: PoolInput,
    now: Timestamp,
) -> Result<Pool> {
    let mut v = Validator::default();
    let name = v.check("name", parse_text(&input.name, MAX_NAME_CHARS, "name"));
    let course_id = v.check(
        "course_id",
        CourseId::parse(&input.course_id).ok_or("expected a course id"),
    );
    let starts_at = v.check("starts_at", parse_instant(&input.starts_at));
    let expires_at = v.check("expires_at", parse_instant(&input.expires_at));
    let days = v.check(
        "content_availability_days",
        parse_days(input.content_availability_days),
    );
    if let (Some(s), Some(e)) = (starts_at, expires_at)
        && e <= s
    {
        v.fail("expires_at", "expires_at must be after starts_at");
    }
    v.finish()?;
    let (Some(name), Some(course_id), Some(starts_at), Some(expires_at), Some(days)) =
        (name, course_id, starts_at, expires_at, days)
    else {
        return Err(anyhow::anyhow!("validator passed with a missing field").into());
    };
    if store.get_course(org, &course_id).await?.is_none() {
        return Err(Error::NotFound("course"));
    }
    let pool = Pool {
        pool_id: PoolId::new(),
        org: org.clone(),
        name,
        course_id,
        starts_at,
        expires_at,
        content_availability_days: days,
        deactivated: false,
        total_keys: 0,
        redeemed_count: 0,
        version: 1,
        change_seq: 0,
        scheduled_mark: None,
        created_at: now,
        updated_at: now,
    };
    store.put_pool(&pool).await?;
    Ok(pool)
}

/// Reads a pool of the admin's organization.
pub async fn get_pool(store: &dyn Store, org: &OrgId, pool_id: &str) -> Result<Pool> {
    let id = PoolId::parse(pool_id).ok_or(Error::NotFound("pool"))?;
    store
        .get_pool(org, &id)
        .await?
        .ok_or(Error::NotFound("pool"))
}

/// Applies a patch, validated against the pool as it is; retries when another edit raced it.
pub async fn update_pool(
    store: &dyn Store,
    org: &OrgId,
    pool_id: &str,
    patch: PoolPatch,
    now: Timestamp,
) -> Result<Pool> {
    let mut v = Validator::default();
    let name = patch
        .name
        .as_deref()
        .and_then(|n| v.check("name", parse_text(n, MAX_NAME_CHARS, "name")));
    let starts_at = patch
        .starts_at
        .as_deref()
        .and_then(|s| v.check("starts_at", parse_instant(s)));
    let expires_at = patch
        .expires_at
        .as_deref()
        .and_then(|s| v.check("expires_at", parse_instant(s)));
    let days = patch
        .content_availability_days
        .and_then(|d| v.check("content_availability_days", parse_days(d)));
    v.finish()?;

    for _ in 0..5 {
        let current = get_pool(store, org, pool_id).await?;
        let mut next = current.clone();
        if let Some(name) = &name {
            next.name.clone_from(name);
        }
        next.starts_at = starts_at.unwrap_or(next.starts_at);
        next.expires_at = expires_at.unwrap_or(next.expires_at);
        next.content_availability_days = days.unwrap_or(next.content_availability_days);
        next.deactivated = patch.deactivated.unwrap_or(next.deactivated);
        if next.expires_at <= next.starts_at {
            return Err(Error::field(
                "expires_at",
                "expires_at must be after starts_at",
            ));
        }
        next.version = current.version + 1;
        next.updated_at = now;
        if store.update_pool_settings(&next, current.version).await? {
            return Ok(next);
        }
    }
    Err(Error::Conflict {
        code: "concurrent_update",
        message: "the pool was changed by someone else at the same time; try again".into(),
    })
}

/// One page of the organization's pools, optionally filtered by name.
pub async fn list_pools(
    store: &dyn Store,
    org: &OrgId,
    search: Option<&str>,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Page<Pool>> {
    let search = parse_search(search)?;
    store
        .list_pools(org, search.as_deref(), cursor, limit)
        .await
}

/// One page of the organization's courses, optionally filtered by title.
pub async fn list_courses(
    store: &dyn Store,
    org: &OrgId,
    search: Option<&str>,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Page<Course>> {
    let search = parse_search(search)?;
    store
        .list_courses(org, search.as_deref(), cursor, limit)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(now: Timestamp) -> Pool {
        Pool {
            pool_id: PoolId::new(),
            org: OrgId::parse("o").unwrap(),
            name: "p".into(),
            course_id: CourseId::new(),
            starts_at: now,
            expires_at: now + chrono::Duration::days(1),
            content_availability_days: 30,
            deactivated: false,
            total_keys: 0,
            redeemed_count: 0,
            version: 1,
            change_seq: 0,
            scheduled_mark: None,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn window_is_half_open_and_deactivation_wins() {
        let now = time::parse("2026-01-01T00:00:00Z").unwrap();
        let mut p = pool(now);
        assert!(p.is_active(now));
        assert!(!p.is_active(now - chrono::Duration::milliseconds(1)));
        assert!(!p.is_active(p.expires_at));
        p.deactivated = true;
        assert!(matches!(
            p.check_active(now),
            Err(Error::PoolNotActive {
                deactivated: true,
                ..
            })
        ));
    }

    #[test]
    fn assignment_lasts_the_content_availability() {
        let now = time::parse("2026-01-01T00:00:00Z").unwrap();
        let p = pool(now);
        assert_eq!(
            p.assignment_expiry(now),
            time::parse("2026-01-31T00:00:00Z").unwrap()
        );
    }

    #[test]
    fn text_and_days_validation() {
        assert!(parse_text("  ", 10, "name").is_err());
        assert!(parse_text("a\u{7}b", 10, "name").is_err());
        assert_eq!(parse_text(" ab ", 10, "name").unwrap(), "ab");
        assert!(parse_text("a\nb", 10, "name").is_err());
        assert_eq!(parse_prose("a\nb\tc", 10, "d").unwrap(), "a\nb\tc");
        assert!(parse_prose("a\u{7}b", 10, "d").is_err());
        assert!(parse_text(&"é".repeat(11), 10, "name").is_err());
        assert!(parse_days(0).is_err());
        assert!(parse_days(181).is_err());
        assert!(parse_days(-1).is_err());
        assert_eq!(parse_days(180), Ok(180));
        assert!(parse_search(Some(&"x".repeat(201))).is_err());
        assert_eq!(parse_search(Some(" AbC ")).unwrap().as_deref(), Some("abc"));
    }
}
