//! Webhooks in the tests: names that resolve where a test says (so a name can point at
//! 127.0.0.1 or the metadata service), and a real HTTP receiver that answers 200, 500, slowly
//! or not at all, on cue, and keeps what it got.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use keypool::webhooks::{Resolver, SystemResolver};

/// Names a test points at addresses of its choosing; any other name resolves as usual.
#[derive(Default)]
pub struct Names(Mutex<HashMap<String, Vec<IpAddr>>>);

impl Names {
    /// The test names: `receiver.test` and `loopback.test` (127.0.0.1), `metadata.test`
    /// (169.254.169.254), `private.test` (10.0.0.7), `mixed.test` (a public address and a
    /// private one); `silent.test` never answers.
    pub fn standard() -> Self {
        let names = Self::default();
        names.point("receiver.test", &["127.0.0.1"]);
        names.point("loopback.test", &["127.0.0.1"]);
        names.point("metadata.test", &["169.254.169.254"]);
        names.point("private.test", &["10.0.0.7"]);
        names.point("mixed.test", &["93.184.216.34", "192.168.1.20"]);
        names
    }

    /// Makes `name` resolve to `ips` from now on.
    pub fn point(&self, name: &str, ips: &[&str]) {
        let ips = ips.iter().map(|ip| ip.parse().expect("an IP")).collect();
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), ips);
    }
}

#[async_trait]
impl Resolver for Names {
    async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        let known = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(host)
            .cloned();
        match known {
            Some(ips) => Ok(ips
                .into_iter()
                .map(|ip| SocketAddr::new(ip, port))
                .collect()),
            None if host == "silent.test" => std::future::pending().await,
            None => SystemResolver.resolve(host, port).await,
        }
    }
}

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Ok,
    Status(u16),
    /// 200, after this long.
    Slow(Duration),
    /// Never answers (the sender's timeout ends it).
    Hang,
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: std::time::Instant,
}

#[derive(Clone)]
struct Shared {
    answer: Arc<Mutex<Answer>>,
    got: Arc<Mutex<Vec<Received>>>,
    notify: Arc<tokio::sync::Notify>,
}

/// A real HTTP server on an ephemeral port of 127.0.0.1.
pub struct Receiver {
    pub port: u16,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let answer = *shared.answer.lock().unwrap_or_else(|e| e.into_inner());
    shared
        .got
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Received {
            headers,
            body,
            at: std::time::Instant::now(),
        });
    shared.notify.notify_waiters();
    match answer {
        Answer::Ok => StatusCode::OK,
        Answer::Status(s) => StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        Answer::Slow(d) => {
            tokio::time::sleep(d).await;
            StatusCode::OK
        }
        Answer::Hang => {
            std::future::pending::<()>().await;
            StatusCode::OK
        }
    }
}

impl Receiver {
    pub async fn start(answer: Answer) -> Self {
        let shared = Shared {
            answer: Arc::new(Mutex::new(answer)),
            got: Arc::default(),
            notify: Arc::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { port, shared, task }
    }

    /// Its URL, by a test name that resolves to 127.0.0.1 (the sender's policy must allow it).
    pub fn url(&self) -> String {
        format!("http://receiver.test:{}/hook", self.port)
    }

    /// Answers so from now on.
    pub fn answer(&self, answer: Answer) {
        *self.shared.answer.lock().unwrap_or_else(|e| e.into_inner()) = answer;
    }

    /// What it got so far.
    pub fn received(&self) -> Vec<Received> {
        self.shared
            .got
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until it got `n` requests in all; panics after `within`.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.shared.notify.notified();
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("the receiver got {} of {n} requests", self.received().len());
            }
        }
    }
}

impl Received {
    /// A header's value.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    /// Checks the body against the schema the API's OpenAPI document gives this event's type
    /// (its `webhooks` section), with a JSON Schema validator that is not ours (Python's
    /// `jsonschema`); the error names what does not conform.
    pub fn conforms_to_document(&self) -> Result<(), String> {
        const SCRIPT: &str = r##"
import json, sys
from jsonschema import Draft202012Validator
doc = json.load(open(sys.argv[1]))
body = json.loads(sys.stdin.buffer.read())
kind = body["type"]
if kind not in doc["webhooks"]:
    sys.exit("the document has no webhook " + kind)
root = dict(doc)
root["$ref"] = "#/webhooks/" + kind + "/post/requestBody/content/application~1json/schema"
errors = [e.message for e in Draft202012Validator(root).iter_errors(body)]
if errors:
    sys.exit("; ".join(errors))
"##;
        static DOCUMENT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
        let document = DOCUMENT.get_or_init(|| {
            let path =
                std::env::temp_dir().join(format!("keypool-openapi-{}.json", std::process::id()));
            std::fs::write(&path, keypool::http::openapi::document_json())
                .expect("the document written");
            path
        });
        let out = self.python(SCRIPT, &[document.as_os_str()]);
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Whether the Standard Webhooks Python package (an implementation that is not ours)
    /// verifies this request with `secret`: its signature of the request's id, timestamp and
    /// body is among the request's signatures, and, for a request signed within its tolerance
    /// of the real clock, its own `verify` accepts the request whole.
    pub fn verified_by_python(&self, secret: &str) -> bool {
        const SCRIPT: &str = r#"
import datetime, json, sys
from standardwebhooks import Webhook
secret, msg_id, ts, signatures = sys.argv[1:5]
body = sys.stdin.buffer.read()
hook = Webhook(secret)
at = datetime.datetime.fromtimestamp(int(ts), tz=datetime.timezone.utc)
if hook.sign(msg_id, at, body.decode()) not in signatures.split(" "):
    sys.exit(1)
now = datetime.datetime.now(tz=datetime.timezone.utc).timestamp()
if abs(now - int(ts)) < 300:
    hook.verify(body, {"webhook-id": msg_id, "webhook-timestamp": ts, "webhook-signature": signatures})
"#;
        let args = [
            secret,
            self.header("webhook-id"),
            self.header("webhook-timestamp"),
            self.header("webhook-signature"),
        ]
        .map(std::ffi::OsStr::new);
        self.python(SCRIPT, &args).status.success()
    }

    /// Runs `script` with the tests' Python (tests/run.sh installs its packages) and `args`,
    /// the body on its standard input; its standard error is kept for the failure's message.
    fn python(&self, script: &str, args: &[&std::ffi::OsStr]) -> std::process::Output {
        use std::io::Write as _;
        let mut child = std::process::Command::new(crate::moto::python())
            .arg("-c")
            .arg(script)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the tests' python (tests/run.sh installs it)");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(&self.body)
            .expect("the body to python");
        child.wait_with_output().expect("python ran")
    }
}
