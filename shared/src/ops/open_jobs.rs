//! Starting background jobs: what an operation that starts one works with (`JobContext`), and
//! the cap on an organization's open jobs. The store enforces the cap race-free where a job is
//! registered (`KeyJobs::put_key_job`, `Exports::put_export`); `ensure_room` checks it
//! beforehand, for a start that writes something before it registers its job (an import
//! stores its input).

use crate::domain::{MaxOpenJobs, TOO_MANY_JOBS_RETRY_AFTER_SECS};
use crate::error::{Error, Result};
use crate::identity::OrgId;
use crate::jobs::Jobs;
use crate::store::KeyJobs;
use crate::time::Clock;

/// What an operation that starts a background job works with: the store, where its job goes,
/// the clock, and the cap on an organization's open jobs.
pub struct JobContext<'a, S: ?Sized> {
    pub store: &'a S,
    pub jobs: &'a dyn Jobs,
    pub clock: &'a dyn Clock,
    pub max_open: MaxOpenJobs,
}

/// Refuses with `Error::TooManyJobs` when the organization has `max_open` open jobs already.
pub async fn ensure_room<S: KeyJobs + ?Sized>(
    store: &S,
    org: &OrgId,
    max_open: MaxOpenJobs,
) -> Result<()> {
    if store.open_job_count(org).await? >= max_open.get() {
        return Err(Error::TooManyJobs {
            max_open: max_open.get(),
            retry_after_secs: TOO_MANY_JOBS_RETRY_AFTER_SECS,
        });
    }
    Ok(())
}
