//! A real SMTP server for the mail tests: aiosmtpd from PyPI (tests/smtp/serve.py), one per
//! test, writing what it receives into a folder of its own.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// One running server; it stops when dropped.
pub struct SmtpServer {
    pub port: u16,
    dir: PathBuf,
    child: Child,
}

/// One message the server took: its recipients and its bytes as received.
pub struct Received {
    pub rcpt: Vec<String>,
    pub text: String,
}

impl SmtpServer {
    /// Starts a server on a free loopback port.
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "keypool-smtp-{}-{}",
            std::process::id(),
            uuid_like()
        ));
        std::fs::create_dir_all(&dir).expect("a folder for the SMTP server");
        let script = format!("{}/smtp/serve.py", env!("CARGO_MANIFEST_DIR"));
        let mut child = Command::new(super::moto::python())
            .arg(&script)
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting aiosmtpd with {}: {e}", super::moto::python()));
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the SMTP server prints its port");
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("the SMTP server said {line:?}"));
        Self { port, dir, child }
    }

    /// The URL lettre sends to (STARTTLS is not offered on loopback, so none is used).
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// The messages received so far, oldest first, waiting up to 5 s for `count` of them.
    pub async fn received(&self, count: usize) -> Vec<Received> {
        for _ in 0..100 {
            let mut found: Vec<(u64, Received)> = Vec::new();
            for entry in std::fs::read_dir(&self.dir)
                .expect("the server's folder")
                .flatten()
            {
                let path = entry.path();
                if path.extension().and_then(|e| e.to_str()) != Some("eml") {
                    continue;
                }
                let n: u64 = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .and_then(|s| s.parse().ok())
                    .expect("numbered messages");
                let text = std::fs::read_to_string(&path).expect("a message");
                let rcpt = std::fs::read_to_string(path.with_extension("rcpt"))
                    .expect("its recipients")
                    .lines()
                    .map(str::to_owned)
                    .collect();
                found.push((n, Received { rcpt, text }));
            }
            if found.len() >= count {
                found.sort_by_key(|(n, _)| *n);
                return found.into_iter().map(|(_, r)| r).collect();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the SMTP server did not receive {count} messages");
    }
}

fn uuid_like() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("random bytes");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
