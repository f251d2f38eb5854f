//! Courses and pools: how an admin's input becomes them, and the operations on them.

use serde::Deserialize;

use super::text::{parse_launch_url, parse_prose, parse_text};
use crate::domain::{
    AuditAction, Caller, Course, CourseId, DEFAULT_SHARDS, FIRST_VERSION, MAX_SHARDS, Page, Pool,
    PoolFilter, PoolId, PoolStatus, Resource, Summary,
};
use crate::error::{Error, ErrorCode, Missing, Result, Validator};
use crate::identity::OrgId;
use crate::keys::KeyTag;
use crate::store::{Courses, Pools};
use crate::time::{self, Timestamp};

/// Longest course title or pool name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest course description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 4000;
/// Longest content availability, in days.
pub const MAX_AVAILABILITY_DAYS: u16 = 180;
/// Longest search text, in characters.
pub const MAX_SEARCH_CHARS: usize = 200;

/// A course as an admin sends it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CourseInput {
    #[schema(min_length = 1, max_length = 200)]
    pub title: String,
    #[serde(default)]
    #[schema(max_length = 4000)]
    pub description: Option<String>,
    /// Where the course runs: an https URL that launches go to, with a signed token.
    #[serde(default)]
    #[schema(max_length = 2000, pattern = "^https://")]
    pub launch_url: Option<String>,
}

/// Changes to a course: its description and launch URL (`null` removes either). The title
/// stays: pools keep the title they were made with.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CoursePatch {
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<String>, max_length = 4000)]
    pub description: Option<Option<String>>,
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<String>, max_length = 2000, pattern = "^https://")]
    pub launch_url: Option<Option<String>>,
}

/// A field that may be absent (leave it), `null` (remove it) or a value.
mod double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(d).map(Some)
    }
}

/// A pool as an admin sends it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolInput {
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    pub course_id: String,
    /// RFC 3339, years 2000 to 9999 in UTC.
    #[schema(format = DateTime)]
    pub starts_at: String,
    /// After `starts_at`.
    #[schema(format = DateTime)]
    pub expires_at: String,
    #[schema(minimum = 1, maximum = 180)]
    pub content_availability_days: i64,
    /// How many items carry the pool's counts, so that thousands of redemptions a second do
    /// not queue on one item (see docs/scale.md); 100 when not given. Fixed at creation.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 100)]
    pub counter_shards: Option<i64>,
}

/// Changes to a pool; absent fields stay as they are.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolPatch {
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    #[schema(format = DateTime)]
    pub starts_at: Option<String>,
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    #[schema(minimum = 1, maximum = 180)]
    pub content_availability_days: Option<i64>,
    pub deactivated: Option<bool>,
}

fn parse_shards(shards: Option<i64>) -> Result<u16, String> {
    match shards {
        None => Ok(DEFAULT_SHARDS),
        Some(n) if (1..=i64::from(MAX_SHARDS)).contains(&n) => Ok(n as u16),
        Some(_) => Err(format!("counter_shards is 1 to {MAX_SHARDS}")),
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

/// The years a pool's dates may fall in, once converted to UTC: the stored fixed-width form
/// has four digits, and nothing before 2000 is a training window.
const YEARS: std::ops::RangeInclusive<i32> = 2000..=9999;

fn parse_instant(text: &str) -> Result<Timestamp, String> {
    let at = time::parse(text)
        .ok_or_else(|| "expected an RFC 3339 timestamp such as 2026-01-31T09:00:00Z".to_string())?;
    if !YEARS.contains(&chrono::Datelike::year(&at)) {
        return Err(format!(
            "dates must fall in the years {} to {} (in UTC)",
            YEARS.start(),
            YEARS.end()
        ));
    }
    Ok(at)
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
pub async fn create_course<S: Courses + ?Sized>(
    store: &S,
    caller: &Caller,
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
    let launch_url = match input.launch_url.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(url) => v.check("launch_url", parse_launch_url(url)),
    };
    v.finish()?;
    let course = Course {
        course_id: CourseId::new(),
        org: caller.org.clone(),
        title: title.unwrap_or_default(),
        description,
        launch_url,
        created_at: now,
    };
    let record = caller.record(
        AuditAction::CourseCreated,
        Resource::new("course", course.course_id),
        Summary::new().with("title", course.title.clone()),
        now,
    );
    store.put_course(&course, &record).await?;
    Ok(course)
}

/// Changes a course's description or launch URL.
pub async fn update_course<S: Courses + ?Sized>(
    store: &S,
    caller: &Caller,
    course_id: &str,
    patch: CoursePatch,
    now: Timestamp,
) -> Result<Course> {
    let org = &caller.org;
    let id = CourseId::parse(course_id).ok_or(Error::NotFound(Missing::Course))?;
    let mut v = Validator::default();
    let description = patch
        .description
        .map(|d| match d.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(d) => v.check(
                "description",
                parse_prose(d, MAX_DESCRIPTION_CHARS, "description"),
            ),
        });
    let launch_url = patch.launch_url.map(|u| match u.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(u) => v.check("launch_url", parse_launch_url(u)),
    });
    v.finish()?;
    let before = store
        .get_course(org, &id)
        .await?
        .ok_or(Error::NotFound(Missing::Course))?;
    let mut course = before.clone();
    if let Some(description) = description {
        course.description = description;
    }
    if let Some(launch_url) = launch_url {
        course.launch_url = launch_url;
    }
    let record = caller.record(
        AuditAction::CourseUpdated,
        Resource::new("course", course.course_id),
        Summary::changes(&before, &course, &["description", "launch_url"]),
        now,
    );
    if !store.replace_course(&course, &record).await? {
        return Err(Error::NotFound(Missing::Course));
    }
    Ok(course)
}

