//! Mail through real transports: an SMTP server that is not ours (aiosmtpd), and the outbox.

use std::time::{Duration, Instant};

use keypool::identity::OrgId;
use keypool::mail::{Fields, Letter, MailError, MailFrom, MailTemplate, Mailer, Outbox, Smtp};
use keypool_tests::smtp::SmtpServer;

fn from() -> MailFrom {
    MailFrom::parse("KeyPool <keys@school.example>").unwrap()
}

/// A letter rendered from the default template for one person.
fn letter(to_email: &str, to_name: Option<&str>) -> Letter {
    let mut fields = Fields::sample("http://localhost:8080", chrono::Utc::now());
    fields.name = to_name.map(str::to_owned);
    fields.key = "KEY12-34567-89ABC-DEFG0".into();
    fields.link = keypool::mail::template::redeem_link("http://localhost:8080", &fields.key);
    let (subject, body) = MailTemplate::default().render(&fields).unwrap();
    Letter {
        org: OrgId::parse("org-mail").unwrap(),
        to_email: to_email.into(),
        to_name: to_name.map(str::to_owned),
        subject,
        body,
        reference: "recipient-1".into(),
    }
}

#[tokio::test]
async fn smtp_delivers_a_plain_text_letter_with_its_headers() {
    let server = SmtpServer::start();
    let smtp = Smtp::from_url(&server.url(), from()).unwrap();
    let sent = smtp
        .send(&letter("zoe@example.org", Some("Zoë Ørsted")))
        .await
        .unwrap();
    let got = server.received(1).await;
    assert_eq!(got[0].rcpt, ["zoe@example.org"]);
    let text = &got[0].text;
    assert!(
        text.contains(&format!("Message-ID: <{}>", sent.message_id)),
        "{text}"
    );
    assert!(
        text.contains("From: KeyPool <keys@school.example>"),
        "{text}"
    );
    // The non-ASCII name travels encoded (RFC 2047), and the address beside it.
    assert!(text.contains("To: =?utf-8?b?"), "{text}");
    assert!(text.contains("<zoe@example.org>"), "{text}");
    assert!(
        text.contains("Content-Type: text/plain; charset=utf-8"),
        "{text}"
    );
    assert!(text.contains("X-KeyPool-Reference: recipient-1"), "{text}");
    assert!(
        text.contains("Subject: Your key for Introduction to Analytical Engines"),
        "{text}"
    );
    // The body may be quoted-printable; unfold soft line breaks before looking.
    let body = text.replace("=\r\n", "").replace("=3D", "=");
    assert!(body.contains("KEY12-34567-89ABC-DEFG0"), "{text}");
    assert!(
        body.contains("http://localhost:8080/redeem?key=KEY12-34567-89ABC-DEFG0"),
        "{text}"
    );
}

#[tokio::test]
async fn a_refused_recipient_is_permanent_and_a_4xx_is_transient() {
    let server = SmtpServer::start();
    let smtp = Smtp::from_url(&server.url(), from()).unwrap();
    let refused = smtp.send(&letter("refuse-me@example.org", None)).await;
    assert!(
        matches!(refused, Err(MailError::Permanent(_))),
        "{refused:?}"
    );
    let later = smtp.send(&letter("later@example.org", None)).await;
    assert!(matches!(later, Err(MailError::Transient(_))), "{later:?}");
}

#[tokio::test]
async fn a_server_that_is_down_is_transient() {
    // A port that was free a moment ago: nothing listens there.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let smtp = Smtp::from_url(&format!("smtp://127.0.0.1:{port}"), from()).unwrap();
    let err = smtp
        .send(&letter("ann@example.org", None))
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
}

#[tokio::test]
async fn a_server_that_never_answers_is_given_up_on_in_bounded_time() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts and holds connections, never says a word.
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let smtp = Smtp::with_timeouts(
        &format!("smtp://127.0.0.1:{port}"),
        from(),
        Duration::from_millis(500),
        Duration::from_secs(2),
    )
    .unwrap();
    let started = Instant::now();
    let err = smtp
        .send(&letter("ann@example.org", None))
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    holder.abort();
}

#[tokio::test]
async fn the_outbox_writes_a_message_under_the_org_folder() {
    let dir = std::env::temp_dir().join(format!("keypool-outbox-test-{}", std::process::id()));
    let outbox = Outbox::new(&dir, from());
    let l = letter("ann@example.org", Some("Ann"));
    let sent = outbox.send(&l).await.unwrap();
    let ids = outbox.ids(&l.org).await.unwrap();
    assert_eq!(ids.len(), 1);
    let path = outbox.folder(&l.org).join(format!("{}.eml", ids[0]));
    assert!(path.starts_with(dir.join("org-mail")));
    let text = String::from_utf8(std::fs::read(&path).unwrap()).unwrap();
    let (head, _) = text
        .split_once("\r\n\r\n")
        .expect("headers, a blank line, a body");
    assert!(
        head.contains(&format!("Message-ID: <{}>", sent.message_id)),
        "{head}"
    );
    assert!(head.contains("To: Ann <ann@example.org>"), "{head}");
    let _ = std::fs::remove_dir_all(dir);
}
