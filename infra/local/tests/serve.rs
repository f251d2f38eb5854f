//! The README's first command, as a user runs it: the built binary serves, its tokens work,
//! and the data survives a restart.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_keypool-local");

/// A running server; killed on drop.
struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(data_dir: &Path) -> Server {
    start_with(data_dir, &[])
}

fn start_with(data_dir: &Path, extra: &[&str]) -> Server {
    start_env(data_dir, extra, &[])
}

fn start_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
    let mut child = Command::new(BIN)
        .args(["serve", "--port", "0", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the server starts");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    Server { child, base }
}

fn token(data_dir: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("token")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

impl Server {
    /// Sends a request with an optional token and JSON body; returns status and JSON body.
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.call_with(method, path, token, body, &[]).await
    }

    /// `call` with extra headers (a `host` among them replaces the server's address).
    async fn call_with(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let http = reqwest::Client::new();
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = http.request(method, format!("{}{path}", self.base));
        if !token.is_empty() {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The port the server listens on.
    fn port(&self) -> u16 {
        self.base.rsplit(':').next().unwrap().parse().unwrap()
    }
}

#[tokio::test]
async fn serves_accepts_its_tokens_and_keeps_data_across_restarts() {
    let dir = std::env::temp_dir().join(format!("keypool-serve-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let admin = token(
        &dir,
        &["--org", "acme", "--role", "admin", "--sub", "alice"],
    );
    let learner = token(&dir, &["--role", "learner", "--sub", "bob"]);

    let server = start(&dir);
    assert_eq!(server.call("GET", "/healthz", "", None).await.0, 200);
    let (_, course) = server
        .call(
            "POST",
            "/v1/courses",
            &admin,
            Some(json!({"title": "Persistent"})),
        )
        .await;
    let (_, pool) = server
        .call(
            "POST",
            "/v1/pools",
            &admin,
            Some(json!({
                "name": "Kept", "course_id": course["course_id"],
                "starts_at": "2020-01-01T00:00:00Z", "expires_at": "2100-01-01T00:00:00Z",
                "content_availability_days": 30
            })),
        )
        .await;
    let pool_id = pool["pool_id"].as_str().unwrap().to_string();
    let (_, keys) = server
        .call(
            "POST",
            &format!("/v1/pools/{pool_id}/keys/generate"),
            &admin,
            Some(json!({"count": 3})),
        )
        .await;
    let key = keys["keys"][0].as_str().unwrap().to_string();
    let redeem = Some(json!({ "key": key }));
    let (status, _) = server
        .call("POST", "/v1/redemptions", &learner, redeem.clone())
        .await;
    assert_eq!(status, 201);
    // Billing follows the stream: the redemption is on this month's invoice within seconds.
    let invoice = server.invoice(&admin, 1).await;
    assert_eq!(invoice["lines"][0]["learner"], "bob");
    // A token signed by another secret is refused.
    let stranger = token(
        &dir.join("elsewhere"),
        &["--org", "acme", "--role", "admin", "--sub", "eve"],
    );
    assert_eq!(
        server.call("GET", "/v1/pools", &stranger, None).await.0,
        401
    );
    drop(server);

    let server = start(&dir);
    let (_, pool) = server
        .call("GET", &format!("/v1/pools/{pool_id}"), &admin, None)
        .await;
    assert_eq!(
        (pool["total_keys"].as_u64(), pool["redeemed_keys"].as_u64()),
        (Some(3), Some(1))
    );
    let (status, _) = server
        .call("POST", "/v1/redemptions", &learner, redeem)
        .await;
    assert_eq!(
        status, 200,
        "the same learner gets the same assignment after a restart"
    );
    // The restarted server's billing resumes from its checkpoint: the second redemption is
    // billed, the first is not billed again.
    let carol = token(&dir, &["--role", "learner", "--sub", "carol"]);
    let second = Some(json!({ "key": keys["keys"][1] }));
    assert_eq!(
        server
            .call("POST", "/v1/redemptions", &carol, second)
            .await
            .0,
        201
    );
    let invoice = server.invoice(&admin, 2).await;
    let learners: Vec<&str> = invoice["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["learner"].as_str().unwrap())
        .collect();
    assert_eq!(learners, ["bob", "carol"]);

    // An export: 202, then done with a link to this server that a plain client downloads.
    let (status, started) = server
        .call(
            "POST",
            &format!("/v1/pools/{pool_id}/exports"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 202, "{started}");
    let export_id = started["export_id"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let done = loop {
        let (_, export) = server
            .call("GET", &format!("/v1/exports/{export_id}"), &admin, None)
            .await;
        if export["status"] == "done" {
            break export;
        }
        assert!(std::time::Instant::now() < deadline, "{export}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let url = done["url"].as_str().unwrap();
    assert!(url.starts_with(&server.base), "{url}");
    let csv = reqwest::get(url).await.unwrap().text().await.unwrap();
    assert_eq!(csv.lines().count(), 4, "a header and three keys: {csv}");
    drop(server);

    // The schedule writes every changed pool into the data folder.
    let server = start_with(&dir, &["--export-every", "1s"]);
    let folder = dir.join("exports").join("acme").join(&pool_id);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let scheduled = std::fs::read_dir(&folder)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".csv"))
            .count();
        if scheduled > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no scheduled export in {folder:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

impl Server {
    /// This month's invoice once it has `count` units, waiting for the billing follower (a few
    /// seconds at most); fails the test after ten.
    async fn invoice(&self, admin: &str, count: u64) -> Value {
        let month = chrono::Utc::now().format("%Y-%m").to_string();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let (status, invoice) = self
                .call("GET", &format!("/v1/invoices/{month}"), admin, None)
                .await;
            assert_eq!(status, 200, "{invoice}");
            if invoice["count"].as_u64() == Some(count) {
                // Settled: a moment later it is still the same.
                tokio::time::sleep(std::time::Duration::from_millis(600)).await;
                let (_, again) = self
                    .call("GET", &format!("/v1/invoices/{month}"), admin, None)
                    .await;
                assert_eq!(again, invoice, "billing changed an invoice it had settled");
                return invoice;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no invoice of {count} within 10 s: {invoice}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

#[test]
fn an_admin_token_needs_an_organization() {
    let out = Command::new(BIN)
        .args(["token", "--role", "admin", "--sub", "x", "--data-dir"])
        .arg(std::env::temp_dir().join("keypool-token-check"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--org"));
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn fresh_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("keypool-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn token_output(data_dir: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(["token", "--role", "learner", "--sub", "x"])
        .args(extra)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap()
}

/// The folder, the database and the secret are their owner's alone, even in a folder that
/// existed with wider modes.
#[cfg(unix)]
#[tokio::test]
async fn the_data_folder_is_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = fresh_dir("private");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = start(&dir);
    assert_eq!(server.call("GET", "/healthz", "", None).await.0, 200);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("token-secret")), 0o600);
    assert_eq!(mode(&dir.join("keypool.db")), 0o600);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A secret others can read, or one too weak to be a secret, is refused with what to do.
#[cfg(unix)]
#[test]
fn weak_or_exposed_secrets_are_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = fresh_dir("secret");
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("token-secret");
    std::fs::write(&secret, "a".repeat(64)).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = token_output(&dir, &[]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("too regular"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    std::fs::remove_file(&secret).unwrap();
    assert!(
        token_output(&dir, &[]).status.success(),
        "a new secret is made"
    );
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = token_output(&dir, &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Token lifetimes are bounded, and a huge one is a clear usage error, not a panic.
#[test]
fn token_lifetimes_are_capped() {
    let dir = fresh_dir("hours");
    for hours in ["0", "8785", "99999999999999"] {
        let out = token_output(&dir, &["--hours", hours]);
        assert_eq!(out.status.code(), Some(2), "--hours {hours}: a usage error");
        assert!(String::from_utf8_lossy(&out.stderr).contains("--hours"));
    }
    assert!(token_output(&dir, &["--hours", "8784"]).status.success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn serves_the_console_with_a_strict_policy_and_a_demo_sign_in() {
    let dir = std::env::temp_dir().join(format!("keypool-console-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let server = start_with(&dir, &["--demo"]);
    let http = reqwest::Client::new();
    for (path, kind) in [
        ("/", "text/html"),
        ("/redeem", "text/html"),
        ("/console/js/api.js", "text/javascript"),
        ("/console/css/console.css", "text/css"),
        ("/console/config.json", "application/json"),
    ] {
        let response = http
            .get(format!("{}{path}", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers();
        assert!(
            headers["content-type"].to_str().unwrap().starts_with(kind),
            "{path}"
        );
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'self'") && !csp.contains("unsafe-inline"));
        assert_eq!(headers["x-content-type-options"], "nosniff");
    }
    // Only the console's own files, whatever the path says.
    for path in ["/console/../Cargo.toml", "/console/keypool.db", "/console/"] {
        let (status, body) = server.call("GET", path, "", None).await;
        assert_eq!(status, 404, "{path}");
        assert!(body["error"]["code"].is_string(), "{path}: {body}");
    }
    let (_, config) = server.call("GET", "/console/config.json", "", None).await;
    assert_eq!(config["mode"], "local");
    assert_eq!(config["demo"], true);

    // The demo admin's token works on the API, scoped to the demo organization.
    let http = reqwest::Client::new();
    let response = http
        .post(format!("{}/local/session", server.base))
        .json(&json!({"role": "admin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let session: Value = response.json().await.unwrap();
    assert_eq!(
        (&session["sub"], &session["org"]),
        (&json!("demo-admin"), &json!("demo-org"))
    );
    let admin = session["token"].as_str().unwrap();
    let (status, _) = server
        .call("POST", "/v1/courses", admin, Some(json!({"title": "Demo"})))
        .await;
    assert_eq!(status, 201);
    // A second demo learner, for showing one learner meeting another's key.
    let (status, session) = server
        .call(
            "POST",
            "/local/session",
            "",
            Some(json!({"role": "learner", "sub": "demo-learner-2"})),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(session["sub"], "demo-learner-2");
    let learner = session["token"].as_str().unwrap();
    assert_eq!(
        server
            .call("GET", "/v1/me/assignments", learner, None)
            .await
            .0,
        200
    );
    assert_eq!(
        server.call("GET", "/v1/courses", learner, None).await.0,
        403
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Anyone who reaches the port could use the demo sign-in, so it is off unless asked for.
#[tokio::test]
async fn the_demo_sign_in_is_off_without_demo() {
    let dir = fresh_dir("no-demo");
    let server = start(&dir);
    for role in ["admin", "learner"] {
        let (status, body) = server
            .call("POST", "/local/session", "", Some(json!({ "role": role })))
            .await;
        assert_eq!(status, 404, "{body}");
        assert_eq!(body["error"]["code"], "not_found", "{body}");
    }
    let (_, config) = server.call("GET", "/console/config.json", "", None).await;
    assert_eq!(config["demo"], false, "{config}");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// With `--demo`, the demo organization's demo users only: never a `sub` of one's choosing,
/// which would be anyone's account.
#[tokio::test]
async fn the_demo_sign_in_signs_in_only_the_demo_users() {
    let dir = fresh_dir("demo-users");
    let server = start_with(&dir, &["--demo"]);
    for (body, field) in [
        (json!({"role": "learner", "sub": "second"}), "sub"),
        (json!({"role": "learner", "sub": "alice"}), "sub"),
        (json!({"role": "admin", "sub": "demo-learner"}), "sub"),
        (json!({"role": "learner", "sub": "demo-admin"}), "sub"),
        (json!({"role": "learner", "sub": "demo-learner-99"}), "sub"),
        (json!({"role": "root"}), "role"),
        (json!({"role": "Admin"}), "role"),
    ] {
        let (status, answer) = server
            .call("POST", "/local/session", "", Some(body.clone()))
            .await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_input", "{body}: {answer}");
        assert!(
            answer["error"]["details"]["fields"][field].is_string(),
            "{body}: {answer}"
        );
    }
    for (role, sub) in [
        ("learner", "demo-learner"),
        ("learner", "demo-learner-5"),
        ("admin", "demo-admin"),
    ] {
        let (status, session) = server
            .call(
                "POST",
                "/local/session",
                "",
                Some(json!({ "role": role, "sub": sub })),
            )
            .await;
        assert_eq!(status, 201, "{session}");
        assert_eq!(
            (&session["role"], &session["sub"]),
            (&json!(role), &json!(sub))
        );
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn guesses_are_limited_per_client_address_with_the_configured_limit() {
    let dir = fresh_dir("address-limit");
    let server = start_env(&dir, &[], &[("KEYPOOL_ADDRESS_FAILURES", "15")]);
    let mut answered = 0;
    // Three accounts from this one client, ten guesses each: 15 answers, then 429.
    for learner in ["g1", "g2", "g3"] {
        let t = token(
            &dir,
            &["--org", "acme", "--role", "learner", "--sub", learner],
        );
        for i in 0..10 {
            let body = json!({ "key": format!("GUESS{learner}{i:03}") });
            match server.call("POST", "/v1/redemptions", &t, Some(body)).await {
                (404, _) => answered += 1,
                (429, b) => assert_eq!(b["error"]["code"], "throttled"),
                other => panic!("{other:?}"),
            }
        }
    }
    assert_eq!(answered, 15);
    // A malformed setting stops the server with a message instead of serving defaults.
    let out = Command::new(BIN)
        .args(["serve", "--port", "0", "--data-dir"])
        .arg(&dir)
        .env("KEYPOOL_ADDRESS_FAILURES", "lots")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("KEYPOOL_ADDRESS_FAILURES"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sends raw bytes and reads the whole answer (the server closes after these errors).
fn raw_exchange(base: &str, request: &[u8]) -> String {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    // The server may answer and close before it has read everything we send.
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// The JSON body of a raw answer, and its status line.
fn status_and_body(answer: &str) -> (String, Value) {
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((answer, ""));
    let status = head.lines().next().unwrap_or("").to_string();
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[test]
fn requests_too_large_for_the_http_parser_answer_in_the_error_shape() {
    let data_dir = fresh_dir("limits");
    let server = start(&data_dir);

    let long_uri = format!("/v1/pools?search={}", "a".repeat(70_000));
    let answer = raw_exchange(
        &server.base,
        format!("GET {long_uri} HTTP/1.1\r\nhost: localhost\r\n\r\n").as_bytes(),
    );
    let (status, body) = status_and_body(&answer);
    assert!(status.starts_with("HTTP/1.1 414"), "{status}");
    assert_eq!(body["error"]["code"], "uri_too_long", "{answer}");

    let many: String = (0..150).map(|i| format!("x-h{i}: v\r\n")).collect();
    let answer = raw_exchange(
        &server.base,
        format!("GET /healthz HTTP/1.1\r\nhost: localhost\r\n{many}\r\n").as_bytes(),
    );
    let (status, body) = status_and_body(&answer);
    assert!(status.starts_with("HTTP/1.1 431"), "{status}");
    assert_eq!(body["error"]["code"], "headers_too_large", "{answer}");

    let huge = format!("x-big: {}\r\n", "b".repeat(600_000));
    let answer = raw_exchange(
        &server.base,
        format!("GET /healthz HTTP/1.1\r\nhost: localhost\r\n{huge}\r\n").as_bytes(),
    );
    let (status, body) = status_and_body(&answer);
    assert!(status.starts_with("HTTP/1.1 431"), "{status}");
    assert_eq!(body["error"]["code"], "headers_too_large", "{answer}");

    let answer = raw_exchange(&server.base, b"GET /healthz HTTP/1.1\r\nbad header\r\n\r\n");
    let (status, body) = status_and_body(&answer);
    assert!(status.starts_with("HTTP/1.1 400"), "{status}");
    assert_eq!(body["error"]["code"], "malformed_request", "{answer}");

    // Ordinary answers pass untouched, and the document is served without a token.
    let answer = raw_exchange(
        &server.base,
        b"GET /v1/openapi.json HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n",
    );
    let (status, body) = status_and_body(&answer);
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert_eq!(body["openapi"], "3.1.0");
}

/// A 10,000-key all-or-nothing paste, the server killed (SIGKILL) while it runs, then
/// restarted: the paste is whole, or gone and its keys free for the same paste again.
#[tokio::test]
async fn a_paste_killed_with_the_server_lands_whole_or_leaves_nothing() {
    let dir = fresh_dir("killed-paste");
    let admin = token(
        &dir,
        &["--org", "acme", "--role", "admin", "--sub", "alice"],
    );
    let mut outcomes = Vec::new();
    for (round, kill_after_ms) in [200u64, 1000, 3000, 6000].into_iter().enumerate() {
        let server = start(&dir);
        let (_, course) = server
            .call(
                "POST",
                "/v1/courses",
                &admin,
                Some(json!({"title": "Kill"})),
            )
            .await;
        let (_, pool) = server
            .call(
                "POST",
                "/v1/pools",
                &admin,
                Some(json!({
                    "name": "Killed", "course_id": course["course_id"],
                    "starts_at": "2020-01-01T00:00:00Z", "expires_at": "2100-01-01T00:00:00Z",
                    "content_availability_days": 30
                })),
            )
            .await;
        let pool_id = pool["pool_id"].as_str().unwrap().to_string();
        let keys: Vec<String> = (0..10_000).map(|i| format!("R{round}K{i:06}")).collect();
        let body = keys.join("\n");
        let paste = {
            let (url, admin, body) = (
                format!("{}/v1/pools/{pool_id}/keys", server.base),
                admin.clone(),
                body.clone(),
            );
            tokio::spawn(async move {
                reqwest::Client::new()
                    .post(url)
                    .bearer_auth(admin)
                    .header("content-type", "text/plain")
                    .body(body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(kill_after_ms)).await;
        drop(server); // SIGKILL
        let answered = paste.await.unwrap().ok();

        // The restart resumes the paste's job: it settles whole, or to nothing.
        let server = start(&dir);
        let path = format!("/v1/pools/{pool_id}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let landed = loop {
            // Listed first: a key listed is counted already, so a count read after it is not 0.
            let (_, page) = server
                .call("GET", &format!("{path}/keys?limit=1"), &admin, None)
                .await;
            let listed = !page["items"].as_array().unwrap().is_empty();
            let (_, pool) = server.call("GET", &path, &admin, None).await;
            let total = pool["total_keys"].as_u64().unwrap();
            assert!(!listed || total > 0, "a key listed while none is counted");
            if total == 10_000 {
                break true;
            }
            // Rolling forward shows a growing count for a moment; rolled back, none.
            if total == 0 {
                // Rolled back once the same paste goes in again.
                let (status, _) = server
                    .call(
                        "POST",
                        &format!("{path}/keys"),
                        &admin,
                        Some(json!({"keys": keys})),
                    )
                    .await;
                if status == 201 {
                    break false;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the paste never settled"
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        };
        let (_, pool) = server.call("GET", &path, &admin, None).await;
        assert_eq!(pool["total_keys"], 10_000);
        outcomes.push((kill_after_ms, answered, landed));
        drop(server);
    }
    eprintln!("(kill after ms, answer before the kill, rolled forward): {outcomes:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A course, a pool of it with one generated key, and an export of that pool once done: the
/// export's download link.
async fn export_link(server: &Server, admin: &str) -> String {
    let (_, course) = server
        .call(
            "POST",
            "/v1/courses",
            admin,
            Some(json!({"title": "Linked"})),
        )
        .await;
    let (_, pool) = server
        .call(
            "POST",
            "/v1/pools",
            admin,
            Some(json!({
                "name": "Linked", "course_id": course["course_id"],
                "starts_at": "2020-01-01T00:00:00Z", "expires_at": "2100-01-01T00:00:00Z",
                "content_availability_days": 30
            })),
        )
        .await;
    let pool_id = pool["pool_id"].as_str().unwrap().to_string();
    let (status, _) = server
        .call(
            "POST",
            &format!("/v1/pools/{pool_id}/keys/generate"),
            admin,
            Some(json!({"count": 1})),
        )
        .await;
    assert_eq!(status, 201);
    let (status, started) = server
        .call("POST", &format!("/v1/pools/{pool_id}/exports"), admin, None)
        .await;
    assert_eq!(status, 202, "{started}");
    let export_id = started["export_id"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, export) = server
            .call("GET", &format!("/v1/exports/{export_id}"), admin, None)
            .await;
        if export["status"] == "done" {
            return export["url"].as_str().unwrap().to_string();
        }
        assert!(std::time::Instant::now() < deadline, "{export}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// DNS rebinding: a page of another site whose name now resolves to this machine reaches the
/// server with its own name as the Host. Only the server's own names are answered.
#[tokio::test]
async fn answers_only_for_its_own_host_names() {
    let dir = fresh_dir("hosts");
    let server = start(&dir);
    let port = server.port();
    for host in [
        format!("localhost:{port}"),
        "localhost".to_string(),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ] {
        let (status, body) = server
            .call_with("GET", "/healthz", "", None, &[("host", &host)])
            .await;
        assert_eq!(status, 200, "{host}: {body}");
    }
    for host in [
        format!("rebound.example:{port}"),
        "rebound.example".to_string(),
        format!("localhost:{}", port.wrapping_add(1)),
    ] {
        for path in ["/healthz", "/", "/v1/pools", "/no/such/route"] {
            let (status, body) = server
                .call_with("GET", path, "", None, &[("host", &host)])
                .await;
            assert_eq!(status, 421, "{host}{path}: {body}");
            assert_eq!(body["error"]["code"], "misdirected_request", "{body}");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("--public-url"),
                "{body}"
            );
        }
    }
    // A request with no Host names no host of ours.
    let answer = raw_exchange(
        &server.base,
        b"GET /healthz HTTP/1.1\r\nconnection: close\r\n\r\n",
    );
    let (status, body) = status_and_body(&answer);
    assert!(status.starts_with("HTTP/1.1 421"), "{answer}");
    assert_eq!(body["error"]["code"], "misdirected_request");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Behind a proxy, the public URL's host is answered too, and download links start with it.
#[tokio::test]
async fn a_public_url_is_answered_and_starts_download_links() {
    let dir = fresh_dir("public-url");
    let admin = token(
        &dir,
        &["--org", "acme", "--role", "admin", "--sub", "alice"],
    );
    let server = start_with(&dir, &["--public-url", "https://Keys.Example.org"]);
    for host in ["keys.example.org", "keys.example.org:443", "localhost"] {
        let (status, body) = server
            .call_with("GET", "/healthz", "", None, &[("host", host)])
            .await;
        assert_eq!(status, 200, "{host}: {body}");
    }
    let (status, _) = server
        .call_with(
            "GET",
            "/healthz",
            "",
            None,
            &[("host", "keys.example.org:8443")],
        )
        .await;
    assert_eq!(status, 421);
    // A write from the public origin's own pages is one of ours.
    let (status, body) = server
        .call_with(
            "POST",
            "/v1/courses",
            &admin,
            Some(json!({"title": "Proxied"})),
            &[
                ("host", "keys.example.org"),
                ("origin", "https://keys.example.org"),
            ],
        )
        .await;
    assert_eq!(status, 201, "{body}");

    let link = export_link(&server, &admin).await;
    let path = link
        .strip_prefix("https://keys.example.org/")
        .unwrap_or_else(|| panic!("{link}"));
    // The proxy passes it on with the public Host.
    let csv = reqwest::Client::new()
        .get(format!("{}/{path}", server.base))
        .header("host", "keys.example.org")
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), 200);
    assert_eq!(csv.text().await.unwrap().lines().count(), 2);
    drop(server);

    // Anything but an origin is refused at start, with what is wrong.
    for url in [
        "keys.example.org",
        "ftp://keys.example.org",
        "https://keys.example.org/keypool",
        "https://keys.example.org/?x=1",
        "https://user:pw@keys.example.org",
    ] {
        let out = Command::new(BIN)
            .args(["serve", "--port", "0", "--public-url", url, "--data-dir"])
            .arg(&dir)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{url}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--public-url"),
            "{url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A page of another site can make a browser send writes here (a form, a `fetch` in no-cors
/// mode) even though it cannot read the answers: writes that say they come from another
/// origin are refused before they do anything. Clients that send no Origin write as before.
#[tokio::test]
async fn writes_from_other_origins_are_refused() {
    let dir = fresh_dir("origins");
    let admin = token(
        &dir,
        &["--org", "acme", "--role", "admin", "--sub", "alice"],
    );
    let server = start(&dir);
    let own = server.base.clone();
    let course = Some(json!({"title": "Written"}));
    for headers in [
        &[("origin", "http://rebound.example")][..],
        &[("origin", "null")],
        &[("origin", "http://localhost:1")],
        &[("sec-fetch-site", "cross-site")],
        &[("origin", own.as_str()), ("sec-fetch-site", "cross-site")],
    ] {
        for method in ["POST", "PUT", "PATCH", "DELETE"] {
            let (status, body) = server
                .call_with(method, "/v1/courses", &admin, course.clone(), headers)
                .await;
            assert_eq!(status, 403, "{method} {headers:?}: {body}");
            assert_eq!(body["error"]["code"], "cross_origin_refused", "{body}");
        }
    }
    for headers in [
        &[][..],
        &[("origin", own.as_str())],
        &[("origin", own.as_str()), ("sec-fetch-site", "same-origin")],
    ] {
        let (status, body) = server
            .call_with("POST", "/v1/courses", &admin, course.clone(), headers)
            .await;
        assert_eq!(status, 201, "{headers:?}: {body}");
    }
    // Reads are answered whatever the Origin (the browser keeps the answer from the page).
    let (status, courses) = server
        .call_with(
            "GET",
            "/v1/courses",
            &admin,
            None,
            &[("origin", "http://rebound.example")],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        courses["items"].as_array().unwrap().len(),
        3,
        "only the three allowed writes made courses: {courses}"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A raw connection to the server that gives up reading after `patience`.
fn connect(base: &str, patience: std::time::Duration) -> std::net::TcpStream {
    let stream = std::net::TcpStream::connect(base.trim_start_matches("http://")).unwrap();
    stream.set_read_timeout(Some(patience)).unwrap();
    stream
}

/// Reads until the server closes the connection; panics if it is still open after the
/// stream's read timeout. Returns what was read.
fn read_until_closed(stream: &mut std::net::TcpStream) -> Vec<u8> {
    use std::io::{ErrorKind, Read};
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return got,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!(
                    "the connection is still open (read so far: {:?})",
                    String::from_utf8_lossy(&got)
                )
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// Slowloris: connections that send nothing, trickle their head, or sit idle after an answer
/// are closed once the head timeout passes, instead of being held for ever.
#[test]
fn silent_slow_and_idle_connections_are_closed() {
    use std::io::{ErrorKind, Read, Write};
    use std::time::{Duration, Instant};
    let dir = fresh_dir("slow-clients");
    let server = start_env(&dir, &[], &[("KEYPOOL_HEADER_TIMEOUT_MS", "300")]);
    // Far longer than the bound, far shorter than never.
    let patience = Duration::from_secs(5);

    let mut silent = connect(&server.base, patience);
    let started = Instant::now();
    assert!(read_until_closed(&mut silent).is_empty());
    assert!(started.elapsed() < patience);

    let mut partial = connect(&server.base, patience);
    partial
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n")
        .unwrap();
    read_until_closed(&mut partial);

    // A byte of head every 50 ms: always busy, never done.
    let mut trickle = connect(&server.base, Duration::from_millis(50));
    let started = Instant::now();
    let head = b"GET /healthz HTTP/1.1\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut closed = false;
    for byte in head.iter().cycle() {
        assert!(started.elapsed() < patience, "a trickled head was held");
        if trickle.write_all(&[*byte]).is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 64];
        match trickle.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(_) => panic!("an answer to half a head"),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    assert!(closed);

    // Kept alive after an answer, then idle: closed too.
    let mut idle = connect(&server.base, patience);
    idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .unwrap();
    let answer = String::from_utf8(read_until_closed(&mut idle)).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(!answer.to_ascii_lowercase().contains("connection: close"));
    drop(server);

    // A malformed bound stops the server with the variable's name.
    for (name, value) in [
        ("KEYPOOL_HEADER_TIMEOUT_MS", "soon"),
        ("KEYPOOL_HEADER_TIMEOUT_MS", "0"),
        ("KEYPOOL_MAX_CONNECTIONS", "-1"),
    ] {
        let out = Command::new(BIN)
            .args(["serve", "--port", "0", "--data-dir"])
            .arg(&dir)
            .env(name, value)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{name}={value}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(name),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Slow clients hold connections, not the server: with hundreds of heads trickling, others
/// are still answered at once.
#[tokio::test]
async fn many_slow_connections_leave_room_for_others() {
    use std::io::Write;
    let dir = fresh_dir("many-slow");
    let server = start(&dir);
    let slow: Vec<std::net::TcpStream> = (0..300)
        .map(|_| {
            let mut s = connect(&server.base, std::time::Duration::from_secs(1));
            s.write_all(b"GET /healthz HTTP/1.1\r\nhost: local")
                .unwrap();
            s
        })
        .collect();
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .unwrap();
    for _ in 0..20 {
        let response = http
            .get(format!("{}/healthz", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    drop(slow);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Connections beyond the bound wait unaccepted until one closes, instead of each taking a
/// file descriptor and a task.
#[test]
fn connections_beyond_the_bound_wait_for_a_free_one() {
    use std::io::{ErrorKind, Read, Write};
    use std::time::Duration;
    let dir = fresh_dir("max-connections");
    let server = start_env(&dir, &[], &[("KEYPOOL_MAX_CONNECTIONS", "3")]);
    let mut held: Vec<std::net::TcpStream> = (0..3)
        .map(|_| connect(&server.base, Duration::from_secs(5)))
        .collect();
    let mut waiting = connect(&server.base, Duration::from_millis(500));
    waiting
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 1024];
    match waiting.read(&mut buf) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!(
            "a fourth connection was served while three were open: {other:?} {:?}",
            String::from_utf8_lossy(&buf)
        ),
    }
    // One closes: the waiting one is served.
    drop(held.pop());
    waiting
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let answer = String::from_utf8(read_until_closed(&mut waiting)).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(held);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
