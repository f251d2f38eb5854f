//! An organization's mail template: a one-line subject and a plain-text body with
//! placeholders, parsed once (unknown placeholders are refused by name) and rendered per
//! person.

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// Longest subject, in characters (before and after rendering).
pub const MAX_SUBJECT_CHARS: usize = 200;
/// Longest body, in characters (before and after rendering).
pub const MAX_BODY_CHARS: usize = 20_000;

/// The placeholders a template may use.
pub const PLACEHOLDERS: [&str; 7] = [
    "name",
    "course",
    "pool",
    "key",
    "link",
    "starts_at",
    "expires_at",
];

/// The template used until an organization saves its own.
pub const DEFAULT_SUBJECT: &str = "Your key for {{course}}";
pub const DEFAULT_BODY: &str = "Hello {{name}},

here is your key for {{course}}:

    {{key}}

Redeem it here: {{link}}

The key can be redeemed from {{starts_at}} until {{expires_at}}.
";

/// Why a template was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unknown placeholders: {}; known ones are {}", .0.join(", "), PLACEHOLDERS.map(|p| format!("{{{{{p}}}}}")).join(", "))]
    UnknownPlaceholders(Vec<String>),
    #[error("a placeholder opened with {{{{ is not closed with }}}}")]
    UnclosedPlaceholder,
    #[error("the subject must be one line")]
    SubjectNotOneLine,
    #[error("the subject must not be empty")]
    EmptySubject,
    #[error("the subject is longer than {MAX_SUBJECT_CHARS} characters")]
    SubjectTooLong,
    #[error("the body must not be empty")]
    EmptyBody,
    #[error("the body is longer than {MAX_BODY_CHARS} characters")]
    BodyTooLong,
}

/// A subject and a plain-text body, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailTemplate {
    subject: String,
    body: String,
}

/// What a template is filled with for one person.
#[derive(Clone)]
pub struct Fields {
    /// `None` when the list named no one: "Hello {{name}}," renders "Hello,".
    pub name: Option<String>,
    pub course: String,
    pub pool: String,
    pub key: String,
    /// The redeem deep link, `<origin>/redeem?key=<key>`.
    pub link: String,
    pub starts_at: Timestamp,
    pub expires_at: Timestamp,
}

impl std::fmt::Debug for Fields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fields")
            .field("course", &self.course)
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

impl Fields {
    /// Fields for a preview: a made-up person and key.
    pub fn sample(origin: &str, now: Timestamp) -> Self {
        let key = "ABCDE-FGHJK-MNPQR-STVW0".to_owned();
        Self {
            name: Some("Ada Lovelace".into()),
            course: "Introduction to Analytical Engines".into(),
            pool: "Spring cohort".into(),
            link: redeem_link(origin, &key),
            key,
            starts_at: now,
            expires_at: now + chrono::Duration::days(30),
        }
    }

    fn value(&self, placeholder: &str) -> String {
        let date = |ts: &Timestamp| ts.format("%Y-%m-%d %H:%M UTC").to_string();
        match placeholder {
            "name" => self.name.clone().unwrap_or_default(),
            "course" => self.course.clone(),
            "pool" => self.pool.clone(),
            "key" => self.key.clone(),
            "link" => self.link.clone(),
            "starts_at" => date(&self.starts_at),
            "expires_at" => date(&self.expires_at),
            _ => String::new(),
        }
    }
}

/// The deep link that opens the redeem page with the key filled in.
pub fn redeem_link(origin: &str, key: &str) -> String {
    let mut url = format!("{}/redeem?key=", origin.trim_end_matches('/'));
    url.extend(url::form_urlencoded::byte_serialize(key.as_bytes()));
    url
}

/// Checks a subject as a header value: one line, not empty, not too long.
pub(crate) fn check_subject(subject: &str) -> Result<(), TemplateError> {
    if subject.chars().any(|c| c.is_control()) {
        return Err(TemplateError::SubjectNotOneLine);
    }
    if subject.trim().is_empty() {
        return Err(TemplateError::EmptySubject);
    }
    if subject.chars().count() > MAX_SUBJECT_CHARS {
        return Err(TemplateError::SubjectTooLong);
    }
    Ok(())
}

/// A template's text in pieces: literal text and placeholder names.
enum Piece<'a> {
    Text(&'a str),
    Placeholder(&'a str),
}

fn pieces(text: &str) -> Result<Vec<Piece<'_>>, TemplateError> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        out.push(Piece::Text(&rest[..open]));
        let after = &rest[open + 2..];
        let close = after.find("}}").ok_or(TemplateError::UnclosedPlaceholder)?;
        out.push(Piece::Placeholder(after[..close].trim()));
        rest = &after[close + 2..];
    }
    out.push(Piece::Text(rest));
    Ok(out)
}

fn unknown(text: &str, found: &mut Vec<String>) -> Result<(), TemplateError> {
    for piece in pieces(text)? {
        if let Piece::Placeholder(name) = piece
            && !PLACEHOLDERS.contains(&name)
            && !found.iter().any(|f| f == name)
        {
            found.push(name.chars().take(40).collect());
        }
    }
    Ok(())
}

