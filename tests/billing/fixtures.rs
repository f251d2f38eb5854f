//! What the billing suites share: stream records built from assignments, batches billed, the
//! check that each line is billed once, and the requests of the invoice and cancel routes.

use std::collections::{BTreeMap, BTreeSet};

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use axum::http::{Method, StatusCode};
use keypool::domain::{
    Assignment, AssignmentId, CourseId, InvoiceLine, InvoiceTotals, LineKind, Month, PoolId,
};
use keypool::events::billing as bill;
use keypool::identity::{OrgId, UserId};
use keypool::keys::KeyCode;
use keypool::store::prelude::*;
use keypool::time;
use keypool_tests::{Reply, World};
use serde_json::{Value, json};

/// A stream event from `tests/fixtures/dynamodb-stream/`.
pub(crate) fn fixture(name: &str) -> Event {
    let path = format!(
        "{}/fixtures/dynamodb-stream/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

pub(crate) fn month(text: &str) -> Month {
    Month::parse(text).unwrap()
}

/// Every line of an organization's month, read page by page.
pub(crate) async fn all_lines(store: &dyn Store, org: &OrgId, m: Month) -> Vec<InvoiceLine> {
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

/// An event of the given records, as Lambda delivers a batch.
pub(crate) fn event_of(records: Vec<EventRecord>) -> Event {
    let mut event = Event::default();
    event.records = records;
    event
}

/// Bills a batch; returns the sequence numbers it reports as failed (the first not billed).
pub(crate) async fn bill_failures(ledger: &dyn Ledger, event: &Event) -> Vec<String> {
    bill::bill(ledger, event)
        .await
        .unwrap()
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone().unwrap_or_default())
        .collect()
}

pub(crate) fn acme() -> OrgId {
    OrgId::parse("acme").unwrap()
}

pub(crate) fn globex() -> OrgId {
    OrgId::parse("globex").unwrap()
}

/// An assignment of `org`, numbered `i`, redeemed at `at`.
pub(crate) fn assignment(org: &OrgId, i: usize, at: time::Timestamp) -> Assignment {
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

/// `a` launched once more, at `at`.
pub(crate) fn with_launch(a: &Assignment, at: time::Timestamp) -> Assignment {
    let mut launched = a.clone();
    launched.launch_count += 1;
    launched.last_launched_at = Some(at);
    launched
}

/// `a` cancelled at `at`.
pub(crate) fn with_cancellation(a: &Assignment, at: time::Timestamp) -> Assignment {
    let mut cancelled = a.clone();
    cancelled.cancelled_at = Some(at);
    cancelled
}

/// A change of an assignment item, as the assignments table's stream tells it.
#[derive(Debug, Clone)]
pub(crate) enum Change {
    /// A redemption put it.
    Insert(Assignment),
    /// A launch or a cancellation changed it.
    Modify { old: Assignment, new: Assignment },
    /// DynamoDB's TTL removed it at expiry: that bills nothing.
    Remove(Assignment),
}

/// Stream records, numbered in the order they are pushed, as a shard numbers them.
#[derive(Default)]
pub(crate) struct Stream(pub(crate) Vec<EventRecord>);

impl Stream {
    pub(crate) fn push(&mut self, change: Change) {
        let seq = self.0.len() + 1;
        let mut record = EventRecord::default();
        record.event_id = format!("{seq:032x}");
        record.change.sequence_number = Some(format!("{:0>24}", seq));
        let (name, new, old) = match &change {
            Change::Insert(a) => ("INSERT", Some(a), None),
            Change::Modify { old, new } => ("MODIFY", Some(new), Some(old)),
            Change::Remove(a) => ("REMOVE", None, Some(a)),
        };
        record.event_name = name.into();
        if let Some(a) = new {
            record.change.new_image = image(a);
        }
        if let Some(a) = old {
            record.change.old_image = image(a);
        }
        self.0.push(record);
    }

    pub(crate) fn insert(&mut self, a: &Assignment) {
        self.push(Change::Insert(a.clone()));
    }

    pub(crate) fn modify(&mut self, old: &Assignment, new: &Assignment) {
        self.push(Change::Modify {
            old: old.clone(),
            new: new.clone(),
        });
    }

    pub(crate) fn remove(&mut self, a: &Assignment) {
        self.push(Change::Remove(a.clone()));
    }
}

/// An assignment as the store writes it: the image a stream record carries.
pub(crate) fn image(a: &Assignment) -> serde_dynamo::Item {
    let mut item: serde_dynamo::Item = serde_dynamo::to_item(a).unwrap();
    item.insert(
        "entity".into(),
        serde_dynamo::AttributeValue::S("assignment".into()),
    );
    item
}

/// The lines a stream must bill, per organization and month: (assignment, kind) for each.
pub(crate) type Expected = BTreeMap<(String, Month), BTreeSet<(String, LineKind)>>;

/// Expects `a`'s line of `kind`, in the month of its redemption or of its cancellation.
pub(crate) fn expect_line(expected: &mut Expected, a: &Assignment, kind: LineKind) {
    let at = match kind {
        LineKind::Redemption => a.redeemed_at,
        LineKind::Credit => a.cancelled_at.expect("a cancelled assignment"),
    };
    expected
        .entry((a.org.to_string(), Month::of(at)))
        .or_default()
        .insert((a.assignment_id.to_string(), kind));
}

/// Checks that each organization's month holds exactly the expected lines, once each and of
/// that month, and that its totals count them.
pub(crate) async fn check_billed_once(store: &dyn Store, expected: &Expected) {
    for ((org, m), want) in expected {
        let org = OrgId::parse(org).unwrap();
        let lines = all_lines(store, &org, *m).await;
        for line in &lines {
            assert_eq!(line.month, *m);
        }
        let found: Vec<(String, LineKind)> = lines
            .iter()
            .map(|l| (l.assignment_id.to_string(), l.kind))
            .collect();
        let found_set: BTreeSet<_> = found.iter().cloned().collect();
        assert_eq!(found.len(), found_set.len(), "a line twice in {org} {m}");
        assert_eq!(&found_set, want, "the lines of {org} {m}");
        let totals = store.invoice_totals(&org, *m).await.unwrap();
        let count = |kind| want.iter().filter(|(_, k)| *k == kind).count() as u64;
        assert_eq!(
            totals,
            InvoiceTotals {
                redemptions: count(LineKind::Redemption),
                credits: count(LineKind::Credit),
            },
            "the totals of {org} {m}"
        );
        let sum: i64 = lines.iter().map(|l| l.quantity).sum();
        assert_eq!(totals.count(), sum, "totals equal the lines of {org} {m}");
    }
}

pub(crate) async fn redeem(w: &World, learner: &str, key: &str) -> Reply {
    w.call(
        Method::POST,
        "/v1/redemptions",
        Some(&w.learner(learner)),
        Some(json!({ "key": key })),
    )
    .await
}

/// Redeems a fresh key of a fresh pool of `org` for `learner`; returns (pool_id, key, body).
pub(crate) async fn redeemed(w: &World, org: &str, learner: &str) -> (String, String, Value) {
    let (_, pool_id) = w.pool(org, 30).await;
    let keys = w.generate(org, &pool_id, 2).await;
    let reply = redeem(w, learner, &keys[0]).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    (pool_id, keys[0].clone(), reply.body)
}

pub(crate) async fn launch(w: &World, learner: &str, assignment_id: &str) -> Reply {
    w.call(
        Method::POST,
        &format!("/v1/me/assignments/{assignment_id}/launch"),
        Some(&w.learner(learner)),
        None,
    )
    .await
}

/// `GET /v1/invoices/{month}` as `org`'s admin; `month` as the route takes it (`2026-11`,
/// `2026-11.csv`), with any query.
pub(crate) async fn invoice(w: &World, org: &str, month: &str) -> Reply {
    w.call(
        Method::GET,
        &format!("/v1/invoices/{month}"),
        Some(&w.admin(org)),
        None,
    )
    .await
}

pub(crate) fn csv_rows(text: &str) -> Vec<csv::StringRecord> {
    csv::Reader::from_reader(text.as_bytes())
        .records()
        .map(Result::unwrap)
        .collect()
}

pub(crate) fn current_month(w: &World) -> String {
    Month::of(w.now()).to_string()
}

pub(crate) async fn cancel(w: &World, org: &str, assignment_id: &str) -> keypool_tests::Reply {
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
pub(crate) fn mid_month(w: &World) {
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
