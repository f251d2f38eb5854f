//! Billing: stream records to invoice lines exactly once, the invoice routes, cancellation, and
//! the local stream follower, on a real DynamoDB engine.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use axum::http::{Method, StatusCode};
use keypool::domain::{
    Assignment, AssignmentId, CourseId, InvoiceLine, InvoiceTotals, LineKind, Month, PoolId,
};
use keypool::events::billing as bill;
use keypool::identity::{OrgId, UserId};
use keypool::keys::KeyCode;
use keypool::store::RecordedLines;
use keypool::store::prelude::*;
use keypool::time;
use keypool_tests::{Faults, RACE_CONFLICTS, World, race_test};
use proptest::prelude::*;
use serde_json::{Value, json};

fn fixture(name: &str) -> Event {
    let path = format!(
        "{}/fixtures/dynamodb-stream/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn month(text: &str) -> Month {
    Month::parse(text).unwrap()
}

/// Every line of an organization's month, read page by page.
async fn all_lines(store: &dyn Store, org: &OrgId, m: Month) -> Vec<InvoiceLine> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store
            .list_invoice_lines(org, m, cursor.as_deref(), 7)
            .await
            .unwrap();
        out.extend(page.items);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

fn failures(response: &aws_lambda_events::event::streams::DynamoDbEventResponse) -> Vec<String> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone().unwrap_or_default())
        .collect()
}

fn acme() -> OrgId {
    OrgId::parse("acme").unwrap()
}

#[tokio::test]
async fn a_mixed_batch_bills_redemptions_and_credits_and_nothing_else() {
    let w = World::new().await;
    let event = fixture("mixed-batch.json");
    let response = bill::bill(w.dyn_store(), &event).await.unwrap();
    assert!(failures(&response).is_empty());

    let november = all_lines(w.dyn_store(), &acme(), month("2026-11")).await;
    let kinds: Vec<(String, LineKind)> = november
        .iter()
        .map(|l| (l.assignment_id.to_string(), l.kind))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (
                "01938a6e-4f2b-7c3d-9e8f-0a1b2c3d4e5f".into(),
                LineKind::Redemption
            ),
            (
                "01938a6f-0000-7c3d-9e8f-0a1b2c3d4e5f".into(),
                LineKind::Redemption
            ),
        ],
        "a launch (MODIFY), a TTL removal and a non-assignment insert bill nothing"
    );
    assert_eq!(
        november[0].learner.as_str(),
        "c9e6a2f4-3b5d-4e7f-9a0b-2c3d4e5f6a7b"
    );
    assert_eq!(november[0].key.as_str(), "EQ3DPTK4BHC7SKW6VCY1");
    assert_eq!(november[0].quantity, 1);
    // Cancelled on 1 December: the credit is December's, not November's.
    let december = all_lines(w.dyn_store(), &acme(), month("2026-12")).await;
    assert_eq!(december.len(), 1);
    assert_eq!(december[0].kind, LineKind::Credit);
    assert_eq!(december[0].quantity, -1);
    assert_eq!(
        december[0].cancelled_at,
        time::parse("2026-12-01T08:00:00Z")
    );
    let store = w.dyn_store();
    let totals = |m| async move { store.invoice_totals(&acme(), month(m)).await.unwrap() };
    let expected_nov = InvoiceTotals {
        redemptions: 2,
        credits: 0,
    };
    let expected_dec = InvoiceTotals {
        redemptions: 0,
        credits: 1,
    };
    assert_eq!(totals("2026-11").await, expected_nov);
    assert_eq!(totals("2026-12").await, expected_dec);

    // The same batch again, as Lambda redelivers after a timeout: nothing changes.
    let again = bill::bill(w.dyn_store(), &event).await.unwrap();
    assert!(failures(&again).is_empty());
    assert_eq!(
        all_lines(w.dyn_store(), &acme(), month("2026-11")).await,
        november
    );
    assert_eq!(
        all_lines(w.dyn_store(), &acme(), month("2026-12")).await,
        december
    );
    assert_eq!(totals("2026-11").await, expected_nov);
    assert_eq!(totals("2026-12").await, expected_dec);
}

