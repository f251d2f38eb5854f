//! The hosts and origins the server is for: its own names only (DNS rebinding), a public URL
//! behind a proxy, and writes from other origins refused.

use std::process::Command;

use serde_json::json;

use super::fixtures::*;

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
