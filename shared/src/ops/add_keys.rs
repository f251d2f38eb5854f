//! Adding custom keys: typed one by one or pasted one per line, each line checked, all or
//! nothing unless partial.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::pools;
use crate::domain::{KeySource, NewKey};
use crate::error::{Error, Result};
use crate::identity::OrgId;
use crate::keys::{self, KeyCode};
use crate::ops::limits::CollisionBudget;
use crate::settings::Settings;
use crate::store::{Counters, Keys, Pools};
use crate::time::Timestamp;

/// Most keys one request may add or generate synchronously.
pub const MAX_SYNC_KEYS: usize = 10_000;
/// Longest echo of a rejected line.
const MAX_ECHO_CHARS: usize = 80;

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

/// The keys of a paste that exist already. Those that another organization holds are spent
/// from the organization's collision budget before anything is answered about them.
pub(crate) async fn taken_keys<S: Keys + Counters + ?Sized>(
    store: &S,
    budget: &mut CollisionBudget,
    org: &OrgId,
    codes: &[KeyCode],
) -> Result<HashSet<KeyCode>> {
    let existing = store.existing_keys(codes).await?;
    let foreign = existing
        .iter()
        .filter(|(_, holder)| holder.as_ref() != Some(org))
        .count();
    budget.spend(store, foreign as u64).await?;
    Ok(existing.into_iter().map(|(key, _)| key).collect())
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
pub async fn add_custom_keys<S: Pools + Keys + Counters + ?Sized>(
    store: &S,
    settings: &Settings,
    org: &OrgId,
    pool_id: &str,
    lines: &[(usize, &str)],
    partial: bool,
    now: Timestamp,
) -> Result<AddReport> {
    let (pool, mut budget) = tokio::try_join!(
        pools::get_pool(store, org, pool_id),
        CollisionBudget::read(store, settings, org, now)
    )?;
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
    let existing = taken_keys(store, &mut budget, org, &codes).await?;
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
