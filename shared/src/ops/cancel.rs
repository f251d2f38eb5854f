//! Cancelling a redemption: within 24 hours and before any launch, an admin takes the
//! assignment back, its key becomes available again, and billing credits it.

use super::assignments::load;
use crate::domain::{Assignment, AssignmentId, AuditAction, Caller, Resource, Summary};
use crate::error::{Error, ErrorCode, Missing, Result};
use crate::store::{Assignments, Pools};
use crate::time::Timestamp;

/// How often a cancellation re-reads and retries after a launch or another cancellation
/// changed the assignment under it.
const MAX_ROUNDS: usize = 5;

/// Cancels an assignment of the admin's organization: the learner loses it, its key becomes
/// available again, and billing credits it. Only within 24 hours and before any launch.
#[tracing::instrument(skip(store, caller), fields(org = %caller.org))]
pub async fn cancel<S: Assignments + Pools + ?Sized>(
    store: &S,
    caller: &Caller,
    assignment_id: &str,
    now: Timestamp,
) -> Result<Assignment> {
    let org = &caller.org;
    let id = AssignmentId::parse(assignment_id).ok_or(Error::NotFound(Missing::Assignment))?;
    let learner = store
        .assignment_learner(org, &id)
        .await?
        .ok_or(Error::NotFound(Missing::Assignment))?;
    for _ in 0..MAX_ROUNDS {
        let assignment = load(store, &learner, &id).await?;
        assignment.check_cancellable(now)?;
        // The pool says how its counts are kept.
        let pool = store
            .get_pool_settings(&assignment.org, &assignment.pool_id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("the pool of assignment {id} is missing"))?;
        let record = caller
            .record(
                AuditAction::AssignmentCancelled,
                Resource::new("assignment", id),
                Summary::new().with("pool_id", assignment.pool_id.to_string()),
                now,
            )
            .in_pool(assignment.pool_id);
        if store
            .cancel_assignment(&assignment, &pool, now, &record)
            .await?
        {
            tracing::info!(assignment = %id, pool = %assignment.pool_id, "assignment cancelled");
            return Ok(Assignment {
                cancelled_at: Some(now),
                ..assignment
            });
        }
        // A launch or another cancellation got there first: the next round says which.
    }
    Err(Error::Conflict {
        code: ErrorCode::CancellationContended,
        message: "the assignment is being changed by other requests; try again".into(),
    })
}
