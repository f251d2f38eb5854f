//! Signed launches: a course's launch URL, and a launch that hands the learner that URL with a
//! short-lived ES256 token that the course's platform checks against our JWKS alone.

use std::collections::HashSet;

use axum::http::{Method, StatusCode, header};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use keypool::launch::LaunchClaims;
use keypool_tests::{Reply, World};
use serde_json::{Value, json};

use super::fixtures::*;

const LAB: &str = "https://lab.example.com/courses/forklift?track=a";

/// A course with `launch_url`, an active pool of it and one learner's assignment from it.
async fn assignment_of(w: &World, launch_url: Option<&str>, learner: &str) -> (String, Reply) {
    let admin = w.admin("acme");
    let course = w
        .call(
            POST,
            "/v1/courses",
            Some(&admin),
            Some(json!({"title": "Forklift safety", "launch_url": launch_url})),
        )
        .await;
    assert_eq!(course.status, StatusCode::CREATED, "{:?}", course.body);
    assert_eq!(course.body["launch_url"], json!(launch_url));
    let now = w.now();
    let pool = w
        .call(
            POST,
            "/v1/pools",
            Some(&admin),
            Some(json!({
                "name": "Spring",
                "course_id": course.body["course_id"],
                "starts_at": keypool::time::format(&(now - chrono::Duration::hours(1))),
                "expires_at": keypool::time::format(&(now + chrono::Duration::days(30))),
                "content_availability_days": 7,
            })),
        )
        .await;
    let keys = w.generate("acme", &id(&pool, "pool_id"), 1).await;
    let redeemed = redeem(w, learner, &keys[0]).await;
    assert_eq!(redeemed.status, StatusCode::CREATED, "{:?}", redeemed.body);
    (id(&course, "course_id"), redeemed)
}

async fn launch(w: &World, learner: &str, assignment_id: &str) -> Reply {
    w.call(
        POST,
        &format!("/v1/me/assignments/{assignment_id}/launch"),
        Some(&w.learner(learner)),
        None,
    )
    .await
}