#[tokio::test]
async fn the_first_record_that_fails_is_reported_and_nothing_after_it_is_billed() {
    let w = World::new().await;
    let mut event = fixture("mixed-batch.json");
    // A poison record between the first and the second redemption: an assignment image
    // without its key.
    let mut poison = event.records[0].clone();
    poison.change.new_image.remove("key");
    poison.change.sequence_number = Some("111100000000000000000001500".into());
    event.records.insert(1, poison);
    let response = bill::bill(w.dyn_store(), &event).await.unwrap();
    assert_eq!(failures(&response), vec!["111100000000000000000001500"]);
    let lines = all_lines(w.dyn_store(), &acme(), month("2026-11")).await;
    assert_eq!(
        lines.len(),
        1,
        "only the record before the failure is billed"
    );
    assert!(
        all_lines(w.dyn_store(), &acme(), month("2026-12"))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn a_record_without_a_sequence_number_fails_the_whole_batch() {
    let w = World::new().await;
    let mut event = fixture("insert-assignment.json");
    event.records[0].change.new_image.remove("org");
    event.records[0].change.sequence_number = None;
    assert!(bill::bill(w.dyn_store(), &event).await.is_err());
}

// ---------------------------------------------------------------------------------------------
// Exactly once under at-least-once delivery: the property.

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
struct Story {
    redeemed_minute: i64,
    cancelled_after: Option<i64>,
    launches: u8,
}

#[derive(Debug, Clone)]
struct Scenario {
    stories: Vec<Story>,
    /// Where in the stream each story's records go, relative to others (a shuffle key).
    interleave: Vec<u32>,
    /// Extra deliveries: (record index, position to re-send it after, in stream positions).
    duplicates: Vec<(usize, usize)>,
    /// Batch sizes the event source mapping cuts the delivery tape into.
    cuts: Vec<usize>,
    /// Ledger writes that fail.
    fail_at: BTreeSet<usize>,
    /// Ledger writes that commit but whose answer is lost.
    lost_answers: BTreeSet<usize>,
}

fn scenario() -> impl Strategy<Value = Scenario> {
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

fn stream_record(
    seq: usize,
    name: &str,
    new: Option<&Assignment>,
    old: Option<&Assignment>,
) -> EventRecord {
    let mut record = EventRecord::default();
    record.event_name = name.into();
    record.event_id = format!("{seq:032x}");
    record.change.sequence_number = Some(format!("{:0>24}", seq));
    // The images are the items as the store writes them.
    let image = |a: &Assignment| {
        let mut item: serde_dynamo::Item = serde_dynamo::to_item(a).unwrap();
        item.insert(
            "entity".into(),
            serde_dynamo::AttributeValue::S("assignment".into()),
        );
        item
    };
    if let Some(a) = new {
        record.change.new_image = image(a);
    }
    if let Some(a) = old {
        record.change.old_image = image(a);
    }
    record
}

/// The stream of a scenario: each assignment's INSERT, launches and cancellation in its own
/// order, assignments interleaved; and the lines that must result.
fn history(org: &OrgId, s: &Scenario) -> (Vec<EventRecord>, BTreeSet<(String, LineKind, Month)>) {
    let base = time::parse("2026-01-30T12:00:00Z").unwrap();
    let mut per_story: Vec<Vec<(&'static str, Assignment, Option<Assignment>)>> = Vec::new();
    let mut expected = BTreeSet::new();
    for (i, story) in s.stories.iter().enumerate() {
        let redeemed_at = base + chrono::Duration::minutes(story.redeemed_minute);
        let a = Assignment {
            assignment_id: AssignmentId::new(),
            learner: UserId::parse(&format!("learner-{i}")).unwrap(),
            org: org.clone(),
            pool_id: PoolId::new(),
            course_id: CourseId::new(),
            course_title: None,
            key: KeyCode::parse(&format!("KEY{i:04}")).unwrap(),
            redeemed_at,
            expires_at: redeemed_at + chrono::Duration::days(30),
            launch_count: 0,
            last_launched_at: None,
            cancelled_at: None,
        };
        expected.insert((
            a.assignment_id.to_string(),
            LineKind::Redemption,
            Month::of(redeemed_at),
        ));
        let mut records = vec![("INSERT", a.clone(), None)];
        let mut current = a;
        for l in 0..story.launches {
            let mut next = current.clone();
            next.launch_count += 1;
            next.last_launched_at = Some(redeemed_at + chrono::Duration::minutes(i64::from(l) + 1));
            records.push(("MODIFY", next.clone(), Some(current)));
            current = next;
        }
        if let Some(after) = story.cancelled_after {
            let cancelled_at = redeemed_at + chrono::Duration::minutes(after);
            let mut next = current.clone();
            next.cancelled_at = Some(cancelled_at);
            expected.insert((
                next.assignment_id.to_string(),
                LineKind::Credit,
                Month::of(cancelled_at),
            ));
            records.push(("MODIFY", next.clone(), Some(current)));
            current = next;
        }
        // Expiry: DynamoDB's TTL removes the item; that bills nothing.
        if i % 2 == 0 {
            records.push(("REMOVE", current.clone(), Some(current)));
        }
        per_story.push(records);
    }
    // Interleave stories while keeping each one's own order, as a stream does per item.
    let mut cursors = vec![0usize; per_story.len()];
    let mut stream = Vec::new();
    let mut pick = 0usize;
    while cursors.iter().zip(&per_story).any(|(c, r)| *c < r.len()) {
        let open: Vec<usize> = (0..per_story.len())
            .filter(|&i| cursors[i] < per_story[i].len())
            .collect();
        let choice = open[s.interleave[pick % s.interleave.len()] as usize % open.len()];
        pick += 1;
        let (name, new, old) = &per_story[choice][cursors[choice]];
        cursors[choice] += 1;
        let seq = stream.len() + 1;
        stream.push(match *name {
            "REMOVE" => stream_record(seq, name, None, Some(new)),
            _ => stream_record(seq, name, Some(new), old.as_ref()),
        });
    }
    (stream, expected)
}

/// Delivers the stream as an event source mapping does, at least once: some records again
/// later (duplicates), batches cut at random sizes, and after a reported failure the batch
/// resumes at the failed record.
async fn deliver(ledger: &FlakyLedger, stream: &[EventRecord], s: &Scenario) {
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
        let mut event = Event::default();
        event.records = tape[position..end].to_vec();
        let response = bill::bill(ledger, &event).await.unwrap();
        match response.batch_item_failures.first() {
            None => position = end,
            Some(failure) => {
                let failed = failure.item_identifier.as_ref().unwrap();
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

async fn check_exactly_once(
    w: &World,
    org: &OrgId,
    expected: &BTreeSet<(String, LineKind, Month)>,
) {
    let months: BTreeSet<Month> = expected.iter().map(|(_, _, m)| *m).collect();
    let mut found = BTreeMap::new();
    for m in months {
        let lines = all_lines(w.dyn_store(), org, m).await;
        let totals = w.dyn_store().invoice_totals(org, m).await.unwrap();
        let sum: i64 = lines.iter().map(|l| l.quantity).sum();
        assert_eq!(totals.count(), sum, "totals equal the lines of {m}");
        assert_eq!(
            totals.redemptions as usize,
            lines
                .iter()
                .filter(|l| l.kind == LineKind::Redemption)
                .count()
        );
        for line in lines {
            assert_eq!(line.month, m);
            *found
                .entry((line.assignment_id.to_string(), line.kind, line.month))
                .or_insert(0) += 1;
        }
    }
    let found_set: BTreeSet<_> = found.keys().cloned().collect();
    assert_eq!(&found_set, expected, "exactly the expected lines");
    assert!(found.values().all(|&n| n == 1), "no line twice: {found:?}");
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
            check_exactly_once(&w, &org, &expected).await;
        });
    });
    if faults.is_some() {
        assert!(w.injector().conflicts() > 0, "no conflict was injected");
    }
}

// ---------------------------------------------------------------------------------------------
// Batches larger than one transaction: totals summed per chunk, exactly once.

fn globex() -> OrgId {
    OrgId::parse("globex").unwrap()
}

/// An assignment of `org`, numbered `i`, redeemed at `at`.
fn assignment(org: &OrgId, i: usize, at: time::Timestamp) -> Assignment {
    Assignment {
        assignment_id: AssignmentId::new(),
        learner: UserId::parse(&format!("learner-{i}")).unwrap(),
        org: org.clone(),
        pool_id: PoolId::new(),
        course_id: CourseId::new(),
        course_title: None,
        key: KeyCode::parse(&format!("KEY{i:05}")).unwrap(),
        redeemed_at: at,
        expires_at: at + chrono::Duration::days(30),
        launch_count: 0,
        last_launched_at: None,
        cancelled_at: None,
    }
}

/// A stream of redemptions of two organizations across the end of November, some cancelled
/// (in December), some launched, some expired; and the lines it must bill, per organization
/// and month: (assignment, kind) for each.
type Expected = BTreeMap<(String, Month), BTreeSet<(String, LineKind)>>;

fn two_orgs_two_months(redemptions: usize) -> (Vec<EventRecord>, Expected) {
    let start = time::parse("2026-11-30T23:00:00Z").unwrap();
    let mut records = Vec::new();
    let mut expected = Expected::new();
    let mut push = |name: &str, new: Option<&Assignment>, old: Option<&Assignment>| {
        let seq = records.len() + 1;
        records.push(stream_record(seq, name, new, old));
    };
    for i in 0..redemptions {
        let org = if i % 2 == 0 { acme() } else { globex() };
        // One a minute from 23:00 on 30 November: the first 60 are November's.
        let a = assignment(&org, i, start + chrono::Duration::minutes(i as i64));
        let mut expect = |a: &Assignment, kind, m| {
            expected
                .entry((a.org.to_string(), m))
                .or_default()
                .insert((a.assignment_id.to_string(), kind));
        };
        expect(&a, LineKind::Redemption, Month::of(a.redeemed_at));
        push("INSERT", Some(&a), None);
        let mut current = a.clone();
        if i % 5 == 0 {
            let mut cancelled = a.clone();
            cancelled.cancelled_at = Some(a.redeemed_at + chrono::Duration::minutes(30));
            expect(
                &cancelled,
                LineKind::Credit,
                Month::of(a.redeemed_at + chrono::Duration::minutes(30)),
            );
            push("MODIFY", Some(&cancelled), Some(&a));
            current = cancelled;
        } else if i % 3 == 0 {
            let mut launched = a.clone();
            launched.launch_count = 1;
            launched.last_launched_at = Some(a.redeemed_at);
            push("MODIFY", Some(&launched), Some(&a));
            current = launched;
        }
        if i % 7 == 0 {
            push("REMOVE", None, Some(&current));
        }
    }
    (records, expected)
}

/// Checks that each organization's month holds exactly the expected lines, once each, and that
/// its totals count them.
async fn check_lines_and_totals(store: &dyn Store, expected: &Expected) {
    for ((org, m), want) in expected {
        let org = OrgId::parse(org).unwrap();
        let lines = all_lines(store, &org, *m).await;
        let found: Vec<(String, LineKind)> = lines
            .iter()
            .map(|l| (l.assignment_id.to_string(), l.kind))
            .collect();
        let found_set: BTreeSet<_> = found.iter().cloned().collect();
        assert_eq!(found.len(), found_set.len(), "a line twice in {org} {m}");
        assert_eq!(&found_set, want, "the lines of {org} {m}");
        let count = |kind| want.iter().filter(|(_, k)| *k == kind).count() as u64;
        assert_eq!(
            store.invoice_totals(&org, *m).await.unwrap(),
            InvoiceTotals {
                redemptions: count(LineKind::Redemption),
                credits: count(LineKind::Credit),
            },
            "the totals of {org} {m}"
        );
    }
}

#[tokio::test]
async fn a_batch_of_billed_and_new_lines_of_two_orgs_and_months_counts_each_line_once() {
    let w = World::new().await;
    let store = w.dyn_store();
    // More lines than one transaction holds, in four (organization, month) totals.
    let (records, expected) = two_orgs_two_months(160);
    assert_eq!(expected.len(), 4);
    let lines: Vec<InvoiceLine> = records
        .iter()
        .filter_map(|r| bill::line_of(r).unwrap())
        .collect();
    assert!(lines.len() > 150);

    // An earlier, partial delivery billed every third record.
    let mut earlier = Event::default();
    earlier.records = records.iter().step_by(3).cloned().collect();
    assert!(failures(&bill::bill(store, &earlier).await.unwrap()).is_empty());
    let billed_before: BTreeSet<(String, LineKind)> = earlier
        .records
        .iter()
        .filter_map(|r| bill::line_of(r).unwrap())
        .map(|l| (l.assignment_id.to_string(), l.kind))
        .collect();
    assert!(!billed_before.is_empty());

    // The whole stream now, with some lines twice within it: exactly the new ones are written.
    let mut batch = lines.clone();
    batch.insert(10, lines[3].clone());
    batch.insert(11, lines[11].clone());
    batch.push(lines[lines.len() - 1].clone());
    let recorded = store.record_invoice_lines(&batch).await;
    assert!(recorded.failure.is_none(), "{:?}", recorded.failure);
    let mut seen = BTreeSet::new();
    let want: Vec<bool> = batch
        .iter()
        .map(|l| {
            let key = (l.assignment_id.to_string(), l.kind);
            !billed_before.contains(&key) && seen.insert(key)
        })
        .collect();
    assert_eq!(
        recorded.settled, want,
        "new: the lines not billed before, once"
    );
    check_lines_and_totals(store, &expected).await;

    // The stream delivered again in one batch, duplicates and all: nothing changes.
    let mut again = Event::default();
    again.records = records.clone();
    again.records.insert(40, records[2].clone());
    assert!(failures(&bill::bill(store, &again).await.unwrap()).is_empty());
    check_lines_and_totals(store, &expected).await;
}

#[tokio::test]
async fn a_chunk_that_fails_is_reported_by_its_first_record_and_those_before_it_are_billed() {
    let w = World::new().await;
    let store = w.dyn_store();
    let nov = time::parse("2026-11-10T12:00:00Z").unwrap();
    let dec = time::parse("2026-12-10T12:00:00Z").unwrap();
    // globex's December totals cannot be added to: its count is not a number.
    let first = assignment(&globex(), 0, dec);
    let recorded = store
        .record_invoice_lines(&[InvoiceLine::redemption(&first)])
        .await;
    assert_eq!(recorded.settled, vec![true]);
    w.corrupt(
        keypool::schema::invoice_pk(&globex(), month("2026-12")),
        keypool::schema::INVOICE_TOTALS_SK.into(),
        "redemptions",
        "lots",
    )
    .await;

    // 99 of acme's November lines (one transaction with their totals), among records that bill
    // nothing; then globex's December line, which fails its chunk; then more of acme's.
    let mut records = Vec::new();
    let mut push = |name: &str, new: Option<&Assignment>, old: Option<&Assignment>| {
        let seq = records.len() + 1;
        records.push(stream_record(seq, name, new, old));
    };
    let mut acme_lines = BTreeSet::new();
    for i in 0..99 {
        let a = assignment(&acme(), i, nov);
        acme_lines.insert((a.assignment_id.to_string(), LineKind::Redemption));
        push("INSERT", Some(&a), None);
        if i % 10 == 0 {
            let mut launched = a.clone();
            launched.launch_count = 1;
            push("MODIFY", Some(&launched), Some(&a));
            push("REMOVE", None, Some(&launched));
        }
    }
    let poisoned = assignment(&globex(), 1, dec);
    push("INSERT", Some(&poisoned), None);
    for i in 100..110 {
        push("INSERT", Some(&assignment(&acme(), i, nov)), None);
    }
    let poisoned_seq = records[records.len() - 11].change.sequence_number.clone();
    let mut event = Event::default();
    event.records = records;
    let response = bill::bill(store, &event).await.unwrap();
    assert_eq!(failures(&response), vec![poisoned_seq.unwrap()]);
    check_lines_and_totals(
        store,
        &Expected::from([(("acme".to_string(), month("2026-11")), acme_lines)]),
    )
    .await;
    let december = all_lines(store, &globex(), month("2026-12")).await;
    assert_eq!(december.len(), 1, "only the line billed before");
}

// ---------------------------------------------------------------------------------------------
// The routes: invoices and cancellation.

/// Redeems a fresh key of a fresh pool of `org` for `learner`; returns (pool_id, key, body).
async fn redeemed(w: &World, org: &str, learner: &str) -> (String, String, Value) {
    let (_, pool_id) = w.pool(org, 30).await;
    let keys = w.generate(org, &pool_id, 2).await;
    let reply = w
        .call(
            Method::POST,
            "/v1/redemptions",
            Some(&w.learner(learner)),
            Some(json!({ "key": keys[0] })),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    (pool_id, keys[0].clone(), reply.body)
}

fn current_month(w: &World) -> String {
    Month::of(w.now()).to_string()
}

#[tokio::test]
async fn the_invoice_shows_the_organizations_lines_to_its_admins_only() {
    let w = World::new().await;
    let (pool_id, key, body) = redeemed(&w, "acme", "=cmd|'/Ccalc'!A0").await;
    let (_, _, other) = redeemed(&w, "globex", "bob").await;
    assert_eq!(w.follower().drain().await.unwrap(), 2);
    let m = current_month(&w);

    let reply = w
        .call(
            Method::GET,
            &format!("/v1/invoices/{m}"),
            Some(&w.admin("acme")),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.body["month"], m.as_str());
    assert_eq!(reply.body["count"], 1);
    let lines = reply.body["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 1, "another organization's line is never shown");
    assert_eq!(lines[0]["assignment_id"], body["assignment_id"]);
    assert_eq!(lines[0]["pool_id"], pool_id.as_str());
    assert_eq!(lines[0]["course_id"], body["course_id"]);
    assert_eq!(lines[0]["key"], key.as_str());
    assert_eq!(lines[0]["learner"], "=cmd|'/Ccalc'!A0");
    assert_eq!(lines[0]["redeemed_at"], body["redeemed_at"]);
    assert_eq!(lines[0]["kind"], "redemption");
    assert_ne!(lines[0]["assignment_id"], other["assignment_id"]);

    let csv = w
        .call(
            Method::GET,
            &format!("/v1/invoices/{m}.csv"),
            Some(&w.admin("acme")),
            None,
        )
        .await;
    assert_eq!(csv.status, StatusCode::OK);
    assert_eq!(csv.headers["content-type"], "text/csv; charset=utf-8");
    assert!(
        csv.headers["content-disposition"]
            .to_str()
            .unwrap()
            .contains(&format!("keypool-invoice-{m}.csv"))
    );
    let text = csv.body.as_str().unwrap();
    let rows: Vec<csv::StringRecord> = csv::Reader::from_reader(text.as_bytes())
        .records()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), 1);
    assert!(text.starts_with(
        "month,kind,quantity,assignment_id,pool_id,course_id,key,learner,redeemed_at,cancelled_at\r\n"
    ));
    assert_eq!(&rows[0][3], body["assignment_id"].as_str().unwrap());
    assert_eq!(&rows[0][6], key.as_str());
    // A learner id that a spreadsheet would run as a formula is neutralised.
    assert_eq!(&rows[0][7], "'=cmd|'/Ccalc'!A0");

    for bad in ["2026-13", "2026-1", "november", "2026-11.txt", "2026-1.csv"] {
        let reply = w
            .call(
                Method::GET,
                &format!("/v1/invoices/{bad}"),
                Some(&w.admin("acme")),
                None,
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(reply.code(), "invalid_month");
    }
    let learner = w
        .call(
            Method::GET,
            &format!("/v1/invoices/{m}"),
            Some(&w.learner("lea")),
            None,
        )
        .await;
    assert_eq!(learner.status, StatusCode::FORBIDDEN);
    let anonymous = w
        .call(Method::GET, &format!("/v1/invoices/{m}.csv"), None, None)
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let empty = w
        .call(
            Method::GET,
            "/v1/invoices/1999-01",
            Some(&w.admin("acme")),
            None,
        )
        .await;
    assert_eq!(empty.body["count"], 0);
    assert_eq!(empty.body["lines"], json!([]));
}

#[tokio::test]
async fn invoice_pages_and_the_csv_cover_every_line_once() {
    let w = World::new().await;
    if w.skip_volume_on_moto() {
        return;
    }
    // Lines written straight through the ledger: 2,500 of them, more than two CSV pages.
    let store = w.dyn_store();
    let now = w.now();
    let mut ids = BTreeSet::new();
    let mut lines = Vec::new();
    for i in 0..2500 {
        let a = Assignment {
            assignment_id: AssignmentId::new(),
            learner: UserId::parse(&format!("l{i}")).unwrap(),
            org: acme(),
            pool_id: PoolId::new(),
            course_id: CourseId::new(),
            course_title: None,
            key: KeyCode::parse(&format!("K{i:05}")).unwrap(),
            redeemed_at: now,
            expires_at: now,
            launch_count: 0,
            last_launched_at: None,
            cancelled_at: None,
        };
        ids.insert(a.assignment_id.to_string());
        lines.push(InvoiceLine::redemption(&a));
    }
    let recorded = store.record_invoice_lines(&lines).await;
    assert!(recorded.failure.is_none(), "{:?}", recorded.failure);
    assert_eq!(recorded.settled, vec![true; 2500]);
    let m = current_month(&w);
    let mut seen = BTreeSet::new();
    let mut cursor = String::new();
    loop {
        let reply = w
            .call(
                Method::GET,
                &format!("/v1/invoices/{m}?limit=1000&cursor={cursor}"),
                Some(&w.admin("acme")),
                None,
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        assert_eq!(reply.body["count"], 2500);
        for line in reply.body["lines"].as_array().unwrap() {
            assert!(seen.insert(line["assignment_id"].as_str().unwrap().to_string()));
        }
        match reply.body["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    assert_eq!(seen, ids);
    let csv = w
        .call(
            Method::GET,
            &format!("/v1/invoices/{m}.csv"),
            Some(&w.admin("acme")),
            None,
        )
        .await;
    let text = csv.body.as_str().unwrap();
    let from_csv: BTreeSet<String> = csv::Reader::from_reader(text.as_bytes())
        .records()
        .map(|r| r.unwrap()[3].to_string())
        .collect();
    assert_eq!(text.lines().count(), 2501, "a header and one row per line");
    assert_eq!(from_csv, ids);
    assert_eq!(csv.headers["x-row-count"], "2500");

    // A line of the second page that cannot be read: the CSV must not end as if whole.
    let broken = ids.iter().nth(1500).unwrap();
    w.corrupt(
        keypool::schema::invoice_pk(&acme(), month(&m)),
        keypool::schema::invoice_line_sk(
            &AssignmentId::parse(broken).unwrap(),
            LineKind::Redemption,
        ),
        "quantity",
        "lots",
    )
    .await;
    let (status, headers, body) = w
        .get_streamed(&format!("/v1/invoices/{m}.csv"), Some(&w.admin("acme")))
        .await;
    assert_eq!(status, StatusCode::OK, "the first page was fine");
    assert_eq!(headers["x-row-count"], "2500");
    assert!(body.is_err(), "the body breaks instead of ending short");
}

async fn cancel(w: &World, org: &str, assignment_id: &str) -> keypool_tests::Reply {
    w.call(
        Method::POST,
        &format!("/v1/assignments/{assignment_id}/cancel"),
        Some(&w.admin(org)),
        None,
    )
    .await
}

/// Moves a world's clock to the 10th of next month at noon, so that a test advancing it by
/// hours stays within one month.
fn mid_month(w: &World) {
    use chrono::{Datelike, TimeZone};
    let now = w.now();
    let (year, month) = if now.month() == 12 {
        (now.year() + 1, 1)
    } else {
        (now.year(), now.month() + 1)
    };
    let target = chrono::Utc
        .with_ymd_and_hms(year, month, 10, 12, 0, 0)
        .unwrap();
    w.clock.advance(target - now);
}

#[tokio::test]
async fn a_cancellation_frees_the_key_and_credits_the_invoice_once() {
    let w = World::new().await;
    mid_month(&w);
    let (pool_id, key, body) = redeemed(&w, "acme", "lea").await;
    let id = body["assignment_id"].as_str().unwrap();

    // Other organizations and learners cannot; unknown ids are 404.
    assert_eq!(cancel(&w, "globex", id).await.status, StatusCode::NOT_FOUND);
    let by_learner = w
        .call(
            Method::POST,
            &format!("/v1/assignments/{id}/cancel"),
            Some(&w.learner("lea")),
            None,
        )
        .await;
    assert_eq!(by_learner.status, StatusCode::FORBIDDEN);
    let unknown = cancel(&w, "acme", &AssignmentId::new().to_string()).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(
        cancel(&w, "acme", "not-an-id").await.status,
        StatusCode::NOT_FOUND
    );

    w.clock.advance(chrono::Duration::hours(23));
    let reply = cancel(&w, "acme", id).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.body["key_status"], "available");
    assert_eq!(reply.body["cancelled_at"], time::format(&w.now()).as_str());
    let again = cancel(&w, "acme", id).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.code(), "assignment_cancelled");

    // The learner lost it; the pool counts the key as available; the key is listed so.
    let launch = w
        .call(
            Method::POST,
            &format!("/v1/me/assignments/{id}/launch"),
            Some(&w.learner("lea")),
            None,
        )
        .await;
    assert_eq!(launch.status, StatusCode::FORBIDDEN);
    assert_eq!(launch.code(), "assignment_cancelled");
    let mine = w
        .call(
            Method::GET,
            "/v1/me/assignments",
            Some(&w.learner("lea")),
            None,
        )
        .await;
    assert_eq!(mine.body["items"][0]["valid"], false);
    assert!(mine.body["items"][0]["cancelled_at"].is_string());
    let pool = w
        .call(
            Method::GET,
            &format!("/v1/pools/{pool_id}"),
            Some(&w.admin("acme")),
            None,
        )
        .await;
    assert_eq!(pool.body["redeemed_keys"], 0);
    assert_eq!(pool.body["available_keys"], 2);
    let listed = w
        .call(
            Method::GET,
            &format!("/v1/pools/{pool_id}/keys?status=available"),
            Some(&w.admin("acme")),
            None,
        )
        .await;
    assert!(
        listed.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["key"] == key.as_str()
                && k["redeemed_by"].is_null()
                && k["assignment_id"].is_null())
    );

    // The learner who lost it cannot take it back, but may get another key of the pool.
    let back = w
        .call(
            Method::POST,
            "/v1/redemptions",
            Some(&w.learner("lea")),
            Some(json!({ "key": key })),
        )
        .await;
    assert_eq!(back.status, StatusCode::CONFLICT, "{:?}", back.body);
    assert_eq!(back.code(), "key_cancelled");

    // The key goes to someone else, who is billed for it in turn.
    let next = w
        .call(
            Method::POST,
            "/v1/redemptions",
            Some(&w.learner("max")),
            Some(json!({ "key": key })),
        )
        .await;
    assert_eq!(next.status, StatusCode::CREATED, "{:?}", next.body);
    assert_ne!(next.body["assignment_id"], body["assignment_id"]);

    let follower = w.follower();
    follower.drain().await.unwrap();
    assert_eq!(
        follower.drain().await.unwrap(),
        0,
        "a second drain finds nothing new"
    );
    let m = current_month(&w);
    let invoice = w
        .call(
            Method::GET,
            &format!("/v1/invoices/{m}"),
            Some(&w.admin("acme")),
            None,
        )
        .await;
    let kinds: Vec<(String, String, i64)> = invoice.body["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["assignment_id"].as_str().unwrap().to_string(),
                l["kind"].as_str().unwrap().to_string(),
                l["quantity"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            (id.to_string(), "redemption".into(), 1),
            (id.to_string(), "credit".into(), -1),
            (
                next.body["assignment_id"].as_str().unwrap().to_string(),
                "redemption".into(),
                1
            ),
        ]
    );
    assert_eq!(invoice.body["count"], 1);
    assert_eq!(invoice.body["redemptions"], 2);
    assert_eq!(invoice.body["credits"], 1);
}

#[tokio::test]
async fn a_launched_or_old_assignment_cannot_be_cancelled() {
    let w = World::new().await;
    let (_, _, launched) = redeemed(&w, "acme", "lea").await;
    let launched = launched["assignment_id"].as_str().unwrap();
    let reply = w
        .call(
            Method::POST,
            &format!("/v1/me/assignments/{launched}/launch"),
            Some(&w.learner("lea")),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let refused = cancel(&w, "acme", launched).await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert_eq!(refused.code(), "assignment_launched");

    let (pool_id, _, old) = redeemed(&w, "acme", "max").await;
    let old = old["assignment_id"].as_str().unwrap();
    w.clock.advance(chrono::Duration::hours(24));
    let refused = cancel(&w, "acme", old).await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert_eq!(refused.code(), "cancellation_window_passed");
    // Nothing changed: still redeemed, still counted.
    let pool = w
        .call(
            Method::GET,
            &format!("/v1/pools/{pool_id}"),
            Some(&w.admin("acme")),
            None,
        )
        .await;
    assert_eq!(pool.body["redeemed_keys"], 1);
    w.follower().drain().await.unwrap();
    let invoice = w
        .call(
            Method::GET,
            &format!(
                "/v1/invoices/{}",
                Month::of(w.now() - chrono::Duration::hours(24))
            ),
            Some(&w.admin("acme")),
            None,
        )
        .await;
    assert_eq!(invoice.body["credits"], 0);
}

race_test!(
    /// A cancellation racing a launch of the same assignment: exactly one wins, and the
    /// invoice bills what happened.
    race_cancellation_against_launch,
    race_cancellation_against_launch_with_conflicts,
    cancellation_against_launch,
    threads = 4
);

async fn cancellation_against_launch(w: Arc<World>) {
    let rounds = if w.is_moto() { 4 } else { 20 };
    let (mut cancels, mut launches) = (0, 0);
    for round in 0..rounds {
        let learner = format!("racer{round}");
        let (_, _, body) = redeemed(&w, "acme", &learner).await;
        let id = body["assignment_id"].as_str().unwrap().to_string();
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let cancel_task = {
            let (w, id, barrier) = (w.clone(), id.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                cancel(&w, "acme", &id).await
            })
        };
        let launch_task = {
            let (w, id, barrier) = (w.clone(), id.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                w.call(
                    Method::POST,
                    &format!("/v1/me/assignments/{id}/launch"),
                    Some(&w.learner(&learner)),
                    None,
                )
                .await
            })
        };
        let (c, l) = (cancel_task.await.unwrap(), launch_task.await.unwrap());
        match (c.status, l.status) {
            (StatusCode::OK, StatusCode::FORBIDDEN) => {
                assert_eq!(l.code(), "assignment_cancelled");
                cancels += 1;
            }
            (StatusCode::CONFLICT, StatusCode::OK) => {
                assert_eq!(c.code(), "assignment_launched");
                launches += 1;
            }
            other => panic!("both or neither won: {other:?} {:?} {:?}", c.body, l.body),
        }
    }
    eprintln!("cancellation won {cancels}, launch won {launches}");
    // Whoever won, the bill agrees with the outcome.
    w.follower().drain().await.unwrap();
    let m = current_month(&w);
    let invoice = w
        .call(
            Method::GET,
            &format!("/v1/invoices/{m}"),
            Some(&w.admin("acme")),
            None,
        )
        .await;
    assert_eq!(invoice.body["redemptions"], rounds);
    assert_eq!(invoice.body["credits"], cancels);
}

// ---------------------------------------------------------------------------------------------
// The local stream follower.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_stopped_mid_stream_resumes_without_gaps_or_doubles() {
    let w = World::new().await;
    // Batches as the server cuts them; smaller on moto, where every write is slow.
    let (count, batch) = if w.is_moto() { (35, 10) } else { (350, 100) };
    let (_, pool_id) = w.pool("acme", 30).await;
    let keys = w.generate("acme", &pool_id, count).await;
    let mut ids = BTreeSet::new();
    for (i, key) in keys.iter().enumerate() {
        let reply = w
            .call(
                Method::POST,
                "/v1/redemptions",
                Some(&w.learner(&format!("l{i}"))),
                Some(json!({ "key": key })),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED);
        ids.insert(reply.body["assignment_id"].as_str().unwrap().to_string());
    }
    let m = Month::of(w.now());
    // Run a follower and stop it (dropping its task) once it has billed part of the stream.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(w.follower().with_batch_size(batch as i32).run(
        std::time::Duration::from_millis(5),
        async move {
            let _ = stopped.await;
        },
    ));
    // Stop it once it is into its second batch: the first is billed and checkpointed, the
    // second in hand and not.
    let threshold = batch;
    let store = w.dyn_store();
    loop {
        let billed = store.invoice_totals(&acme(), m).await.unwrap().redemptions as usize;
        if billed > threshold {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    task.abort();
    let _ = task.await;
    drop(stop);
    let part = store.invoice_totals(&acme(), m).await.unwrap().redemptions as usize;
    eprintln!("stopped after {part} of {count} lines");

    // A new follower (a restarted server) picks up from the checkpoint: it hands over what was
    // not checkpointed (the batch in hand again, and the rest), never the whole stream again.
    let handed = w
        .follower()
        .with_batch_size(batch as i32)
        .drain()
        .await
        .unwrap();
    assert!(handed <= count - threshold, "handed {handed} again");
    assert!(
        handed >= count - part,
        "handed {handed}, {part} were billed"
    );
    let lines = all_lines(store, &acme(), m).await;
    let billed: BTreeSet<String> = lines.iter().map(|l| l.assignment_id.to_string()).collect();
    assert_eq!(lines.len(), count, "no duplicates");
    assert_eq!(billed, ids, "none missing");
    assert_eq!(
        store.invoice_totals(&acme(), m).await.unwrap().redemptions as usize,
        count
    );
}