fn fill(text: &str, fields: &Fields) -> String {
    let mut out = String::with_capacity(text.len());
    // `pieces` succeeded when the template was parsed.
    for piece in pieces(text).unwrap_or_default() {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Placeholder(name) => {
                let value = fields.value(name);
                if value.is_empty() && out.ends_with(' ') {
                    // "Hello {{name}}," without a name reads "Hello,".
                    out.pop();
                }
                out.push_str(&value);
            }
        }
    }
    out
}

impl MailTemplate {
    /// Checks a subject and a body.
    pub fn parse(subject: &str, body: &str) -> Result<Self, TemplateError> {
        check_subject(subject)?;
        if body.trim().is_empty() {
            return Err(TemplateError::EmptyBody);
        }
        if body.chars().count() > MAX_BODY_CHARS {
            return Err(TemplateError::BodyTooLong);
        }
        let mut found = Vec::new();
        unknown(subject, &mut found)?;
        unknown(body, &mut found)?;
        if !found.is_empty() {
            return Err(TemplateError::UnknownPlaceholders(found));
        }
        Ok(Self {
            subject: subject.to_owned(),
            body: body.to_owned(),
        })
    }

    pub fn subject(&self) -> &str {
        &self.subject
    }

    pub fn body(&self) -> &str {
        &self.body
    }

    /// The subject and body for one person. A value that would break the subject's line
    /// (or make it too long) is refused, whatever checked it before.
    pub fn render(&self, fields: &Fields) -> Result<(String, String), TemplateError> {
        let subject = fill(&self.subject, fields);
        check_subject(&subject)?;
        let body = fill(&self.body, fields);
        if body.chars().count() > MAX_BODY_CHARS {
            return Err(TemplateError::BodyTooLong);
        }
        Ok((subject, body))
    }
}

impl Default for MailTemplate {
    fn default() -> Self {
        Self {
            subject: DEFAULT_SUBJECT.into(),
            body: DEFAULT_BODY.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> Fields {
        Fields::sample("http://localhost:8080/", chrono::Utc::now())
    }

    #[test]
    fn the_default_parses_and_renders_every_field() {
        let t = MailTemplate::default();
        assert_eq!(MailTemplate::parse(t.subject(), t.body()), Ok(t.clone()));
        let (subject, body) = t.render(&fields()).unwrap();
        assert_eq!(subject, "Your key for Introduction to Analytical Engines");
        assert!(body.starts_with("Hello Ada Lovelace,"), "{body}");
        assert!(body.contains("ABCDE-FGHJK-MNPQR-STVW0"));
        assert!(body.contains("http://localhost:8080/redeem?key=ABCDE-FGHJK-MNPQR-STVW0"));
        assert!(body.contains(" UTC until "), "{body}");
    }

    #[test]
    fn a_missing_name_reads_hello() {
        let f = Fields {
            name: None,
            ..fields()
        };
        let (_, body) = MailTemplate::default().render(&f).unwrap();
        assert!(body.starts_with("Hello,\n"), "{body}");
    }

    #[test]
    fn unknown_placeholders_are_named() {
        let err =
            MailTemplate::parse("Hi {{ nmae }}", "{{key}} {{pasword}} {{pasword}}").unwrap_err();
        assert_eq!(
            err,
            TemplateError::UnknownPlaceholders(vec!["nmae".into(), "pasword".into()])
        );
        assert!(err.to_string().contains("nmae, pasword"), "{err}");
    }

    #[test]
    fn bounds_and_shape_are_checked() {
        assert_eq!(
            MailTemplate::parse("a\r\nBcc: x", "b"),
            Err(TemplateError::SubjectNotOneLine)
        );
        assert_eq!(
            MailTemplate::parse(" ", "b"),
            Err(TemplateError::EmptySubject)
        );
        assert_eq!(
            MailTemplate::parse("a", " \n"),
            Err(TemplateError::EmptyBody)
        );
        assert_eq!(
            MailTemplate::parse("a", "{{key"),
            Err(TemplateError::UnclosedPlaceholder)
        );
        let long = "x".repeat(MAX_SUBJECT_CHARS + 1);
        assert_eq!(
            MailTemplate::parse(&long, "b"),
            Err(TemplateError::SubjectTooLong)
        );
        let long = "x".repeat(MAX_BODY_CHARS + 1);
        assert_eq!(
            MailTemplate::parse("a", &long),
            Err(TemplateError::BodyTooLong)
        );
    }

    #[test]
    fn a_value_cannot_break_the_subject_line() {
        let t = MailTemplate::parse("Key for {{name}}", "{{key}}").unwrap();
        let f = Fields {
            name: Some("Eve\r\nBcc: eve@example.org".into()),
            ..fields()
        };
        assert_eq!(t.render(&f), Err(TemplateError::SubjectNotOneLine));
    }

    #[test]
    fn the_link_escapes_the_key() {
        assert_eq!(
            redeem_link("https://x.org", "A B&C"),
            "https://x.org/redeem?key=A+B%26C"
        );
    }
}
