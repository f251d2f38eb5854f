//! The invoice routes: a month's lines to its organization's admins only, page by page and as
//! CSV.

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode};
use keypool::domain::{AssignmentId, InvoiceLine, LineKind};
use keypool_tests::World;
use serde_json::json;

use super::fixtures::*;

#[tokio::test]
async fn the_invoice_shows_the_organizations_lines_to_its_admins_only() {
    let w = World::new().await;
    let (pool_id, key, body) = redeemed(&w, "acme", "=cmd|'/Ccalc'!A0").await;
    let (_, _, other) = redeemed(&w, "globex", "bob").await;
    assert_eq!(w.follower().drain().await.unwrap(), 2);
    let m = current_month(&w);

    let reply = invoice(&w, "acme", &m).await;
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

    let csv = invoice(&w, "acme", &format!("{m}.csv")).await;
    assert_eq!(csv.status, StatusCode::OK);
    assert_eq!(csv.headers["content-type"], "text/csv; charset=utf-8");
    assert!(
        csv.headers["content-disposition"]
            .to_str()
            .unwrap()
            .contains(&format!("keypool-invoice-{m}.csv"))
    );
    let text = csv.body.as_str().unwrap();
    let rows = csv_rows(text);
    assert_eq!(rows.len(), 1);
    assert!(text.starts_with(
        "month,kind,quantity,assignment_id,pool_id,course_id,key,learner,redeemed_at,cancelled_at\r\n"
    ));
    assert_eq!(&rows[0][3], body["assignment_id"].as_str().unwrap());
    assert_eq!(&rows[0][6], key.as_str());
    // A learner id that a spreadsheet would run as a formula is neutralised.
    assert_eq!(&rows[0][7], "'=cmd|'/Ccalc'!A0");

    for bad in ["2026-13", "2026-1", "november", "2026-11.txt", "2026-1.csv"] {
        let reply = invoice(&w, "acme", bad).await;
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
    let empty = invoice(&w, "acme", "1999-01").await;
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
        let a = assignment(&acme(), i, now);
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
        let reply = invoice(&w, "acme", &format!("{m}?limit=1000&cursor={cursor}")).await;
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
    let csv = invoice(&w, "acme", &format!("{m}.csv")).await;
    let text = csv.body.as_str().unwrap();
    let from_csv: BTreeSet<String> = csv_rows(text).iter().map(|r| r[3].to_string()).collect();
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
