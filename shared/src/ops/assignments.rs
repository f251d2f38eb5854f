//! What a learner does with assignments: list them, launch them while they are valid; and
//! reading an assignment that another record refers to (redemption, cancellation).

use crate::domain::{Assignment, AssignmentId, Page};
use crate::error::{Error, Missing, Result};
use crate::identity::UserId;
use crate::store::Assignments;
use crate::time::Timestamp;

/// One page of a learner's assignments, newest first.
pub async fn list_assignments<S: Assignments + ?Sized>(
    store: &S,
    learner: &UserId,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Page<Assignment>> {
    store.list_assignments(learner, cursor, limit).await
}

/// Launches an assignment while it is valid; any number of times.
pub async fn launch<S: Assignments + ?Sized>(
    store: &S,
    learner: &UserId,
    assignment_id: &str,
    now: Timestamp,
) -> Result<Assignment> {
    let id = AssignmentId::parse(assignment_id).ok_or(Error::NotFound(Missing::Assignment))?;
    let assignment = store
        .get_assignment(learner, &id)
        .await?
        .ok_or(Error::NotFound(Missing::Assignment))?;
    check_launchable(&assignment, now)?;
    match store.record_launch(learner, &id, now).await? {
        Some(launched) => Ok(launched),
        // Cancelled between the read and the write: say so.
        None => {
            let current = store
                .get_assignment(learner, &id)
                .await?
                .ok_or(Error::NotFound(Missing::Assignment))?;
            check_launchable(&current, now)?;
            Err(anyhow::anyhow!("assignment {id} refused a launch for no known reason").into())
        }
    }
}

fn check_launchable(a: &Assignment, now: Timestamp) -> Result<()> {
    if let Some(cancelled_at) = a.cancelled_at {
        return Err(Error::AssignmentCancelled { cancelled_at });
    }
    if !a.is_valid(now) {
        return Err(Error::AssignmentExpired {
            expires_at: a.expires_at,
        });
    }
    Ok(())
}

/// Reads an assignment that a key, a guard or an admin's pointer refers to: its absence is the
/// store's fault, not the caller's.
pub(super) async fn load<S: Assignments + ?Sized>(
    store: &S,
    learner: &UserId,
    id: &AssignmentId,
) -> Result<Assignment> {
    store
        .get_assignment(learner, id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("assignment {id} is referenced but missing").into())
}