/// Creates a pool for a course of the admin's organization.
pub async fn create_pool<S: Courses + Pools + ?Sized>(
    store: &S,
    caller: &Caller,
    input: PoolInput,
    now: Timestamp,
) -> Result<Pool> {
    let org = &caller.org;
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
    let shards = v.check("counter_shards", parse_shards(input.counter_shards));
    if let (Some(s), Some(e)) = (starts_at, expires_at)
        && e <= s
    {
        v.fail("expires_at", "expires_at must be after starts_at");
    }
    v.finish()?;
    let (Some(name), Some(course_id), Some(starts_at), Some(expires_at), Some(days), Some(shards)) =
        (name, course_id, starts_at, expires_at, days, shards)
    else {
        return Err(anyhow::anyhow!("validator passed with a missing field").into());
    };
    let Some(course) = store.get_course(org, &course_id).await? else {
        return Err(Error::NotFound(Missing::Course));
    };
    let pool = Pool {
        pool_id: PoolId::new(),
        org: org.clone(),
        name,
        course_id,
        course_title: Some(course.title),
        starts_at,
        expires_at,
        content_availability_days: days,
        deactivated: false,
        total_keys: 0,
        redeemed_count: 0,
        version: FIRST_VERSION,
        change_seq: 0,
        shards,
        key_tag: Some(
            KeyTag::random().map_err(|e| anyhow::anyhow!("the OS random source failed: {e}"))?,
        ),
        scheduled_mark: None,
        created_at: now,
        updated_at: now,
    };
    let record = caller.record(
        AuditAction::PoolCreated,
        Resource::new("pool", pool.pool_id),
        Summary::new()
            .with("name", pool.name.clone())
            .with("course_id", pool.course_id.to_string()),
        now,
    );
    store.put_pool(&pool, &record).await?;
    Ok(pool)
}

/// Reads a pool of the admin's organization.
pub async fn get_pool<S: Pools + ?Sized>(store: &S, org: &OrgId, pool_id: &str) -> Result<Pool> {
    let id = PoolId::parse(pool_id).ok_or(Error::NotFound(Missing::Pool))?;
    store
        .get_pool(org, &id)
        .await?
        .ok_or(Error::NotFound(Missing::Pool))
}

/// Applies a patch, validated against the pool as it is; retries when another edit raced it.
pub async fn update_pool<S: Pools + ?Sized>(
    store: &S,
    caller: &Caller,
    pool_id: &str,
    patch: PoolPatch,
    now: Timestamp,
) -> Result<Pool> {
    let org = &caller.org;
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
        let action = match (current.deactivated, next.deactivated) {
            (false, true) => AuditAction::PoolDeactivated,
            (true, false) => AuditAction::PoolReactivated,
            _ => AuditAction::PoolUpdated,
        };
        let fields = [
            "name",
            "starts_at",
            "expires_at",
            "content_availability_days",
            "deactivated",
        ];
        let record = caller.record(
            action,
            Resource::new("pool", next.pool_id),
            Summary::changes(&current, &next, &fields),
            now,
        );
        if store
            .update_pool_settings(&next, current.version, &record)
            .await?
        {
            return Ok(next);
        }
    }
    Err(Error::Conflict {
        code: ErrorCode::ConcurrentUpdate,
        message: "the pool was changed by someone else at the same time; try again".into(),
    })
}

/// Which page of the organization's pools to list, as a request names it: each field is
/// checked by `list_pools`.
#[derive(Debug, Clone, Copy)]
pub struct PoolListing<'a> {
    /// Words that the pool's name or its course's title contains.
    pub search: Option<&'a str>,
    /// Only pools in this status at the time of the listing.
    pub status: Option<&'a str>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<&'a str>,
    /// Page size.
    pub limit: usize,
}

impl<'a> PoolListing<'a> {
    /// A page of `limit` pools, any name and status, from `cursor`.
    pub fn page(cursor: Option<&'a str>, limit: usize) -> Self {
        Self {
            search: None,
            status: None,
            cursor,
            limit,
        }
    }
}

/// One page of the organization's pools, optionally filtered by name and by status at `now`.
pub async fn list_pools<S: Pools + ?Sized>(
    store: &S,
    org: &OrgId,
    listing: PoolListing<'_>,
    now: Timestamp,
) -> Result<Page<Pool>> {
    let PoolListing {
        search,
        status,
        cursor,
        limit,
    } = listing;
    let search = parse_search(search)?;
    let status = match status {
        None | Some("") => None,
        Some(s) => Some(PoolStatus::parse(s).ok_or_else(|| {
            Error::field(
                "status",
                "status is scheduled, active, expired or deactivated",
            )
        })?),
    };
    let filter = PoolFilter {
        search,
        status: status.map(|s| (s, now)),
    };
    store.list_pools(org, &filter, cursor, limit).await
}

/// One page of the organization's courses, optionally filtered by title.
pub async fn list_courses<S: Courses + ?Sized>(
    store: &S,
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
            course_title: None,
            starts_at: now,
            expires_at: now + chrono::Duration::days(1),
            content_availability_days: 30,
            deactivated: false,
            total_keys: 0,
            redeemed_count: 0,
            version: 1,
            change_seq: 0,
            shards: 4,
            key_tag: None,
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
    fn days_and_search_validation() {
        assert!(parse_days(0).is_err());
        assert!(parse_days(181).is_err());
        assert!(parse_days(-1).is_err());
        assert_eq!(parse_days(180), Ok(180));
        assert!(parse_search(Some(&"x".repeat(201))).is_err());
        assert_eq!(parse_search(Some(" AbC ")).unwrap().as_deref(), Some("abc"));
    }
}
