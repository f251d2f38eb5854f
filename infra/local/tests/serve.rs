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
    let mut child = Command::new(BIN)
        .args(["serve", "--port", "0", "--data-dir"])
        .arg(data_dir)
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

#[tokio::test]
async fn serves_accepts_its_tokens_and_keeps_data_across_restarts() {
    let dir = std::env::temp_dir().join(format!("keypool-serve-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let http = reqwest::Client::new();
    let admin = token(
        &dir,
        &["--org", "acme", "--role", "admin", "--sub", "alice"],
    );
    let learner = token(&dir, &["--role", "learner", "--sub", "bob"]);

    let server = start(&dir);
    let health = http
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let course: Value = http
        .post(format!("{}/v1/courses", server.base))
        .bearer_auth(&admin)
        .json(&json!({"title": "Persistent"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pool: Value = http
        .post(format!("{}/v1/pools", server.base))
        .bearer_auth(&admin)
        .json(&json!({
            "name": "Kept", "course_id": course["course_id"],
            "starts_at": "2020-01-01T00:00:00Z", "expires_at": "2100-01-01T00:00:00Z",
            "content_availability_days": 30
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pool_id = pool["pool_id"].as_str().unwrap().to_string();
    let keys: Value = http
        .post(format!("{}/v1/pools/{pool_id}/keys/generate", server.base))
        .bearer_auth(&admin)
        .json(&json!({"count": 3}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = keys["keys"][0].as_str().unwrap().to_string();
    let redeemed = http
        .post(format!("{}/v1/redemptions", server.base))
        .bearer_auth(&learner)
        .json(&json!({"key": key}))
        .send()
        .await
        .unwrap();
    assert_eq!(redeemed.status(), 201);
    // A token signed by another secret is refused.
    let stranger = token(
        &dir.join("elsewhere"),
        &["--org", "acme", "--role", "admin", "--sub", "eve"],
    );
    let refused = http
        .get(format!("{}/v1/pools", server.base))
        .bearer_auth(&stranger)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    drop(server);

    let server = start(&dir);
    let pool: Value = http
        .get(format!("{}/v1/pools/{pool_id}", server.base))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (pool["total_keys"].as_u64(), pool["redeemed_keys"].as_u64()),
        (Some(3), Some(1))
    );
    let again = http
        .post(format!("{}/v1/redemptions", server.base))
        .bearer_auth(&learner)
        .json(&json!({"key": key}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        again.status(),
        200,
        "the same learner gets the same assignment after a restart"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
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
