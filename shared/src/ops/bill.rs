//! Billing: one invoice line per redemption and one credit per cancellation, each exactly once,
//! from the changes to assignments that the assignments table's stream carries (the events
//! edge, `events::billing`, reads them off the stream).
//!
//! The stream delivers at least once, in order per item. A line is keyed by its assignment and
//! kind and written only if absent, in the same transaction as the totals it adds to, so a
//! second delivery finds the line and changes nothing. A batch's lines are written together
//! (the ledger writes them in chunks, one transaction each, with one totals update per month
//! and chunk), in the order of their changes.

use crate::domain::{Assignment, InvoiceLine};
use crate::error::Error;
use crate::store::{Ledger, RecordedLines};

/// What happened to an item of the assignments table.
#[derive(Debug, Clone, PartialEq)]
pub enum AssignmentChange {
    /// An assignment was made: a redemption.
    Created(Assignment),
    /// An assignment changed; `before` is what it was, when that was an assignment.
    Changed {
        before: Option<Assignment>,
        after: Assignment,
    },
    /// Anything else: a removal (an expiry), an item that is not an assignment.
    Other,
}

impl AssignmentChange {
    /// What the change bills: a line for a new assignment, a credit for one that was just
    /// cancelled, nothing for launches, expiries or anything else.
    pub fn line(&self) -> Option<InvoiceLine> {
        match self {
            Self::Created(assignment) => Some(InvoiceLine::redemption(assignment)),
            Self::Changed { before, after } => {
                let was_cancelled = before.as_ref().is_some_and(|b| b.cancelled_at.is_some());
                match after.cancelled_at {
                    Some(at) if !was_cancelled => Some(InvoiceLine::credit(after, at)),
                    _ => None,
                }
            }
            Self::Other => None,
        }
    }
}

/// What billing a batch of changes did.
#[derive(Debug)]
pub struct Billed {
    /// Lines this call wrote (those written before, by an earlier delivery, not counted).
    pub written: usize,
    /// The first change not billed, by its index in the batch, and why: it and the changes
    /// after it are to be delivered again.
    pub failed: Option<(usize, Error)>,
}

/// Bills a batch of changes in order: their lines written by the ledger in chunks. Reports the
/// first change not billed (the first of the chunk that failed), so the batch is retried from
/// there: changes before it are billed, and it and those after are not, or are billed already,
/// which a retry finds and does not count again.
pub async fn bill(ledger: &dyn Ledger, changes: &[AssignmentChange]) -> Billed {
    let mut lines = Vec::new();
    // The change each line comes from, by its index in the batch.
    let mut sources = Vec::new();
    for (i, change) in changes.iter().enumerate() {
        if let Some(line) = change.line() {
            lines.push(line);
            sources.push(i);
        }
    }
    let recorded = if lines.is_empty() {
        RecordedLines::default()
    } else {
        ledger.record_invoice_lines(&lines).await
    };
    let written = recorded.settled.iter().filter(|&&new| new).count();
    // A ledger that says it failed after settling every line is not believed: the first
    // change is retried, which is safe as billing is idempotent.
    let failed = recorded.failure.map(|error| {
        let index = sources.get(recorded.settled.len()).copied().unwrap_or(0);
        (index, error)
    });
    Billed { written, failed }
}
