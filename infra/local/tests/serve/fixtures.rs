//! What the tests share: a server started from the built binary on a free port (killed on
//! drop), its tokens, requests to it, and raw connections for what a client library would
//! not send.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_keypool-local");

/// A running server; killed on drop.
pub(crate) struct Server {
    child: Child,
    pub(crate) base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a server over `data_dir` on a free port.
pub(crate) fn start(data_dir: &Path) -> Server {
    start_with(data_dir, &[])
}

/// `start`, with more arguments to `serve`.
pub(crate) fn start_with(data_dir: &Path, extra: &[&str]) -> Server {
    start_env(data_dir, extra, &[])
}

/// `start_with`, with more environment variables.
pub(crate) fn start_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
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

/// A token printed by `keypool-local token` with `args`, signed with `data_dir`'s secret.
pub(crate) fn token(data_dir: &Path, args: &[&str]) -> String {
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
    pub(crate) async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.call_with(method, path, token, body, &[]).await
    }

    /// `call` with extra headers (a `host` among them replaces the server's address).
    pub(crate) async fn call_with(
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
    pub(crate) fn port(&self) -> u16 {
        self.base.rsplit(':').next().unwrap().parse().unwrap()
    }
}

/// A data folder of this test process's own, empty.
pub(crate) fn fresh_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("keypool-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Sends raw bytes and reads the whole answer (the server closes after these errors).
pub(crate) fn raw_exchange(base: &str, request: &[u8]) -> String {
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
pub(crate) fn status_and_body(answer: &str) -> (String, Value) {
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((answer, ""));
    let status = head.lines().next().unwrap_or("").to_string();
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// A raw connection to the server that gives up reading after `patience`.
pub(crate) fn connect(base: &str, patience: std::time::Duration) -> std::net::TcpStream {
    let stream = std::net::TcpStream::connect(base.trim_start_matches("http://")).unwrap();
    stream.set_read_timeout(Some(patience)).unwrap();
    stream
}

/// Reads until the server closes the connection; panics if it is still open after the
/// stream's read timeout. Returns what was read.
pub(crate) fn read_until_closed(stream: &mut std::net::TcpStream) -> Vec<u8> {
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
