//! Cells for CSV files that people open in spreadsheets.

use std::borrow::Cow;

/// A cell that a spreadsheet shows as text: one starting with `=`, `+`, `-`, `@`, a tab or a
/// carriage return would be run as a formula, so it gets a leading apostrophe. Learner ids and
/// names come from outside, and a CSV must not become a way to run code on an admin's machine.
pub fn cell(text: &str) -> Cow<'_, str> {
    match text.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => Cow::Owned(format!("'{text}")),
        _ => Cow::Borrowed(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_neutralised_and_everything_else_is_kept() {
        for risky in ["=1+1", "+SUM(A1)", "-2", "@cmd", "\tx", "\rx"] {
            assert_eq!(cell(risky), format!("'{risky}"));
        }
        for plain in ["", "alice", "2026-11-28T00:00:00.000Z", "a=b", " =x", "'=x"] {
            assert_eq!(cell(plain), plain);
        }
    }
}
