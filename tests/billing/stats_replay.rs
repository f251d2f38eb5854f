//! Activity counts exactly once under at-least-once delivery: the billing replay's generated
//! histories (redemptions, launches, cancellations, expiries, across a month's end) delivered
//! to the stats consumer with duplicates, re-split batches, and writes that fail or lose their
//! answer; every pool's days and totals and the organization's months count each once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use aws_lambda_events::event::dynamodb::Event;
use chrono::NaiveDate;
use keypool::domain::{Activity, Month, PoolId};
use keypool::identity::OrgId;
use keypool::store::Settled;
use keypool::store::prelude::*;
use keypool_tests::{Faults, RACE_CONFLICTS, World};
use proptest::prelude::*;

use super::replay::{Consumer, Scenario, deliver, history, history_start, scenario};

/// The stats store, failing some of its writes (counting calls from 1) part-way, or losing the
/// answer of a write that committed, and otherwise writing to the real store.
struct FlakyCounts {
    store: Arc<dyn Store>,
    calls: AtomicUsize,
    fail_at: std::collections::BTreeSet<usize>,
    lost_answers: std::collections::BTreeSet<usize>,
}

#[async_trait]
impl ActivityCounts for FlakyCounts {
    async fn count_activities(&self, activities: &[Activity]) -> Settled {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let half = activities.len() / 2;
        if self.fail_at.contains(&call) {
            let mut settled = self.store.count_activities(&activities[..half]).await;
            settled
                .failure
                .get_or_insert_with(|| anyhow::anyhow!("injected failure at write {call}").into());
            return settled;
        }
        let mut settled = self.store.count_activities(activities).await;
        if self.lost_answers.contains(&call) && settled.failure.is_none() {
            settled.settled.truncate(half);
            settled.failure = Some(anyhow::anyhow!("injected lost answer at write {call}").into());
        }
        settled
    }
}

#[async_trait]
impl Consumer for FlakyCounts {
    async fn failures(&self, event: &Event) -> Vec<String> {
        keypool::events::stats::count(self, event)
            .await
            .unwrap()
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone().unwrap_or_default())
            .collect()
    }
}

/// (redeemed, launched, cancelled) per day.
type Days = BTreeMap<NaiveDate, (u64, u64, u64)>;

/// What the stats must hold after a scenario, from its stories alone: per pool its days and
/// its (launches, launched assignments), and the organization's (redeemed, cancelled) months.
struct Expected {
    pools: Vec<(PoolId, Days, (u64, u64))>,
    months: BTreeMap<Month, (u64, u64)>,
}

fn expected(s: &Scenario, pools: &[PoolId]) -> Expected {
    let base = history_start();
    let mut out = Expected {
        pools: Vec::new(),
        months: BTreeMap::new(),
    };
    for (story, pool) in s.stories.iter().zip(pools) {
        let mut days = Days::new();
        let redeemed_at = base + chrono::Duration::minutes(story.redeemed_minute);
        days.entry(redeemed_at.date_naive()).or_default().0 += 1;
        out.months.entry(Month::of(redeemed_at)).or_default().0 += 1;
        for l in 0..story.launches {
            let at = redeemed_at + chrono::Duration::minutes(i64::from(l) + 1);
            days.entry(at.date_naive()).or_default().1 += 1;
        }
        if let Some(after) = story.cancelled_after {
            let at = redeemed_at + chrono::Duration::minutes(after);
            days.entry(at.date_naive()).or_default().2 += 1;
            out.months.entry(Month::of(at)).or_default().1 += 1;
        }
        let launches = u64::from(story.launches);
        out.pools
            .push((*pool, days, (launches, u64::from(launches > 0))));
    }
    out
}

async fn check_counted_once(store: &dyn Store, org: &OrgId, want: &Expected) {
    let from = history_start().date_naive() - chrono::Duration::days(1);
    let to = from + chrono::Duration::days(10);
    for (pool, days, totals) in &want.pools {
        let counted: Days = store
            .pool_days(pool, from, to)
            .await
            .unwrap()
            .into_iter()
            .map(|d| (d.date, (d.redeemed, d.launched, d.cancelled)))
            .collect();
        assert_eq!(&counted, days, "the days of pool {pool}");
        let t = store.pool_totals(pool).await.unwrap();
        assert_eq!((t.launches, t.launched_assignments), *totals, "pool {pool}");
    }
    let first = Month::of(history_start());
    let months: BTreeMap<Month, (u64, u64)> = store
        .month_counts(org, first, Month::parse("2026-03").unwrap())
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.month, (m.redeemed, m.cancelled)))
        .collect();
    assert_eq!(months, want.months, "the months of {org}");
}

#[test]
fn every_redemption_launch_and_cancellation_is_counted_exactly_once_under_replay() {
    counted_exactly_once_under_replay(None);
}

/// The same with a fifth of all transactions cancelled for conflicts and retried.
#[test]
fn every_redemption_launch_and_cancellation_is_counted_exactly_once_under_replay_with_conflicts() {
    counted_exactly_once_under_replay(Some(Faults::conflicts(RACE_CONFLICTS)));
}

fn counted_exactly_once_under_replay(faults: Option<Faults>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let w = runtime.block_on(async {
        match faults {
            Some(faults) => World::with_faults(faults).await,
            None => World::new().await,
        }
    });
    let cases = if w.is_moto() { 30 } else { 300 };
    let org_counter = AtomicUsize::new(0);
    let config = ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(s in scenario())| {
        // Each case counts into an organization of its own (and its pools are new).
        let org = OrgId::parse(&format!("org{}", org_counter.fetch_add(1, Ordering::SeqCst))).unwrap();
        let (stream, _) = history(&org, &s);
        // Each story's pool, from its redemption's record (story i is learner-i's).
        let mut pools = vec![PoolId::new(); s.stories.len()];
        for record in &stream {
            if record.event_name == "INSERT" {
                let a: keypool::domain::Assignment =
                    serde_dynamo::from_item(record.change.new_image.clone()).unwrap();
                let i: usize = a.learner.as_str().trim_start_matches("learner-").parse().unwrap();
                pools[i] = a.pool_id;
            }
        }
        let want = expected(&s, &pools);
        let counts = FlakyCounts {
            store: w.store.clone(),
            calls: AtomicUsize::new(0),
            fail_at: s.fail_at.clone(),
            lost_answers: s.lost_answers.clone(),
        };
        runtime.block_on(async {
            deliver(&counts, &stream, &s).await;
            check_counted_once(w.dyn_store(), &org, &want).await;
        });
    });
    if faults.is_some() {
        assert!(w.injector().conflicts() > 0, "no conflict was injected");
    }
}
