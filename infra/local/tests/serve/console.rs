//! The console's files under a strict policy, and the demo sign-in: on only with `--demo`,
//! and only for the demo organization's demo users.

use serde_json::{Value, json};

use super::fixtures::*;

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
    // Each sign-in is recorded in the demo organization's audit, with where it came from,
    // and never with its token.
    let (status, audit) = server
        .call("GET", "/v1/audit?action=console.signed_in", admin, None)
        .await;
    assert_eq!(status, 200, "{audit}");
    let signed_in: Vec<(&str, &str)> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["resource"], json!({"type": "console", "id": "local"}));
            assert!(r["client_address"].is_string(), "{r}");
            (
                r["actor"]["sub"].as_str().unwrap(),
                r["actor"]["role"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        signed_in,
        [("demo-learner-2", "learner"), ("demo-admin", "admin")]
    );
    assert!(!audit.to_string().contains(admin));
    assert!(!audit.to_string().contains(learner));
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
