//! Launching a course: the assignment's launch is counted while it is valid, and when its
//! course has a launch URL the learner is handed that URL with a short-lived signed token,
//! which the course's platform checks with our public keys alone.

use crate::domain::Assignment;
use crate::error::Result;
use crate::identity::UserId;
use crate::launch::{LaunchClaims, LaunchSigner, TOKEN_SECONDS};
use crate::ops::assignments;
use crate::store::{Assignments, Courses};
use crate::time::{self, Timestamp};

/// A launch: the assignment, its launch counted, and the way into the course when it has one.
#[derive(Debug, Clone, PartialEq)]
pub struct Launched {
    pub assignment: Assignment,
    pub grant: Option<LaunchGrant>,
}

/// Where the learner goes, and the token that lets them in.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchGrant {
    /// The course's launch URL with the token as its `launch_token` query parameter.
    pub url: String,
    pub token: String,
    pub expires_at: Timestamp,
}

/// Launches a learner's assignment while it is valid (any number of times); an expired or
/// cancelled one is refused and gets no token.
pub async fn launch<S: Assignments + Courses + ?Sized>(
    store: &S,
    signer: &dyn LaunchSigner,
    learner: &UserId,
    assignment_id: &str,
    now: Timestamp,
) -> Result<Launched> {
    let assignment = assignments::launch(store, learner, assignment_id, now).await?;
    let launch_url = store
        .get_course(&assignment.org, &assignment.course_id)
        .await?
        .and_then(|course| course.launch_url);
    let grant = match launch_url {
        Some(launch_url) => Some(grant(signer, &assignment, &launch_url, now).await?),
        None => None,
    };
    Ok(Launched { assignment, grant })
}

async fn grant(
    signer: &dyn LaunchSigner,
    assignment: &Assignment,
    launch_url: &str,
    now: Timestamp,
) -> Result<LaunchGrant> {
    let mut url = url::Url::parse(launch_url)
        .map_err(|e| anyhow::anyhow!("a stored launch URL does not parse: {e}"))?;
    let expires_at = now + chrono::Duration::seconds(TOKEN_SECONDS);
    let claims = LaunchClaims {
        iss: signer.issuer().to_string(),
        aud: url.origin().ascii_serialization(),
        sub: assignment.learner.to_string(),
        org: assignment.org.to_string(),
        course_id: assignment.course_id.to_string(),
        assignment_id: assignment.assignment_id.to_string(),
        assignment_expires_at: time::format(&assignment.expires_at),
        iat: now.timestamp(),
        exp: expires_at.timestamp(),
        jti: uuid::Uuid::now_v7().to_string(),
    };
    let token = signer.sign(&claims).await?;
    url.query_pairs_mut().append_pair("launch_token", &token);
    Ok(LaunchGrant {
        url: url.to_string(),
        token,
        expires_at,
    })
}
