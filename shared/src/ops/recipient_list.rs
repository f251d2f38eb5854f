//! Reading a list of people to hand keys to: `email[,name]` lines of CSV (or pasted text, which
//! is the same thing), or a JSON list. Lines are numbered from 1 as in a paste (blank lines
//! count and are skipped); each non-blank line is either a person or a rejection with a stable
//! code. Addresses are checked for shape only (lettre's parser, plus a dotted domain name);
//! names are text that prints what it says, and never hold a line break, which would let a
//! name write its own mail headers.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::text::parse_text;

/// People one request may name.
pub const MAX_RECIPIENTS: usize = 10_000;
/// Longest address (RFC 5321's path limit, less the brackets).
pub const MAX_EMAIL_CHARS: usize = 254;
/// Longest name.
pub const MAX_NAME_CHARS: usize = 100;
/// Rejected lines an answer lists; `rejected_count` says how many there are in all.
pub const MAX_REJECTED_SHOWN: usize = 1000;
/// Longest echo of a rejected line.
const MAX_ECHO_CHARS: usize = 80;

/// Why a line of a list was refused (documented as `RecipientLineCode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecipientLineCode {
    /// Not an address of the shape `name@domain.example`.
    InvalidEmail,
    /// A name that is too long, prints nothing, or holds a control character or line break.
    InvalidName,
    /// More than two fields (`email,name`); a name with a comma is quoted: `"Doe, Jane"`.
    TooManyFields,
    /// The same address as an earlier line (addresses compare without regard to case).
    DuplicateInRequest,
    /// The person holds a key of this pool already.
    AlreadyARecipient,
    /// The pool has no available, undistributed key left for this person.
    NoKeyLeft,
}

/// One line that was not taken, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RejectedRecipient {
    /// Line number, counting from 1 (blank lines and a header count).
    pub line: usize,
    /// The address as sent (trimmed, shortened when long).
    pub email: String,
    pub code: RecipientLineCode,
    pub message: String,
}

/// One person of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// The line that named them.
    pub line: usize,
    /// The address as typed, trimmed.
    pub email: String,
    pub name: Option<String>,
}

impl Person {
    /// What makes two lines the same person: the address without regard to case.
    pub fn identity(&self) -> String {
        identity(&self.email)
    }
}

/// What makes two addresses the same person. Mail systems treat the part before the `@` as
/// case-insensitive in practice, and a list that names `Ann@x.org` and `ann@x.org` means one
/// person, who must not get two keys.
pub fn identity(email: &str) -> String {
    email.to_lowercase()
}

/// One person as a JSON body names them.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PersonInput {
    /// `ann@example.org`
    pub email: String,
    /// How the mail greets them.
    #[serde(default)]
    pub name: Option<String>,
}

/// A list read and checked on its own, before any store lookup.
#[derive(Debug, Clone, Default)]
pub struct RecipientList {
    people: Vec<Person>,
    rejected: Vec<RejectedRecipient>,
    lines: usize,
}

impl RecipientList {
    /// Reads CSV or pasted text: `email[,name]` per line, an optional header line
    /// (`email,name`), names with commas quoted.
    pub fn from_csv(body: &str) -> Self {
        let mut list = Self::default();
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(body.as_bytes());
        let mut first = true;
        // Lines are counted from the records' byte offsets: a quoted field may span lines, and
        // the reader's own line count skips blank ones.
        let (mut counted_to, mut line) = (0usize, 1usize);
        for record in reader.records() {
            let at = match &record {
                Ok(r) => r.position().map_or(counted_to, |p| p.byte() as usize),
                Err(e) => e.position().map_or(counted_to, |p| p.byte() as usize),
            };
            // A record's offset is where the one before it ended: blank lines come first.
            let mut at = at.clamp(counted_to, body.len());
            while matches!(body.as_bytes().get(at), Some(b'\r' | b'\n')) {
                at += 1;
            }
            line += body.as_bytes()[counted_to..at]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            counted_to = at;
            let fields: Vec<String> = match record {
                Ok(r) => r.iter().map(str::to_owned).collect(),
                // A quote left open: the line as it is, which the address check refuses.
                Err(_) => vec![String::from("\"")],
            };
            let header = first
                && fields
                    .first()
                    .is_some_and(|f| matches!(f.to_lowercase().as_str(), "email" | "e-mail"));
            first = false;
            if header || fields.iter().all(|f| f.is_empty()) {
                continue;
            }
            list.line(line, &fields);
        }
        list.finish()
    }

