//! The cap on an organization's open jobs. The store enforces it race-free where a job is
//! registered (`KeyJobs::put_key_job`, `Exports::put_export`); this checks it beforehand, for
//! a start that writes something before it registers its job (an import stores its input).

use crate::domain::{MaxOpenJobs, TOO_MANY_JOBS_RETRY_AFTER_SECS};
use crate::error::{Error, Result};
use crate::identity::OrgId;
use crate::store::KeyJobs;

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
