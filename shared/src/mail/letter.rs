//! One letter to one person, and how it becomes a lettre `Message`.

use lettre::Message;
use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MessageBuilder};

use super::MailError;
use super::template::{MAX_BODY_CHARS, MAX_SUBJECT_CHARS, check_subject};
use crate::identity::OrgId;

/// Longest reference (the sending job's id for the letter).
pub const MAX_REFERENCE_CHARS: usize = 200;

/// One letter: plain text to one person.
#[derive(Clone)]
pub struct Letter {
    /// The organization that sends it (the outbox keeps each organization's letters apart).
    pub org: OrgId,
    pub to_email: String,
    pub to_name: Option<String>,
    pub subject: String,
    /// Plain text; holds a key, so it is never logged.
    pub body: String,
    /// The sender's own reference, carried in `X-KeyPool-Reference` so that a bounce or a
    /// copy in the outbox can be matched to what sent it.
    pub reference: String,
}

impl std::fmt::Debug for Letter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Letter")
            .field("org", &self.org)
            .field("to_email", &self.to_email)
            .field("reference", &self.reference)
            .finish_non_exhaustive()
    }
}

/// Who letters come from (`--mail-from`, `KEYPOOL_MAIL_FROM`): `KeyPool <keys@example.org>`.
#[derive(Debug, Clone)]
pub struct MailFrom(Mailbox);

impl MailFrom {
    /// Reads `Name <address>` or a bare address.
    pub fn parse(text: &str) -> Result<Self, String> {
        text.trim()
            .parse::<Mailbox>()
            .map(Self)
            .map_err(|e| format!("{text:?} is not a sender address: {e}"))
    }

    /// The domain of the address, which names Message-IDs.
    fn domain(&self) -> &str {
        self.0.email.domain()
    }
}

impl Default for MailFrom {
    fn default() -> Self {
        Self(Mailbox::new(
            Some("KeyPool".into()),
            lettre::Address::new("keys", "keypool.localhost").expect("a fixed, valid address"),
        ))
    }
}

/// The `X-KeyPool-Reference` header.
#[derive(Debug, Clone)]
struct Reference(String);

impl Header for Reference {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("X-KeyPool-Reference")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self(s.to_owned()))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

impl Letter {
    /// The message as lettre builds it, and its Message-ID (without brackets). Anything that
    /// could write a header of its own (a line break in the subject, the name or the
    /// reference) or an address that is no address is refused, permanently.
    pub fn to_message(&self, from: &MailFrom) -> Result<(Message, String), MailError> {
        let refuse = |why: String| MailError::Permanent(why);
        check_subject(&self.subject).map_err(|e| refuse(e.to_string()))?;
        if self.body.chars().count() > MAX_BODY_CHARS {
            return Err(refuse(format!(
                "the body is longer than {MAX_BODY_CHARS} characters"
            )));
        }
        if self.subject.chars().count() > MAX_SUBJECT_CHARS {
            return Err(refuse("the subject is too long".into()));
        }
        if let Some(name) = &self.to_name {
            crate::ops::recipient_list::parse_name(name).map_err(refuse)?;
        }
        if self.reference.chars().count() > MAX_REFERENCE_CHARS
            || !self.reference.chars().all(|c| c.is_ascii_graphic())
        {
            return Err(refuse(
                "the reference must be printable ASCII without spaces".into(),
            ));
        }
        let address = crate::ops::recipient_list::parse_email(&self.to_email)
            .map_err(refuse)?
            .parse::<lettre::Address>()
            .map_err(|e| refuse(format!("{:?} is not an e-mail address: {e}", self.to_email)))?;
        let to = Mailbox::new(self.to_name.clone(), address);
        let message_id = format!("{}@{}", uuid::Uuid::now_v7().simple(), from.domain());
        let builder: MessageBuilder = Message::builder()
            .from(from.0.clone())
            .to(to)
            .subject(self.subject.clone())
            .message_id(Some(format!("<{message_id}>")))
            .header(ContentType::TEXT_PLAIN)
            .header(Reference(self.reference.clone()));
        let message = builder
            .body(self.body.clone())
            .map_err(|e| refuse(format!("the message could not be built: {e}")))?;
        Ok((message, message_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter() -> Letter {
        Letter {
            org: OrgId::parse("org-1").unwrap(),
            to_email: "ann@example.org".into(),
            to_name: Some("Ann Ümlaut".into()),
            subject: "Your key".into(),
            body: "Key: ABCD-EFGH\n".into(),
            reference: "ref-1".into(),
        }
    }

    #[test]
    fn builds_a_plain_text_message_with_its_headers() {
        let (message, id) = letter().to_message(&MailFrom::default()).unwrap();
        let text = String::from_utf8(message.formatted()).unwrap();
        assert!(text.contains(&format!("Message-ID: <{id}>")), "{text}");
        assert!(
            text.contains("Content-Type: text/plain; charset=utf-8"),
            "{text}"
        );
        assert!(text.contains("X-KeyPool-Reference: ref-1"), "{text}");
        assert!(
            text.contains("From: KeyPool <keys@keypool.localhost>"),
            "{text}"
        );
        // The non-ASCII name is encoded, never raw in a header.
        assert!(
            text.contains("<ann@example.org>") && !text.contains("Ümlaut"),
            "{text}"
        );
    }

    #[test]
    fn refuses_header_injection_by_name_subject_or_reference() {
        for bad in [
            Letter {
                to_name: Some("Ann\r\nBcc: eve@example.org".into()),
                ..letter()
            },
            Letter {
                subject: "Key\r\nBcc: eve@example.org".into(),
                ..letter()
            },
            Letter {
                reference: "r\nBcc: eve@example.org".into(),
                ..letter()
            },
            Letter {
                to_email: "ann@example.org\r\nBcc: eve@example.org".into(),
                ..letter()
            },
        ] {
            let err = bad.to_message(&MailFrom::default()).unwrap_err();
            assert!(!err.is_transient(), "{err}");
        }
    }

    #[test]
    fn debug_leaves_the_body_out() {
        assert!(!format!("{:?}", letter()).contains("ABCD"));
    }
}