/// The token checked as a course's platform would: the key named by its `kid` in our JWKS,
/// ES256, our issuer, the platform's own origin as audience, not expired.
async fn verify(w: &World, token: &str, audience: &str) -> LaunchClaims {
    let jwks = w.call(GET, "/.well-known/jwks.json", None, None).await;
    assert_eq!(jwks.status, StatusCode::OK, "{:?}", jwks.body);
    let set: JwkSet = serde_json::from_value(jwks.body).expect("a JWK set");
    let kid = jsonwebtoken::decode_header(token)
        .expect("a JWT")
        .kid
        .expect("a kid");
    let jwk = set.find(&kid).expect("the token's key is published");
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&[audience]);
    validation.set_issuer(&["http://keypool.test"]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    jsonwebtoken::decode::<LaunchClaims>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
        .expect("the token verifies")
        .claims
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_hands_the_course_url_with_a_token_its_platform_can_check() {
    let w = World::new().await;
    let (course_id, redeemed) = assignment_of(&w, Some(LAB), "lea").await;
    let assignment_id = id(&redeemed, "assignment_id");

    let first = launch(&w, "lea", &assignment_id).await;
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    assert_eq!(first.body["launch_count"], 1);
    assert_eq!(
        first.headers.get(header::CACHE_CONTROL).unwrap(),
        "no-store"
    );
    let token = first.body["launch"]["token"].as_str().unwrap();
    let url = url::Url::parse(first.body["launch"]["url"].as_str().unwrap()).unwrap();
    // The course's own URL, its query kept, with the token added.
    assert_eq!(
        url.origin().ascii_serialization(),
        "https://lab.example.com"
    );
    assert_eq!(url.path(), "/courses/forklift");
    let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    assert_eq!(
        query,
        [
            ("track".to_string(), "a".to_string()),
            ("launch_token".to_string(), token.to_string())
        ]
    );

    let claims = verify(&w, token, "https://lab.example.com").await;
    assert_eq!(claims.sub, "lea");
    assert_eq!(claims.org, "acme");
    assert_eq!(claims.course_id, course_id);
    assert_eq!(claims.assignment_id, assignment_id);
    assert_eq!(
        claims.assignment_expires_at,
        redeemed.body["expires_at"].as_str().unwrap()
    );
    assert_eq!(claims.exp - claims.iat, 300, "at most five minutes");
    assert_eq!(
        keypool::time::parse(first.body["launch"]["expires_at"].as_str().unwrap())
            .unwrap()
            .timestamp(),
        claims.exp
    );
    // Another platform does not accept it.
    let jwks = w.call(GET, "/.well-known/jwks.json", None, None).await;
    assert_eq!(
        jwks.headers.get(header::CACHE_CONTROL).unwrap(),
        "public, max-age=300"
    );
    let set: JwkSet = serde_json::from_value(jwks.body).unwrap();
    let mut elsewhere = Validation::new(Algorithm::ES256);
    elsewhere.set_audience(&["https://evil.example.com"]);
    assert!(
        jsonwebtoken::decode::<Value>(
            token,
            &DecodingKey::from_jwk(&set.keys[0]).unwrap(),
            &elsewhere
        )
        .is_err()
    );

    // Every launch gets a token of its own.
    let mut ids = HashSet::new();
    for _ in 0..3 {
        let again = launch(&w, "lea", &assignment_id).await;
        let token = again.body["launch"]["token"].as_str().unwrap();
        assert!(ids.insert(verify(&w, token, "https://lab.example.com").await.jti));
    }
    assert_eq!(ids.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_without_a_launch_url_nor_for_an_assignment_that_ended() {
    let w = World::new().await;
    // A course without a launch URL launches as before.
    let (_, plain) = assignment_of(&w, None, "ann").await;
    let r = launch(&w, "ann", &id(&plain, "assignment_id")).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert!(r.body.get("launch").is_none(), "{:?}", r.body);

    // Cancelled by the admin: refused, and no token.
    let (_, cancelled) = assignment_of(&w, Some(LAB), "bob").await;
    let cancel = w
        .call(
            Method::POST,
            &format!("/v1/assignments/{}/cancel", id(&cancelled, "assignment_id")),
            Some(&w.admin("acme")),
            None,
        )
        .await;
    assert_eq!(cancel.status, StatusCode::OK, "{:?}", cancel.body);
    let r = launch(&w, "bob", &id(&cancelled, "assignment_id")).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "assignment_cancelled")
    );
    assert!(!r.body.to_string().contains("launch_token"));

    // Past its content availability: refused, and no token.
    let (_, expired) = assignment_of(&w, Some(LAB), "cat").await;
    w.clock.advance(chrono::Duration::days(8));
    let r = launch(&w, "cat", &id(&expired, "assignment_id")).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "assignment_expired")
    );
    assert!(!r.body.to_string().contains("launch_token"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_course_launch_url_is_https_and_edited_by_its_own_admins_only() {
    let w = World::new().await;
    let admin = w.admin("acme");
    let course = w
        .call(
            POST,
            "/v1/courses",
            Some(&admin),
            Some(json!({"title": "Welding"})),
        )
        .await;
    let course_id = id(&course, "course_id");
    let path = format!("/v1/courses/{course_id}");
    let too_long = format!("https://lab.example.com/{}", "a".repeat(2000));
    for bad in [
        "http://lab.example.com/start",
        "javascript:alert(1)",
        "lab.example.com/start",
        "https://user:secret@lab.example.com/",
        "https:///nohost",
        too_long.as_str(),
    ] {
        let r = w
            .call(
                Method::PATCH,
                &path,
                Some(&admin),
                Some(json!({ "launch_url": bad })),
            )
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "invalid_input"),
            "{bad}: {:?}",
            r.body
        );
        assert!(r.body["error"]["details"]["fields"]["launch_url"].is_string());
        let r = w
            .call(
                POST,
                "/v1/courses",
                Some(&admin),
                Some(json!({"title": "Bad", "launch_url": bad})),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    // Nothing was changed or made by the refused requests.
    let courses = w.call(GET, "/v1/courses", Some(&admin), None).await;
    let items = courses.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["launch_url"], Value::Null);

    let set = w
        .call(
            Method::PATCH,
            &path,
            Some(&admin),
            Some(json!({ "launch_url": "https://lab.example.com/welding", "description": "Hot work" })),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{:?}", set.body);
    assert_eq!(set.body["launch_url"], "https://lab.example.com/welding");
    assert_eq!(set.body["title"], "Welding");
    // Another organization's admin: not found, and nothing changes.
    let r = w
        .call(
            Method::PATCH,
            &path,
            Some(&w.admin("globex")),
            Some(json!({ "launch_url": "https://evil.example.com/" })),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "course_not_found")
    );
    let r = w
        .call(
            Method::PATCH,
            &path,
            Some(&w.learner("lea")),
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // null removes it; an absent field is left as it was.
    let cleared = w
        .call(
            Method::PATCH,
            &path,
            Some(&admin),
            Some(json!({ "launch_url": null })),
        )
        .await;
    assert_eq!(cleared.body["launch_url"], Value::Null);
    assert_eq!(cleared.body["description"], "Hot work");
}

/// In AWS the private key never leaves KMS: tokens are signed with its Sign API and checked
/// with the public keys it publishes; during a rotation both keys are published and the
/// first one signs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_signs_tokens_that_check_against_its_published_keys() {
    use keypool::launch::{KmsSigner, LaunchSigner};
    let (client, new_key) = keypool_tests::kms_signing_key().await;
    let (_, old_key) = keypool_tests::kms_signing_key().await;
    let signer = KmsSigner::new(client, "https://api.example.com", vec![new_key, old_key]);
    let now = chrono::Utc::now().timestamp();
    let claims = LaunchClaims {
        iss: "https://api.example.com".into(),
        aud: "https://lab.example.com".into(),
        sub: "lea".into(),
        org: "acme".into(),
        course_id: "course".into(),
        assignment_id: "assignment".into(),
        assignment_expires_at: "2027-01-01T00:00:00Z".into(),
        iat: now,
        exp: now + 300,
        jti: "one".into(),
    };
    let token = signer.sign(&claims).await.unwrap();
    let set = signer.keys().await.unwrap();
    assert_eq!(
        set.keys.len(),
        2,
        "both keys are published during a rotation"
    );
    let kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
    assert_eq!(set.keys[0].common.key_id.as_deref(), Some(kid.as_str()));
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&["https://lab.example.com"]);
    validation.set_issuer(&["https://api.example.com"]);
    let decoded = jsonwebtoken::decode::<LaunchClaims>(
        &token,
        &DecodingKey::from_jwk(&set.keys[0]).unwrap(),
        &validation,
    )
    .expect("a KMS signature verifies with the published key");
    assert_eq!(decoded.claims, claims);
    assert!(
        jsonwebtoken::decode::<LaunchClaims>(
            &token,
            &DecodingKey::from_jwk(&set.keys[1]).unwrap(),
            &validation
        )
        .is_err()
    );
}
