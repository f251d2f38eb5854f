//! Exactly once under at-least-once delivery: the property, over generated histories delivered
//! with duplicates, re-split batches and ledger writes that fail or lose their answer.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use aws_lambda_events::event::dynamodb::EventRecord;
use keypool::domain::{InvoiceLine, LineKind};
use keypool::identity::OrgId;
use keypool::store::RecordedLines;
use keypool::store::prelude::*;
use keypool::time;
use keypool_tests::{Faults, RACE_CONFLICTS, World};
use proptest::prelude::*;

use super::fixtures::*;

/// A ledger that fails some of its writes (counting calls from 1), like a throttled or
/// timed-out DynamoDB call part-way through a batch, and otherwise writes to the real store.
struct FlakyLedger {
    store: Arc<dyn Store>,
    calls: AtomicUsize,
    /// Writes that fail after their first half of lines: the rest never reach the store.
    fail_at: BTreeSet<usize>,
    /// Writes that commit every line and then answer as if only the first half had, as a
    /// timeout after the commit of the second chunk does.
    lost_answers: BTreeSet<usize>,
}

#[async_trait]
impl Ledger for FlakyLedger {
    async fn record_invoice_lines(&self, lines: &[InvoiceLine]) -> RecordedLines {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let half = lines.len() / 2;
        if self.fail_at.contains(&call) {
            let mut recorded = self.store.record_invoice_lines(&lines[..half]).await;
            recorded
                .failure
                .get_or_insert_with(|| anyhow::anyhow!("injected failure at write {call}").into());
            return recorded;
        }
        let mut recorded = self.store.record_invoice_lines(lines).await;
        if self.lost_answers.contains(&call) && recorded.failure.is_none() {
            recorded.settled.truncate(half);
            recorded.failure = Some(anyhow::anyhow!("injected lost answer at write {call}").into());
        }
        recorded
    }
}

/// One assignment of a generated history: when it was redeemed, and when (minutes later) it
/// was cancelled, if it was.
#[derive(Debug, Clone)]
pub(crate) struct Story {
    pub(crate) redeemed_minute: i64,
    pub(crate) cancelled_after: Option<i64>,
    pub(crate) launches: u8,
}

#[derive(Debug, Clone)]
pub(crate) struct Scenario {
    pub(crate) stories: Vec<Story>,
    /// Where in the stream each story's records go, relative to others (a shuffle key).
    interleave: Vec<u32>,
    /// Extra deliveries: (record index, position to re-send it after, in stream positions).
    duplicates: Vec<(usize, usize)>,
    /// Batch sizes the event source mapping cuts the delivery tape into.
    cuts: Vec<usize>,
    /// Ledger writes that fail.
    pub(crate) fail_at: BTreeSet<usize>,
    /// Ledger writes that commit but whose answer is lost.
    pub(crate) lost_answers: BTreeSet<usize>,
}

pub(crate) fn scenario() -> impl Strategy<Value = Scenario> {
    let story = (
        0i64..3 * 24 * 60,
        proptest::option::of(0i64..24 * 60),
        0u8..3,
    )
        .prop_map(|(redeemed_minute, cancelled_after, launches)| Story {
            redeemed_minute,
            // Only never-launched assignments can be cancelled.
            cancelled_after: if launches == 0 { cancelled_after } else { None },
            launches,
        });
    (1usize..7).prop_flat_map(move |n| {
        (
            proptest::collection::vec(story.clone(), n),
            proptest::collection::vec(any::<u32>(), 32),
            proptest::collection::vec((0usize..64, 0usize..64), 0..12),
            proptest::collection::vec(1usize..6, 1..20),
            proptest::collection::btree_set(1usize..40, 0..4),
            proptest::collection::btree_set(1usize..40, 0..4),
        )
            .prop_map(
                |(stories, interleave, duplicates, cuts, fail_at, lost_answers)| Scenario {
                    stories,
                    interleave,
                    duplicates,
                    cuts,
                    fail_at,
                    lost_answers,
                },
            )
    })
}

