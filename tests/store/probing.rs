//! Probing for other organizations' keys: keys are unique system-wide, so adding a key that
//! another organization holds tells the admin it exists. Every such collision is spent from a
//! per-organization budget before it is answered; once spent, custom key additions get 429.

use keypool::error::ErrorCode;
use std::sync::Arc;

use chrono::Duration;
use keypool::Error;
use keypool::domain::Pool;
use keypool::ops::add_keys::AddReport;
use keypool::settings::Settings;
use keypool_tests::World;

use super::fixtures::*;

fn budget() -> u64 {
    Settings::default().foreign_collisions.max
}

async fn paste(
    w: &World,
    pool: &Pool,
    lines: &[&str],
    partial: bool,
) -> keypool::Result<AddReport> {
    w.add_custom_keys(
        pool.org.as_str(),
        &pool.pool_id.to_string(),
        &numbered(lines),
        partial,
    )
    .await
}

fn spent(result: &keypool::Result<AddReport>) -> Option<u64> {
    match result {
        Err(Error::RateLimited {
            code: ErrorCode::CollisionBudgetSpent,
            retry_after_secs,
            ..
        }) => Some(*retry_after_secs),
        _ => None,
    }
}

/// Another organization's pool with `n` keys, `THEIRS-000`...
async fn victim(w: &World, n: usize) -> Vec<String> {
    let theirs = new_pool(w, OTHER_ORG, 30).await;
    let keys: Vec<String> = (0..n).map(|i| format!("THEIRS-{i:03}")).collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    add_keys(w, &theirs, &refs).await;
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probing_one_key_at_a_time_stops_at_the_budget() {
    let w = World::new().await;
    let theirs = victim(&w, 30).await;
    let mine = new_pool(&w, ORG, 30).await;
    let max = budget() as usize;
    for (i, key) in theirs.iter().take(max).enumerate() {
        // One bad line refuses the paste whole: the probe itself writes nothing.
        let result = paste(&w, &mine, &[key.as_str(), "MY-OWN-NEW-KEY"], false).await;
        assert_eq!(
            line_codes(&rejected_lines(result)),
            vec![(1, "already_exists")],
            "probe {i}"
        );
    }
    let result = paste(&w, &mine, &[theirs[max].as_str()], false).await;
    let wait = spent(&result).unwrap_or_else(|| panic!("expected 429, got {result:?}"));
    assert!(wait > 0 && wait <= 2 * 24 * 3600, "{wait}");
    // Paused for every custom key addition of the organization, even harmless ones...
    assert!(spent(&paste(&w, &mine, &["MY-OWN-NEW-KEY"], false).await).is_some());
    assert!(spent(&paste(&w, &mine, &["MY-OWN-NEW-KEY"], true).await).is_some());
    assert_eq!(reload(&w, &mine).await.total_keys, 0, "nothing was written");
    // ...but generating keys, which tells nothing, still works.
    assert_eq!(generate(&w, &mine, 3).await.len(), 3);
    // The other organization is not affected.
    let theirs_too = new_pool(&w, OTHER_ORG, 30).await;
    add_keys(&w, &theirs_too, &["THEIR-NEW-KEY"]).await;

    // The budget comes back with time.
    w.clock.advance(Duration::seconds(wait as i64));
    let report = paste(&w, &mine, &["MY-OWN-NEW-KEY"], false).await.unwrap();
    assert_eq!(report.added, vec!["MYOWNNEWKEY"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paste_that_would_pass_the_budget_learns_nothing() {
    let w = World::new().await;
    let theirs = victim(&w, 30).await;
    let mine = new_pool(&w, ORG, 30).await;
    let max = budget() as usize;
    let mut lines: Vec<&str> = theirs.iter().take(max + 5).map(String::as_str).collect();
    lines.push("MY-OWN-NEW-KEY");
    // More collisions than the budget holds: refused whole, with no per-line answer.
    assert!(spent(&paste(&w, &mine, &lines, true).await).is_some());
    assert_eq!(reload(&w, &mine).await.total_keys, 0);
    // Within the budget, the same lines are answered (partially added here).
    let report = paste(&w, &mine, &lines[max - 5..], true).await.unwrap();
    assert_eq!(report.rejected.len(), 10);
    assert_eq!(report.added, vec!["MYOWNNEWKEY"]);
    // Ten spent; ten left.
    let report = paste(&w, &mine, &lines[..10], true).await;
    assert_eq!(report.unwrap().rejected.len(), 10);
    assert!(spent(&paste(&w, &mine, &lines[10..11], true).await).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collisions_with_ones_own_keys_cost_nothing() {
    let w = World::new().await;
    let mine = new_pool(&w, ORG, 30).await;
    let other_of_mine = new_pool(&w, ORG, 30).await;
    add_keys(&w, &mine, &["ALREADY-MINE"]).await;
    for _ in 0..budget() + 5 {
        let result = paste(&w, &other_of_mine, &["ALREADY-MINE"], false).await;
        assert_eq!(
            line_codes(&rejected_lines(result)),
            vec![(1, "already_exists")]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_probes_get_no_more_answers_than_the_budget() {
    let w = Arc::new(World::new().await);
    let theirs = victim(&w, 30).await;
    let mine = new_pool(&w, ORG, 30).await;
    let barrier = Arc::new(tokio::sync::Barrier::new(theirs.len()));
    let tasks: Vec<_> = theirs
        .into_iter()
        .map(|key| {
            let (w, mine, barrier) = (w.clone(), mine.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                paste(&w, &mine, &[key.as_str()], false).await
            })
        })
        .collect();
    let (mut answered, mut refused) = (0, 0);
    for task in tasks {
        let result = task.await.unwrap();
        if spent(&result).is_some() {
            refused += 1;
        } else {
            assert_eq!(
                line_codes(&rejected_lines(result)),
                vec![(1, "already_exists")]
            );
            answered += 1;
        }
    }
    assert_eq!(
        (answered, refused),
        (budget() as usize, 30 - budget() as usize)
    );
}
