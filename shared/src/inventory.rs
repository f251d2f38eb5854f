//! A pool's keys: adding them (typed, pasted or generated), listing and removing them.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::identity::{OrgId, UserId};
use crate::keys::{self, KeyCode};
use crate::pools::{self, AssignmentId, PoolId};
use crate::store::{Page, RemoveConflict, Store};
use crate::time::{self, Timestamp};

/// Most keys one request may add or generate synchronously.
pub const MAX_SYNC_KEYS: usize = 10_000;
/// How often a generation retries keys that collided before giving up.
const MAX_REGENERATIONS: usize = 5;
/// Longest echo of a rejected line.
const MAX_ECHO_CHARS: usize = 80;

/// Whether a key can still be redeemed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    Available,
    Redeemed,
}

impl KeyStatus {
    /// The status's name in the API and in storage keys.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Available => "available",
            KeyStatus::Redeemed => "redeemed",
        }
    }

    /// Parses a status filter.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "available" => Some(Self::Available),
            "redeemed" => Some(Self::Redeemed),
            _ => None,
        }
    }
}

/// Where a key came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeySource {
    Custom,
    Generated,
}

/// A key to insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    pub key: KeyCode,
    pub source: KeySource,
}

/// A stored key and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub key: KeyCode,
    pub org: OrgId,
    pub pool_id: PoolId,
    pub status: KeyStatus,
    pub source: KeySource,
    #[serde(with = "time::rfc3339")]
    pub created_at: Timestamp,
    #[serde(default)]
    pub redeemed_by: Option<UserId>,
    #[serde(default, with = "time::rfc3339::option")]
    pub redeemed_at: Option<Timestamp>,
    #[serde(default)]
    pub assignment_id: Option<AssignmentId>,
    /// Learners whose assignment from this key an admin cancelled: they may not redeem it again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub barred: Vec<UserId>,
    /// When the assignment it created ends.
    #[serde(
        default,
        with = "time::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub assignment_expires_at: Option<Timestamp>,
    /// The job that wrote it, for keys written by large generations and imports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<crate::pools::JobId>,
    /// When an export first handed it out. Absent until then, which filters test for.
    #[serde(
        default,
        with = "time::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub distributed_at: Option<Timestamp>,
}

/// Which of a pool's keys a listing or an export wants.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KeyFilter {
    /// Only keys of this status.
    pub status: Option<KeyStatus>,
    /// Only keys that no export has marked as distributed.
    pub undistributed: bool,
}

/// One pasted line that was not added, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RejectedLine {
    /// Line number, counting from 1 (blank lines count).
    pub line: usize,
    /// The line as sent (trimmed, shortened when long).
    pub key: String,
    pub code: &'static str,
    pub message: String,
}

/// What an add of custom keys did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AddReport {
    /// Keys added, as shown to learners.
    pub added: Vec<String>,
    pub rejected: Vec<RejectedLine>,
}

fn echo(line: &str) -> String {
    let trimmed = line.trim();
    if trimmed.chars().count() > MAX_ECHO_CHARS {
        let mut s: String = trimmed.chars().take(MAX_ECHO_CHARS).collect();
        s.push('…');
        s
    } else {
        trimmed.to_string()
    }
}