/// The stream of a scenario: each assignment's INSERT, launches and cancellation in its own
/// order, assignments interleaved; and the lines that must result.
pub(crate) fn history(org: &OrgId, s: &Scenario) -> (Vec<EventRecord>, Expected) {
    let base = history_start();
    let mut per_story: Vec<Vec<Change>> = Vec::new();
    let mut expected = Expected::new();
    for (i, story) in s.stories.iter().enumerate() {
        let redeemed_at = base + chrono::Duration::minutes(story.redeemed_minute);
        let a = assignment(org, i, redeemed_at);
        expect_line(&mut expected, &a, LineKind::Redemption);
        let mut changes = vec![Change::Insert(a.clone())];
        let mut current = a;
        for l in 0..story.launches {
            let at = redeemed_at + chrono::Duration::minutes(i64::from(l) + 1);
            let next = with_launch(&current, at);
            changes.push(Change::Modify {
                old: current,
                new: next.clone(),
            });
            current = next;
        }
        if let Some(after) = story.cancelled_after {
            let next = with_cancellation(&current, redeemed_at + chrono::Duration::minutes(after));
            expect_line(&mut expected, &next, LineKind::Credit);
            changes.push(Change::Modify {
                old: current,
                new: next.clone(),
            });
            current = next;
        }
        if i % 2 == 0 {
            changes.push(Change::Remove(current));
        }
        per_story.push(changes);
    }
    // Interleave stories while keeping each one's own order, as a stream does per item.
    let mut cursors = vec![0usize; per_story.len()];
    let mut stream = Stream::default();
    let mut pick = 0usize;
    while cursors.iter().zip(&per_story).any(|(c, r)| *c < r.len()) {
        let open: Vec<usize> = (0..per_story.len())
            .filter(|&i| cursors[i] < per_story[i].len())
            .collect();
        let choice = open[s.interleave[pick % s.interleave.len()] as usize % open.len()];
        pick += 1;
        stream.push(per_story[choice][cursors[choice]].clone());
        cursors[choice] += 1;
    }
    (stream.0, expected)
}

/// When a scenario's history starts: its redemptions run into the next month.
pub(crate) fn history_start() -> time::Timestamp {
    time::parse("2026-01-30T12:00:00Z").unwrap()
}

/// A stream consumer as an event source mapping sees it: a batch in, the records reported
/// failed out (the first not done).
#[async_trait]
pub(crate) trait Consumer: Sync {
    async fn failures(&self, event: &aws_lambda_events::event::dynamodb::Event) -> Vec<String>;
}

#[async_trait]
impl Consumer for FlakyLedger {
    async fn failures(&self, event: &aws_lambda_events::event::dynamodb::Event) -> Vec<String> {
        bill_failures(self, event).await
    }
}

/// Delivers the stream as an event source mapping does, at least once: some records again
/// later (duplicates), batches cut at random sizes, and after a reported failure the batch
/// resumes at the failed record.
pub(crate) async fn deliver(consumer: &dyn Consumer, stream: &[EventRecord], s: &Scenario) {
    let mut tape: Vec<EventRecord> = stream.to_vec();
    for &(record, after) in &s.duplicates {
        let record = record % stream.len();
        // A copy is delivered again somewhere after the first delivery, up to three times.
        let copies = tape
            .iter()
            .filter(|r| r.change.sequence_number == stream[record].change.sequence_number)
            .count();
        if copies >= 3 {
            continue;
        }
        let first = tape
            .iter()
            .position(|r| r.change.sequence_number == stream[record].change.sequence_number)
            .unwrap();
        let at = (first + 1 + after % (tape.len() - first)).min(tape.len());
        tape.insert(at, stream[record].clone());
    }
    let mut position = 0;
    let mut cut = 0;
    let mut rounds = 0;
    while position < tape.len() {
        rounds += 1;
        assert!(rounds < 10_000, "delivery does not progress");
        let size = s.cuts[cut % s.cuts.len()];
        cut += 1;
        let end = (position + size).min(tape.len());
        let event = event_of(tape[position..end].to_vec());
        match consumer.failures(&event).await.first() {
            None => position = end,
            Some(failed) => {
                let offset = event
                    .records
                    .iter()
                    .position(|r| r.change.sequence_number.as_ref() == Some(failed))
                    .expect("the failure names a record of the batch");
                position += offset;
            }
        }
    }
}

#[test]
fn every_redemption_and_cancellation_is_billed_exactly_once_under_replay() {
    billed_exactly_once_under_replay(None);
}

/// The same with a fifth of all transactions (the ledger's among them) cancelled for
/// conflicts and retried.
#[test]
fn every_redemption_and_cancellation_is_billed_exactly_once_under_replay_with_conflicts() {
    billed_exactly_once_under_replay(Some(Faults::conflicts(RACE_CONFLICTS)));
}

fn billed_exactly_once_under_replay(faults: Option<Faults>) {
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
    // On moto every write is slow: a smaller sample there; the full one on the embedded engine.
    let cases = if w.is_moto() { 40 } else { 1000 };
    let org_counter = AtomicUsize::new(0);
    let config = ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(s in scenario())| {
        // Each case bills into an organization of its own, so cases never see each other.
        let org = OrgId::parse(&format!("org{}", org_counter.fetch_add(1, Ordering::SeqCst))).unwrap();
        let (stream, expected) = history(&org, &s);
        let ledger = FlakyLedger {
            store: w.store.clone(),
            calls: AtomicUsize::new(0),
            fail_at: s.fail_at.clone(),
            lost_answers: s.lost_answers.clone(),
        };
        runtime.block_on(async {
            deliver(&ledger, &stream, &s).await;
            check_billed_once(w.dyn_store(), &expected).await;
        });
    });
    if faults.is_some() {
        assert!(w.injector().conflicts() > 0, "no conflict was injected");
    }
}
