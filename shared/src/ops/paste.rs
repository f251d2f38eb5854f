//! Reading a pasted list of keys: lines numbered from 1 (blank lines count and are skipped),
//! each non-blank line either valid or rejected exactly once, in one pass over the body.
//!
//! Memory stays a small multiple of the body whatever it holds: a JSON list is read element by
//! element (never as a `Vec<String>`), valid keys are kept in one arena of canonical text with
//! twelve bytes of bookkeeping each, duplicates are found by sorting indices into that arena,
//! and rejections keep only the first `MAX_REJECTED_SHOWN` lines plus a count.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::keys::{self, KeyCode};

/// Rejected lines an answer lists; `rejected_count` says how many there are in all.
pub const MAX_REJECTED_SHOWN: usize = 1000;
/// Longest echo of a rejected line.
const MAX_ECHO_CHARS: usize = 80;

/// Why a line of a key list was not added (documented as `RejectedLineCode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LineCode {
    EmptyKey,
    InvalidCharacters,
    TooShort,
    TooLong,
    ReservedKeyShape,
    DuplicateInRequest,
    AlreadyExists,
}

impl LineCode {
    /// Every line code.
    pub const ALL: [LineCode; 7] = [
        Self::EmptyKey,
        Self::InvalidCharacters,
        Self::TooShort,
        Self::TooLong,
        Self::ReservedKeyShape,
        Self::DuplicateInRequest,
        Self::AlreadyExists,
    ];

    /// The code as clients see it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::EmptyKey => "empty_key",
            Self::InvalidCharacters => "invalid_characters",
            Self::TooShort => "too_short",
            Self::TooLong => "too_long",
            Self::ReservedKeyShape => "reserved_key_shape",
            Self::DuplicateInRequest => "duplicate_in_request",
            Self::AlreadyExists => "already_exists",
        }
    }
}

impl From<keys::KeyFormatError> for LineCode {
    fn from(error: keys::KeyFormatError) -> Self {
        use keys::KeyFormatError as E;
        match error {
            E::Empty => Self::EmptyKey,
            E::InvalidCharacters => Self::InvalidCharacters,
            E::TooShort => Self::TooShort,
            E::TooLong => Self::TooLong,
            E::ReservedShape => Self::ReservedKeyShape,
        }
    }
}

/// One pasted line that was not added, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RejectedLine {
    /// Line number, counting from 1 (blank lines count).
    pub line: usize,
    /// The line as sent (trimmed, shortened when long); for a key found twice or taken, the key.
    pub key: String,
    pub code: LineCode,
    pub message: String,
}

impl RejectedLine {
    /// A line that is not a key.
    pub fn malformed(line: usize, text: &str, error: keys::KeyFormatError) -> Self {
        Self {
            line,
            key: echo(text),
            code: error.into(),
            message: error.to_string(),
        }
    }

    /// A key that an earlier line of the same request holds already.
    pub fn duplicate(line: usize, key: &str, first: usize) -> Self {
        Self {
            line,
            key: key.to_string(),
            code: LineCode::DuplicateInRequest,
            message: format!("the same key as line {first}"),
        }
    }

    /// A key that exists already, in this pool or any other.
    pub fn already_exists(line: usize, key: &KeyCode) -> Self {
        Self {
            line,
            key: key.display_form(),
            code: LineCode::AlreadyExists,
            message: "this key exists already (keys are unique across all pools)".into(),
        }
    }
}

fn echo(line: &str) -> String {
    super::text::echo(line, MAX_ECHO_CHARS)
}

/// The rejected lines of a request: the first `MAX_REJECTED_SHOWN` by line number, whatever
/// order they were found in, and how many there are in all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rejections {
    shown: BTreeMap<usize, RejectedLine>,
    count: usize,
}

impl Rejections {
    /// Counts a rejected line; `make` builds its record only when it is among those shown.
    pub fn add(&mut self, line: usize, make: impl FnOnce() -> RejectedLine) {
        self.count += 1;
        if self.shown.len() >= MAX_REJECTED_SHOWN
            && self
                .shown
                .last_key_value()
                .is_some_and(|(&last, _)| line > last)
        {
            return;
        }
        self.shown.insert(line, make());
        if self.shown.len() > MAX_REJECTED_SHOWN {
            self.shown.pop_last();
        }
    }

    /// How many lines were rejected in all.
    pub fn count(&self) -> usize {
        self.count
    }

    /// True when no line was rejected.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The rejected lines shown, in line order.
    pub fn shown(&self) -> Vec<RejectedLine> {
        self.shown.values().cloned().collect()
    }
}

/// One valid key: its line and where its canonical text is in the arena.
#[derive(Debug, Clone, Copy)]
struct Entry {
    line: u32,
    start: u32,
    /// 0 once dropped (taken by another pool, found twice).
    len: u8,
}

