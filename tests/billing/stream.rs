//! Stream records to invoice lines: what a record bills, a failure reported by its record, and
//! batches larger than one transaction, whose totals are summed per chunk and counted once.

use std::collections::BTreeSet;

use aws_lambda_events::event::dynamodb::EventRecord;
use keypool::domain::{InvoiceLine, InvoiceTotals, LineKind};
use keypool::events::billing as bill;
use keypool::time;
use keypool_tests::World;

use super::fixtures::*;

#[tokio::test]
async fn a_mixed_batch_bills_redemptions_and_credits_and_nothing_else() {
    let w = World::new().await;
    let event = fixture("mixed-batch.json");
    assert!(bill_failures(w.dyn_store(), &event).await.is_empty());

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
    assert!(bill_failures(w.dyn_store(), &event).await.is_empty());
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
    assert_eq!(
        bill_failures(w.dyn_store(), &event).await,
        vec!["111100000000000000000001500"]
    );
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

/// A stream of redemptions of two organizations across the end of November, some cancelled
/// (in December), some launched, some expired; and the lines it must bill.
fn two_orgs_two_months(redemptions: usize) -> (Vec<EventRecord>, Expected) {
    let start = time::parse("2026-11-30T23:00:00Z").unwrap();
    let mut stream = Stream::default();
    let mut expected = Expected::new();
    for i in 0..redemptions {
        let org = if i % 2 == 0 { acme() } else { globex() };
        // One a minute from 23:00 on 30 November: the first 60 are November's.
        let a = assignment(&org, i, start + chrono::Duration::minutes(i as i64));
        expect_line(&mut expected, &a, LineKind::Redemption);
        stream.insert(&a);
        let mut current = a.clone();
        if i % 5 == 0 {
            let cancelled = with_cancellation(&a, a.redeemed_at + chrono::Duration::minutes(30));
            expect_line(&mut expected, &cancelled, LineKind::Credit);
            stream.modify(&a, &cancelled);
            current = cancelled;
        } else if i % 3 == 0 {
            let launched = with_launch(&a, a.redeemed_at);
            stream.modify(&a, &launched);
            current = launched;
        }
        if i % 7 == 0 {
            stream.remove(&current);
        }
    }
    (stream.0, expected)
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
    let earlier = event_of(records.iter().step_by(3).cloned().collect());
    assert!(bill_failures(store, &earlier).await.is_empty());
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
    check_billed_once(store, &expected).await;

    // The stream delivered again in one batch, duplicates and all: nothing changes.
    let mut again = records.clone();
    again.insert(40, records[2].clone());
    assert!(bill_failures(store, &event_of(again)).await.is_empty());
    check_billed_once(store, &expected).await;
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
    let mut stream = Stream::default();
    let mut expected = Expected::new();
    for i in 0..99 {
        let a = assignment(&acme(), i, nov);
        expect_line(&mut expected, &a, LineKind::Redemption);
        stream.insert(&a);
        if i % 10 == 0 {
            let launched = with_launch(&a, nov);
            stream.modify(&a, &launched);
            stream.remove(&launched);
        }
    }
    let poisoned = assignment(&globex(), 1, dec);
    stream.insert(&poisoned);
    for i in 100..110 {
        stream.insert(&assignment(&acme(), i, nov));
    }
    let records = stream.0;
    let poisoned_seq = records[records.len() - 11].change.sequence_number.clone();
    assert_eq!(
        bill_failures(store, &event_of(records)).await,
        vec![poisoned_seq.unwrap()]
    );
    check_billed_once(store, &expected).await;
    let december = all_lines(store, &globex(), month("2026-12")).await;
    assert_eq!(december.len(), 1, "only the line billed before");
}