/// Splits a text/plain body into lines, ignoring blank ones but keeping line numbers.
pub fn lines_of_text(body: &str) -> Vec<(usize, &str)> {
    body.split('\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
        .filter(|(_, l)| !l.trim().is_empty())
        .collect()
}

/// Numbers a JSON list of keys like lines, ignoring blank entries.
pub fn lines_of_list(keys: &[String]) -> Vec<(usize, &str)> {
    keys.iter()
        .enumerate()
        .map(|(i, l)| (i + 1, l.as_str()))
        .filter(|(_, l)| !l.trim().is_empty())
        .collect()
}

/// Validates pasted lines without the store: format errors and duplicates within the paste.
pub fn validate_lines(lines: &[(usize, &str)]) -> (Vec<(usize, KeyCode)>, Vec<RejectedLine>) {
    let mut seen: HashMap<KeyCode, usize> = HashMap::with_capacity(lines.len());
    let mut valid = Vec::with_capacity(lines.len());
    let mut rejected = Vec::new();
    for &(line, text) in lines {
        match keys::parse_custom(text) {
            Err(e) => rejected.push(RejectedLine {
                line,
                key: echo(text),
                code: e.code(),
                message: e.to_string(),
            }),
            Ok(key) => {
                if let Some(first) = seen.get(&key) {
                    rejected.push(RejectedLine {
                        line,
                        key: echo(text),
                        code: "duplicate_in_request",
                        message: format!("the same key as line {first}"),
                    });
                } else {
                    seen.insert(key.clone(), line);
                    valid.push((line, key));
                }
            }
        }
    }
    (valid, rejected)
}

pub(crate) fn already_exists(line: usize, key: &KeyCode) -> RejectedLine {
    RejectedLine {
        line,
        key: key.display_form(),
        code: "already_exists",
        message: "this key exists already (keys are unique across all pools)".into(),
    }
}

pub(crate) fn rejected_error(mut rejected: Vec<RejectedLine>) -> Error {
    let n = rejected.len();
    Error::BadRequest {
        code: "keys_rejected",
        message: format!(
            "{n} key{} rejected; nothing was added (send ?partial=true to add the others)",
            if n == 1 { " was" } else { "s were" }
        ),
        details: Some({
            // A very long list shows its first thousand lines, and how many there are.
            let total = rejected.len();
            rejected.truncate(MAX_REJECTED_SHOWN);
            serde_json::json!({ "rejected": rejected, "rejected_count": total })
        }),
    }
}

/// Rejected lines an answer lists; the count says how many there are in all.
pub const MAX_REJECTED_SHOWN: usize = 1000;

/// Adds custom keys to a pool: all or nothing unless `partial`, with a reason for every line
/// that cannot be added.
pub async fn add_custom_keys(
    store: &dyn Store,
    org: &OrgId,
    pool_id: &str,
    lines: &[(usize, &str)],
    partial: bool,
    now: Timestamp,
) -> Result<AddReport> {
    let pool = pools::get_pool(store, org, pool_id).await?;
    if lines.is_empty() {
        return Err(Error::bad_request("no_keys", "the request holds no keys"));
    }
    if lines.len() > MAX_SYNC_KEYS {
        return Err(Error::bad_request(
            "too_many_keys",
            format!("at most {MAX_SYNC_KEYS} keys per request; split the list"),
        ));
    }
    let (mut valid, mut rejected) = validate_lines(lines);
    let codes: Vec<KeyCode> = valid.iter().map(|(_, k)| k.clone()).collect();
    let existing = store.existing_keys(&codes).await?;
    if !existing.is_empty() {
        valid.retain(|(line, key)| {
            let taken = existing.contains(key);
            if taken {
                rejected.push(already_exists(*line, key));
            }
            !taken
        });
    }
    if !rejected.is_empty() && !partial {
        rejected.sort_by_key(|r| r.line);
        return Err(rejected_error(rejected));
    }
    let new_keys: Vec<NewKey> = valid
        .iter()
        .map(|(_, key)| NewKey {
            key: key.clone(),
            source: KeySource::Custom,
        })
        .collect();
    let outcome = store
        .insert_keys(org, &pool.pool_id, &new_keys, now)
        .await?;
    if !outcome.taken.is_empty() {
        // Another request took these keys between our check and our write.
        for (line, key) in &valid {
            if outcome.taken.contains(key) {
                rejected.push(already_exists(*line, key));
            }
        }
        if !partial {
            store
                .remove_available_keys(org, &pool.pool_id, &outcome.inserted)
                .await?;
            rejected.sort_by_key(|r| r.line);
            return Err(rejected_error(rejected));
        }
    }
    rejected.sort_by_key(|r| r.line);
    Ok(AddReport {
        added: outcome.inserted.iter().map(KeyCode::display_form).collect(),
        rejected,
    })
}

/// Generates `count` new keys into a pool; keys that collide are regenerated, never dropped.
pub async fn generate_keys(
    store: &dyn Store,
    org: &OrgId,
    pool_id: &str,
    count: i64,
    now: Timestamp,
) -> Result<Vec<KeyCode>> {
    if count < 1 || count > MAX_SYNC_KEYS as i64 {
        return Err(Error::field(
            "count",
            format!("count is 1 to {MAX_SYNC_KEYS} per request"),
        ));
    }
    let pool = pools::get_pool(store, org, pool_id).await?;
    let mut wanted = count as usize;
    let mut created = Vec::with_capacity(wanted);
    for _ in 0..=MAX_REGENERATIONS {
        let batch: Vec<NewKey> = keys::generate(wanted)
            .map_err(|e| anyhow::anyhow!("the OS random source failed: {e}"))?
            .into_iter()
            .map(|key| NewKey {
                key,
                source: KeySource::Generated,
            })
            .collect();
        let outcome = store.insert_keys(org, &pool.pool_id, &batch, now).await?;
        created.extend(outcome.inserted);
        wanted = outcome.taken.len();
        if wanted == 0 {
            return Ok(created);
        }
        tracing::warn!(collisions = wanted, "generated keys collided; regenerating");
    }
    Err(anyhow::anyhow!("generated keys kept colliding after {MAX_REGENERATIONS} rounds").into())
}

/// Removes a key that was never redeemed.
pub async fn remove_key(store: &dyn Store, org: &OrgId, pool_id: &str, key: &str) -> Result<()> {
    let pool = pools::get_pool(store, org, pool_id).await?;
    let key = KeyCode::parse(key).map_err(|_| Error::NotFound("key"))?;
    match store.remove_key(org, &pool.pool_id, &key).await? {
        Ok(()) => Ok(()),
        Err(RemoveConflict::NotFound) => Err(Error::NotFound("key")),
        Err(RemoveConflict::Redeemed) => Err(Error::KeyRedeemed),
    }
}

/// One page of a pool's keys.
pub async fn list_keys(
    store: &dyn Store,
    org: &OrgId,
    pool_id: &str,
    status: Option<&str>,
    undistributed: Option<&str>,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Page<KeyRecord>> {
    let mut v = crate::error::Validator::default();
    let status = match status {
        None | Some("") => None,
        Some(s) => v.check(
            "status",
            KeyStatus::parse(s).ok_or("status is available or redeemed"),
        ),
    };
    let undistributed = match undistributed {
        None | Some("") | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            v.fail("undistributed", "undistributed is true or false");
            false
        }
    };
    v.finish()?;
    let pool = pools::get_pool(store, org, pool_id).await?;
    let filter = KeyFilter {
        status,
        undistributed,
    };
    store.list_keys(&pool.pool_id, &filter, cursor, limit).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_lines_keep_numbers_and_skip_blanks() {
        let lines = lines_of_text("abcd\r\n\n  efgh  \n\n");
        assert_eq!(lines, vec![(1, "abcd"), (3, "  efgh  ")]);
    }

    #[test]
    fn validation_reports_every_bad_line() {
        let lines = lines_of_text("abcd-1234\nab\nABCD1234\nok-key-1\nbad key!");
        let (valid, rejected) = validate_lines(&lines);
        assert_eq!(valid.len(), 2);
        let codes: Vec<_> = rejected.iter().map(|r| (r.line, r.code)).collect();
        assert_eq!(
            codes,
            vec![
                (2, "too_short"),
                (3, "duplicate_in_request"),
                (5, "invalid_characters")
            ]
        );
        assert!(rejected[1].message.contains("line 1"));
    }
}