/// A paste read and checked on its own, before any store lookup: every non-blank line is
/// either a valid key (the first of its spelling) or a rejection.
#[derive(Debug, Clone, Default)]
pub struct CheckedPaste {
    lines: usize,
    arena: String,
    entries: Vec<Entry>,
    rejections: Rejections,
}

impl CheckedPaste {
    /// Reads a text/plain body, one key per line (`\n` or `\r\n`).
    pub fn from_text(body: &str) -> Self {
        let mut paste = Self::default();
        for (i, line) in body.split('\n').enumerate() {
            paste.line(i + 1, line.trim_end_matches('\r'));
        }
        paste.finish()
    }

    /// Reads a list of keys, numbered like lines (blank entries count and are skipped).
    pub fn from_list<T: AsRef<str>>(keys: &[T]) -> Self {
        let mut paste = Self::default();
        for (i, key) in keys.iter().enumerate() {
            paste.line(i + 1, key.as_ref());
        }
        paste.finish()
    }

    /// Reads numbered lines.
    pub fn from_lines(lines: &[(usize, &str)]) -> Self {
        let mut paste = Self::default();
        for &(line, text) in lines {
            paste.line(line, text);
        }
        paste.finish()
    }

    /// Reads a JSON body `{"keys": [...]}` element by element.
    pub fn from_json(body: &[u8]) -> serde_json::Result<Self> {
        let mut paste = Self::default();
        let mut reader = serde_json::Deserializer::from_slice(body);
        Body(&mut paste).deserialize(&mut reader)?;
        reader.end()?;
        Ok(paste.finish())
    }

    fn line(&mut self, number: usize, text: &str) {
        if text.trim().is_empty() {
            return;
        }
        self.lines += 1;
        match keys::parse_custom(text) {
            Err(e) => self
                .rejections
                .add(number, || RejectedLine::malformed(number, text, e)),
            Ok(key) => {
                let start = self.arena.len();
                self.arena.push_str(key.as_str());
                self.entries.push(Entry {
                    line: u32::try_from(number).unwrap_or(u32::MAX),
                    start: u32::try_from(start).unwrap_or(u32::MAX),
                    // A custom key has at most 64 characters.
                    len: key.as_str().len() as u8,
                });
            }
        }
    }

    fn text(&self, entry: &Entry) -> &str {
        let start = entry.start as usize;
        self.arena
            .get(start..start + entry.len as usize)
            .unwrap_or("")
    }

    /// Rejects every key after the first of its spelling.
    fn finish(mut self) -> Self {
        let mut order: Vec<u32> = (0..self.entries.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| {
            let (ea, eb) = (&self.entries[a as usize], &self.entries[b as usize]);
            self.text(ea).cmp(self.text(eb)).then(a.cmp(&b))
        });
        let mut first: Option<u32> = None;
        for &index in &order {
            let entry = self.entries[index as usize];
            match first {
                Some(f) if self.text(&self.entries[f as usize]) == self.text(&entry) => {
                    let original = self.entries[f as usize].line as usize;
                    let line = entry.line as usize;
                    let key = self.text(&entry).to_string();
                    self.rejections
                        .add(line, || RejectedLine::duplicate(line, &key, original));
                    self.entries[index as usize].len = 0;
                }
                _ => first = Some(index),
            }
        }
        drop(order);
        self.compact();
        self
    }

    fn compact(&mut self) {
        self.entries.retain(|e| e.len > 0);
    }

    /// Non-blank lines.
    pub fn len(&self) -> usize {
        self.lines
    }

    /// True when every line is blank.
    pub fn is_empty(&self) -> bool {
        self.lines == 0
    }

    /// Valid keys not dropped.
    pub fn valid_count(&self) -> usize {
        self.entries.len()
    }

    /// The lines rejected so far.
    pub fn rejections(&self) -> &Rejections {
        &self.rejections
    }

    /// Rejects a line later (a key found taken); `make` builds its record when it is shown.
    pub fn reject(&mut self, line: usize, make: impl FnOnce() -> RejectedLine) {
        self.rejections.add(line, make);
    }

    /// The valid keys of chunk `index` of `size`, with their lines.
    pub fn chunk(&self, index: usize, size: usize) -> Vec<(usize, KeyCode)> {
        let from = index.saturating_mul(size).min(self.entries.len());
        let to = from.saturating_add(size).min(self.entries.len());
        self.entries[from..to]
            .iter()
            .filter(|e| e.len > 0)
            .filter_map(|e| {
                KeyCode::parse(self.text(e))
                    .ok()
                    .map(|k| (e.line as usize, k))
            })
            .collect()
    }