    /// Reads a JSON list, numbered like lines.
    pub fn from_people(people: &[PersonInput]) -> Self {
        let mut list = Self::default();
        for (i, p) in people.iter().enumerate() {
            let mut fields = vec![p.email.clone()];
            fields.extend(p.name.clone());
            if fields.iter().all(|f| f.trim().is_empty()) {
                continue;
            }
            list.line(i + 1, &fields);
        }
        list.finish()
    }

    fn line(&mut self, line: usize, fields: &[String]) {
        self.lines += 1;
        let email = fields.first().map(|f| f.trim()).unwrap_or_default();
        let reject = |code, message: String| RejectedRecipient {
            line,
            email: echo(email),
            code,
            message,
        };
        if fields.len() > 2 {
            self.rejected.push(reject(
                RecipientLineCode::TooManyFields,
                "a line is an address and a name (quote a name that holds a comma)".into(),
            ));
            return;
        }
        if let Err(message) = parse_email(email) {
            self.rejected
                .push(reject(RecipientLineCode::InvalidEmail, message));
            return;
        }
        let name = match fields.get(1).map(|n| n.trim()).filter(|n| !n.is_empty()) {
            None => None,
            Some(n) => match parse_name(n) {
                Ok(n) => Some(n),
                Err(message) => {
                    self.rejected
                        .push(reject(RecipientLineCode::InvalidName, message));
                    return;
                }
            },
        };
        self.people.push(Person {
            line,
            email: email.to_owned(),
            name,
        });
    }

    /// Refuses every address after the first of its spelling.
    fn finish(mut self) -> Self {
        let mut first: HashMap<String, usize> = HashMap::with_capacity(self.people.len());
        let mut duplicates = Vec::new();
        self.people.retain(|p| match first.get(&p.identity()) {
            Some(&line) => {
                duplicates.push(RejectedRecipient {
                    line: p.line,
                    email: echo(&p.email),
                    code: RecipientLineCode::DuplicateInRequest,
                    message: format!("the same address as line {line}"),
                });
                false
            }
            None => {
                first.insert(p.identity(), p.line);
                true
            }
        });
        self.rejected.extend(duplicates);
        self.rejected.sort_by_key(|r| r.line);
        self
    }

    /// Refuses the people `refuse` picks, with `code` and `message`.
    pub fn refuse(
        &mut self,
        mut refuse: impl FnMut(&Person) -> bool,
        code: RecipientLineCode,
        message: &str,
    ) {
        let mut refused = Vec::new();
        self.people.retain(|p| {
            if refuse(p) {
                refused.push(RejectedRecipient {
                    line: p.line,
                    email: echo(&p.email),
                    code,
                    message: message.to_owned(),
                });
                false
            } else {
                true
            }
        });
        self.rejected.extend(refused);
        self.rejected.sort_by_key(|r| r.line);
    }

    /// Refuses everyone after the first `room` people, for want of keys.
    pub fn refuse_beyond(&mut self, room: usize) {
        let mut index = 0;
        self.refuse(
            |_| {
                index += 1;
                index > room
            },
            RecipientLineCode::NoKeyLeft,
            "the pool has no available key left that was not handed out",
        );
    }

    /// The people taken so far, in line order.
    pub fn people(&self) -> &[Person] {
        &self.people
    }

    /// Non-blank lines, a header not counted.
    pub fn len(&self) -> usize {
        self.lines
    }

    /// True when every line is blank.
    pub fn is_empty(&self) -> bool {
        self.lines == 0
    }

    /// How many lines were refused in all.
    pub fn rejected_count(&self) -> usize {
        self.rejected.len()
    }

    /// The first `MAX_REJECTED_SHOWN` refused lines, in line order.
    pub fn rejected_shown(&self) -> &[RejectedRecipient] {
        &self.rejected[..self.rejected.len().min(MAX_REJECTED_SHOWN)]
    }
}

