//! The data folder and the tokens signed with its secret: the README's first command as a
//! user runs it (its tokens work, the data survives a restart), a folder that is its owner's
//! alone, secrets refused when weak or exposed, and bounded token lifetimes.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use super::fixtures::*;

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