    /// How many chunks of `size` the valid keys make.
    pub fn chunk_count(&self, size: usize) -> usize {
        self.entries.len().div_ceil(size.max(1))
    }

    /// Every valid key with its line, in line order.
    pub fn valid(&self) -> Vec<(usize, KeyCode)> {
        self.chunk(0, self.entries.len())
    }

    /// Drops the keys of these lines (found taken); they were rejected through `reject`.
    pub fn drop_lines(&mut self, lines: &[usize]) {
        for &line in lines {
            let Ok(line) = u32::try_from(line) else {
                continue;
            };
            if let Ok(i) = self.entries.binary_search_by_key(&line, |e| e.line) {
                self.entries[i].len = 0;
            }
        }
        self.compact();
    }
}

/// `{"keys": [...]}`, and nothing else.
struct Body<'a>(&'a mut CheckedPaste);

impl<'de> DeserializeSeed<'de> for Body<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Body<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object {\"keys\": [...]}")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = false;
        while let Some(name) = map.next_key::<String>()? {
            if name != "keys" {
                return Err(de::Error::unknown_field(&name, &["keys"]));
            }
            if seen {
                return Err(de::Error::duplicate_field("keys"));
            }
            map.next_value_seed(List(&mut *self.0))?;
            seen = true;
        }
        if !seen {
            return Err(de::Error::missing_field("keys"));
        }
        Ok(())
    }
}

/// The list of keys, each checked as it is read.
struct List<'a>(&'a mut CheckedPaste);

impl<'de> DeserializeSeed<'de> for List<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for List<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of keys (strings)")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut number = 0;
        while seq
            .next_element_seed(Line {
                paste: &mut *self.0,
                number: number + 1,
            })?
            .is_some()
        {
            number += 1;
        }
        Ok(())
    }
}

/// One key of the list, checked without keeping the string.
struct Line<'a> {
    paste: &'a mut CheckedPaste,
    number: usize,
}

impl<'de> DeserializeSeed<'de> for Line<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Line<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key (a string)")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.paste.line(self.number, v);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(p: &CheckedPaste) -> Vec<(usize, &'static str)> {
        p.rejections()
            .shown()
            .iter()
            .map(|r| (r.line, r.code.as_str()))
            .collect()
    }

    #[test]
    fn text_lines_keep_numbers_and_skip_blanks() {
        let p = CheckedPaste::from_text("abcd\r\n\n  efgh  \n\n");
        assert_eq!(p.len(), 2);
        let valid: Vec<(usize, String)> = p
            .valid()
            .into_iter()
            .map(|(l, k)| (l, k.to_string()))
            .collect();
        assert_eq!(valid, [(1, "ABCD".to_string()), (3, "EFGH".to_string())]);
    }

    #[test]
    fn validation_reports_every_bad_line() {
        let p = CheckedPaste::from_text("abcd-1234\nab\nABCD1234\nok-key-1\nbad key!");
        assert_eq!(p.valid_count(), 2);
        assert_eq!(
            codes(&p),
            [
                (2, "too_short"),
                (3, "duplicate_in_request"),
                (5, "invalid_characters")
            ]
        );
        assert!(p.rejections().shown()[1].message.contains("line 1"));
    }

    #[test]
    fn json_lists_are_read_as_lines() {
        let p = CheckedPaste::from_json(br#"{"keys": ["abcd-1", "", "x", "ABCD1"]}"#).unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(codes(&p), [(3, "too_short"), (4, "duplicate_in_request")]);
        for bad in [
            &br#"{"keys": "ABCD"}"#[..],
            br#"{"keys": [1]}"#,
            br#"{"key": []}"#,
            br#"{}"#,
            br#"{"keys": [], "keys": []}"#,
            br#"{"keys": []} x"#,
            br#"[]"#,
        ] {
            assert!(CheckedPaste::from_json(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rejections_keep_the_first_lines_whatever_the_order() {
        let mut r = Rejections::default();
        for line in (1..=3000).rev() {
            r.add(line, || RejectedLine::duplicate(line, "K", 0));
        }
        assert_eq!(r.count(), 3000);
        let shown = r.shown();
        assert_eq!(shown.len(), MAX_REJECTED_SHOWN);
        assert_eq!(shown[0].line, 1);
        assert_eq!(shown[MAX_REJECTED_SHOWN - 1].line, MAX_REJECTED_SHOWN);
    }

    #[test]
    fn dropped_lines_leave_the_valid_keys() {
        let mut p = CheckedPaste::from_text("aaaa\nbbbb\ncccc\n");
        p.drop_lines(&[2]);
        let lines: Vec<usize> = p.valid().into_iter().map(|(l, _)| l).collect();
        assert_eq!(lines, [1, 3]);
        assert_eq!(p.chunk_count(2), 1);
    }
}