/// An address of the shape `local@domain.example`: what lettre's parser accepts (RFC 5322's
/// local part, an internationalised domain name), with a dot in the domain (`ann@gmailcom` is a
/// typo, not an address) and no address literal (`ann@[10.0.0.1]`).
pub fn parse_email(text: &str) -> Result<String, String> {
    let text = text.trim();
    let refuse = || Err(format!("{:?} is not an e-mail address", echo(text)));
    if text.is_empty() {
        return Err("the address is empty".into());
    }
    if text.chars().count() > MAX_EMAIL_CHARS {
        return Err(format!(
            "an address has at most {MAX_EMAIL_CHARS} characters"
        ));
    }
    let Ok(address) = text.parse::<lettre::Address>() else {
        return refuse();
    };
    let domain = address.domain();
    if domain.starts_with('[') || !domain.contains('.') || domain.ends_with('.') {
        return refuse();
    }
    Ok(text.to_owned())
}

/// A name a mail greets someone by: text that prints what it says, on one line.
pub fn parse_name(text: &str) -> Result<String, String> {
    if text.contains(['\r', '\n']) {
        return Err("a name must not hold a line break".into());
    }
    parse_text(text, MAX_NAME_CHARS, "a name")
}

fn echo(line: &str) -> String {
    super::text::echo(line, MAX_ECHO_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(list: &RecipientList) -> Vec<(usize, RecipientLineCode)> {
        list.rejected_shown()
            .iter()
            .map(|r| (r.line, r.code))
            .collect()
    }

    #[test]
    fn lines_are_numbered_like_a_paste_with_a_header_and_quoted_names() {
        let list = RecipientList::from_csv(
            "email,name\nann@example.org,Ann Lee\n\n\"bo@example.org\",\"Lee, Bo\"\ncy@example.org\n",
        );
        let people: Vec<_> = list
            .people()
            .iter()
            .map(|p| (p.line, p.email.as_str(), p.name.as_deref()))
            .collect();
        assert_eq!(
            people,
            [
                (2, "ann@example.org", Some("Ann Lee")),
                (4, "bo@example.org", Some("Lee, Bo")),
                (5, "cy@example.org", None),
            ]
        );
        assert_eq!(list.len(), 3);
        assert_eq!(list.rejected_count(), 0);
    }

    #[test]
    fn every_bad_line_is_refused_once_with_its_code() {
        let list = RecipientList::from_csv(concat!(
            "not-an-address\n",
            "ann@example.org,Ann,extra\n",
            "ann@gmailcom\n",
            "ann@[10.0.0.1]\n",
            "ann@example.org,Ann\n",
            "ANN@Example.org,Ann again\n",
            "bo@example.org,\"Bo\r\nBcc: all@example.org\"\n",
            "cy@example.org,\u{202E}gnp.exe\n",
        ));
        assert_eq!(
            codes(&list),
            [
                (1, RecipientLineCode::InvalidEmail),
                (2, RecipientLineCode::TooManyFields),
                (3, RecipientLineCode::InvalidEmail),
                (4, RecipientLineCode::InvalidEmail),
                (6, RecipientLineCode::DuplicateInRequest),
                (7, RecipientLineCode::InvalidName),
                (9, RecipientLineCode::InvalidName),
            ]
        );
        assert_eq!(list.people().len(), 1);
        assert_eq!(list.people()[0].line, 5);
    }

    #[test]
    fn a_header_injection_through_json_is_refused_too() {
        let list = RecipientList::from_people(&[
            PersonInput {
                email: "ann@example.org".into(),
                name: Some("Ann\nBcc: everyone@example.org".into()),
            },
            PersonInput {
                email: "bo@example.org\r\nBcc: everyone@example.org".into(),
                name: None,
            },
        ]);
        assert_eq!(
            codes(&list),
            [
                (1, RecipientLineCode::InvalidName),
                (2, RecipientLineCode::InvalidEmail)
            ]
        );
        assert!(list.people().is_empty());
    }

    #[test]
    fn people_beyond_the_keys_left_are_refused_in_line_order() {
        let mut list = RecipientList::from_csv("a@x.org\nb@x.org\nc@x.org\n");
        list.refuse_beyond(2);
        assert_eq!(codes(&list), [(3, RecipientLineCode::NoKeyLeft)]);
        assert_eq!(list.people().len(), 2);
    }

    #[test]
    fn international_addresses_are_addresses() {
        assert!(parse_email("jürgen@münchen.de").is_ok());
        assert!(parse_email("o'brien+course@example.co.uk").is_ok());
        assert!(parse_email(&format!("{}@example.org", "a".repeat(250))).is_err());
    }
}
