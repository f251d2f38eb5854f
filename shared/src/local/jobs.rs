//! The local server's job runner: every kind of job in one process, fairly between
//! organizations, and resuming at start the jobs a previous run left unfinished.
//!
//! Each kind of job has a lane of its own, so an export never waits behind a generation:
//!
//! - Key jobs (generations, imports) are worked by one task in turns. A job works for one
//!   turn (`Settings::turn`, and at least one chunk of keys), then goes to the back of its
//!   organization's queue, and the organizations take turns round-robin. A resumed turn goes
//!   on from the job's stored progress, as a queued job does in AWS. One task is enough: the
//!   embedded engine serialises writes, so more writers would only queue inside it.
//! - Exports cannot stop part-way and go on (a run starts the file again), so each runs to its
//!   end, in a few tasks of their own (`Settings::export_workers`): at most one export per
//!   organization at a time, the organizations served round-robin. Their reads interleave with
//!   the key jobs' writes request by request.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::domain::{Job, JobKind, PastePhase};
use crate::error::Result;
use crate::identity::OrgId;
use crate::jobs::Jobs;
use crate::objects::ObjectStore;
use crate::ops::{export, key_jobs};
use crate::store::Store;
use crate::time::Clock;

/// How the runner shares its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// How long a key job works before the next one gets its turn (it always writes at least
    /// one chunk of keys, whatever this says).
    pub turn: Duration,
    /// Exports that may run at once, each of another organization.
    pub export_workers: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            turn: Duration::from_millis(250),
            export_workers: 2,
        }
    }
}

/// Waiting jobs of one lane: a queue per organization, and the organizations in the order
/// they are served. An organization has at most one job of the lane running at a time.
#[derive(Debug, Default)]
struct FairQueue {
    /// Organizations with a waiting job and none running, next first.
    ready: VecDeque<OrgId>,
    waiting: HashMap<OrgId, VecDeque<Job>>,
    running: HashSet<OrgId>,
}

impl FairQueue {
    /// A new job, last of its organization's.
    fn push(&mut self, job: Job) {
        let org = job.org().clone();
        self.waiting.entry(org.clone()).or_default().push_back(job);
        self.make_ready(org);
    }

    /// The next job to run: the first of the organization whose turn it is.
    fn take(&mut self) -> Option<Job> {
        let org = self.ready.pop_front()?;
        let queue = self.waiting.get_mut(&org)?;
        let job = queue.pop_front();
        if queue.is_empty() {
            self.waiting.remove(&org);
        }
        self.running.insert(org);
        job
    }

    /// A turn of the organization's job ended; an unfinished job goes to the back of its
    /// organization's queue, and the organization to the back of the line.
    fn turn_ended(&mut self, org: &OrgId, unfinished: Option<Job>) {
        self.running.remove(org);
        if let Some(job) = unfinished {
            self.waiting.entry(org.clone()).or_default().push_back(job);
        }
        self.make_ready(org.clone());
    }

    fn make_ready(&mut self, org: OrgId) {
        if self.waiting.contains_key(&org)
            && !self.running.contains(&org)
            && !self.ready.contains(&org)
        {
            self.ready.push_back(org);
        }
    }
}

/// One lane: its queue, and what wakes its workers.
#[derive(Default)]
struct Lane {
    queue: Mutex<FairQueue>,
    wake: tokio::sync::Notify,
    closed: AtomicBool,
}

impl Lane {
    fn queue(&self) -> std::sync::MutexGuard<'_, FairQueue> {
        // The queue holds no invariant a panicking holder could break half-way.
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn push(&self, job: Job) {
        self.queue().push(job);
        self.wake.notify_one();
    }

    /// The next job, once there is one; `None` when the runner stops.
    async fn next(&self) -> Option<Job> {
        loop {
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.closed.load(Ordering::SeqCst) {
                return None;
            }
            if let Some(job) = self.queue().take() {
                return Some(job);
            }
            notified.await;
        }
    }

    fn turn_ended(&self, job: &Job, unfinished: bool) {
        self.queue()
            .turn_ended(job.org(), unfinished.then(|| job.clone()));
        self.wake.notify_one();
    }

    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.wake.notify_waiters();
    }
}

/// What a turn needs.
struct Worker {
    store: Arc<dyn Store>,
    objects: Arc<dyn ObjectStore>,
    clock: Arc<dyn Clock>,
    turn: Duration,
}

impl Worker {
    /// Works on a job for one turn; true when it is finished.
    async fn turn(&self, job: &Job) -> Result<bool> {
        match job {
            Job::Export { org, export_id } => {
                export::run(
                    self.store.as_ref(),
                    self.objects.as_ref(),
                    self.clock.as_ref(),
                    org,
                    export_id,
                )
                .await?;
                Ok(true)
            }
            Job::Generate { org, job_id } => {
                key_jobs::run(
                    self.store.as_ref(),
                    self.clock.as_ref(),
                    org,
                    job_id,
                    Some(self.turn),
                )
                .await
            }
        }
    }

    async fn work(self: Arc<Self>, lane: Arc<Lane>) {
        while let Some(job) = lane.next().await {
            let unfinished = match self.turn(&job).await {
                Ok(finished) => {
                    // Its end goes to webhooks; the local sender finds the deliveries by
                    // their markers on its next tick.
                    if finished
                        && let Err(e) = crate::events::webhooks::job_finished(
                            self.store.as_ref(),
                            &crate::webhooks::Stored,
                            &job,
                        )
                        .await
                    {
                        tracing::warn!(error = %e, job = ?job, "a finished job's webhook event was not stored");
                    }
                    !finished
                }
                Err(e) => {
                    // Left open in the store: the next start of the server resumes it.
                    tracing::error!(error = %e, job = ?job, "a job failed");
                    false
                }
            };
            lane.turn_ended(&job, unfinished);
        }
    }
}

/// Stops the lanes when the last handle goes.
struct Lanes {
    keys: Arc<Lane>,
    exports: Arc<Lane>,
}

impl Drop for Lanes {
    fn drop(&mut self) {
        self.keys.close();
        self.exports.close();
    }
}

/// The local server's job runner: a lane of key jobs and a lane of exports, worked by tasks
/// of this process.
#[derive(Clone)]
pub struct LocalJobs {
    lanes: Arc<Lanes>,
}

impl LocalJobs {
    /// Starts the workers with the default settings; they stop when every `LocalJobs` handle
    /// is dropped (each after the turn in hand).
    pub fn start(
        store: Arc<dyn Store>,
        objects: Arc<dyn ObjectStore>,
        clock: Arc<dyn Clock>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        Self::start_with(store, objects, clock, Settings::default())
    }

    /// Starts the workers with these settings.
    pub fn start_with(
        store: Arc<dyn Store>,
        objects: Arc<dyn ObjectStore>,
        clock: Arc<dyn Clock>,
        settings: Settings,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let worker = Arc::new(Worker {
            store,
            objects,
            clock,
            // A turn of no time would write nothing; the shortest writes one chunk.
            turn: settings.turn.max(Duration::from_millis(1)),
        });
        let lanes = Arc::new(Lanes {
            keys: Arc::new(Lane::default()),
            exports: Arc::new(Lane::default()),
        });
        let mut tasks = vec![tokio::spawn(worker.clone().work(lanes.keys.clone()))];
        for _ in 0..settings.export_workers.max(1) {
            tasks.push(tokio::spawn(worker.clone().work(lanes.exports.clone())));
        }
        let all = tokio::spawn(async move {
            for task in tasks {
                let _ = task.await;
            }
        });
        (Self { lanes }, all)
    }

    /// Queues again the jobs a previous run of the server did not finish. All-or-nothing
    /// pastes and imports caught half-way are settled first, to the end: rolled back while
    /// they were writing, forward while they were committing. So from the first answer after
    /// a restart, the pool lists and counts each of their keys alike, instead of counting up
    /// for seconds while a listing already shows the paste whole.
    pub async fn resume(&self, store: &dyn Store, clock: &dyn Clock) -> Result<usize> {
        let open = store.open_jobs().await?;
        for job in &open {
            if let Job::Generate { org, job_id } = job
                && store.get_key_job(org, job_id).await?.is_some_and(|j| {
                    j.phase
                        .is_some_and(|p| p != PastePhase::Writing || j.kind == JobKind::Paste)
                })
                && key_jobs::run(store, clock, org, job_id, None).await?
            {
                continue;
            }
            self.submit(job).await?;
        }
        Ok(open.len())
    }
}

#[async_trait]
impl Jobs for LocalJobs {
    async fn submit(&self, job: &Job) -> Result<()> {
        let lane = match job {
            Job::Export { .. } => &self.lanes.exports,
            Job::Generate { .. } => &self.lanes.keys,
        };
        if lane.closed.load(Ordering::SeqCst) {
            return Err(anyhow::anyhow!("the job runner has stopped").into());
        }
        lane.push(job.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::JobId;

    fn job(org: &str) -> Job {
        Job::Generate {
            org: OrgId::parse(org).unwrap(),
            job_id: JobId::new(),
        }
    }

    fn org_of(job: &Option<Job>) -> &str {
        job.as_ref().map_or("-", |j| j.org().as_str())
    }

    #[test]
    fn organizations_take_turns_and_an_unfinished_job_goes_to_the_back() {
        let mut q = FairQueue::default();
        let (a1, a2, b1) = (job("a"), job("a"), job("b"));
        q.push(a1.clone());
        q.push(a2.clone());
        let first = q.take();
        assert_eq!(first.as_ref(), Some(&a1));
        // While a's job runs, b arrives; a's next job waits for a's turn to end.
        q.push(b1.clone());
        assert_eq!(q.take().as_ref(), Some(&b1));
        assert_eq!(q.take(), None, "a runs already, b too");
        q.turn_ended(a1.org(), Some(a1.clone()));
        assert_eq!(
            q.take().as_ref(),
            Some(&a2),
            "a's second job before its first again"
        );
        q.turn_ended(b1.org(), Some(b1.clone()));
        q.turn_ended(a2.org(), None);
        // b waited longer than a: b goes first.
        let next = q.take();
        assert_eq!(org_of(&next), "b");
        q.turn_ended(b1.org(), None);
        assert_eq!(q.take().as_ref(), Some(&a1));
        q.turn_ended(a1.org(), None);
        assert_eq!(q.take(), None);
        assert!(q.waiting.is_empty() && q.ready.is_empty() && q.running.is_empty());
    }

    #[test]
    fn a_big_organization_never_gets_two_turns_in_a_row_while_another_waits() {
        let mut q = FairQueue::default();
        for _ in 0..5 {
            q.push(job("big"));
        }
        q.push(job("small"));
        let mut order = Vec::new();
        while let Some(j) = q.take() {
            order.push(j.org().to_string());
            q.turn_ended(j.org(), None);
        }
        assert_eq!(order, ["big", "small", "big", "big", "big", "big"]);
    }
}
