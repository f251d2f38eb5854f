//! Exports: a pool's keys as CSV, streamed page by page into object storage, on demand and on
//! a schedule; optionally marking the exported keys as distributed.

use std::time::Duration;

use serde::Deserialize;

use super::open_jobs::JobContext;
use super::pools;
use crate::domain::{
    AuditAction, Caller, Export, ExportId, ExportKind, ExportStatus, Job, KeyFilter, KeyRecord,
    KeyStatus, MaxOpenJobs, Page, Pool, PoolId, Resource, Summary,
};
use crate::error::{Error, Missing, Result};
use crate::identity::OrgId;
use crate::jobs::Jobs;
use crate::keys::KeyCode;
use crate::objects::ObjectStore;
use crate::spreadsheet::cell;
use crate::store::{AuditLog, Courses, Exports, Keys, Pools};
use crate::time::{self, Clock, Timestamp};

/// Keys read per page while exporting.
pub const PAGE: usize = 1000;
/// How long a download link works, unless configured otherwise.
pub const LINK_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// Pages between two saves of an export's progress.
const PROGRESS_EVERY: u64 = 20;
/// CSV bytes gathered before they are handed to the upload (about a page of keys).
const CHUNK: usize = 64 * 1024;

/// The columns of an export.
pub const CSV_HEADER: [&str; 11] = [
    "key",
    "status",
    "created_at",
    "redeemed_by",
    "redeemed_at",
    "assignment_id",
    "assignment_expires_at",
    "pool",
    "course",
    "distributed_at",
    "pool_id",
];

/// A CSV writer as RFC 4180 has it: CRLF line ends, quotes where needed.
pub fn csv_writer() -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::with_capacity(CHUNK * 2))
}

/// What an admin asks for.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportInput {
    /// `available` or `redeemed`; all keys when absent.
    #[schema(value_type = Option<crate::domain::KeyStatus>)]
    pub status: Option<String>,
    /// Only keys never distributed.
    #[serde(default)]
    pub undistributed: bool,
    /// Mark the available keys written as distributed.
    #[serde(default)]
    pub mark_distributed: bool,
}

/// A file name from the pool's name and the time: letters, digits and dashes only.
pub fn file_name(pool_name: &str, at: Timestamp) -> String {
    let mut slug = String::new();
    for c in pool_name.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
        if slug.len() >= 60 {
            break;
        }
    }
    let slug = slug.trim_end_matches('-');
    let slug = if slug.is_empty() { "pool" } else { slug };
    format!("{slug}-keys-{}.csv", at.format("%Y%m%d-%H%M%S"))
}

/// A timestamp usable in an object key: `2026-11-28T21-19-33.123Z`.
pub(super) fn stamp(at: Timestamp) -> String {
    time::format(&at).replace(':', "-")
}

/// Starts an export of one of the organization's pools: 202 with the export, which a worker
/// writes in the background; refused while the organization has its most open jobs.
pub async fn start<S: Pools + Exports + ?Sized>(
    cx: &JobContext<'_, S>,
    caller: &Caller,
    pool_id: &str,
    input: ExportInput,
) -> Result<Export> {
    let (store, now, org) = (cx.store, cx.clock.now(), &caller.org);
    let key_status = match input.status.as_deref() {
        None => None,
        Some(s) => Some(
            KeyStatus::parse(s)
                .ok_or_else(|| Error::field("status", "status is available or redeemed"))?,
        ),
    };
    if input.mark_distributed && key_status == Some(KeyStatus::Redeemed) {
        return Err(Error::field(
            "mark_distributed",
            "only available keys can be marked as distributed; this export has none",
        ));
    }
    let pool = pools::get_pool(store, org, pool_id).await?;
    let export_id = ExportId::new();
    let export = Export {
        export_id,
        org: org.clone(),
        pool_id: pool.pool_id,
        kind: ExportKind::OnDemand,
        status: ExportStatus::Pending,
        key_status,
        undistributed: input.undistributed,
        mark_distributed: input.mark_distributed,
        rows: 0,
        object_key: format!(
            "exports/{org}/{}/on-demand/{}-{export_id}.csv",
            pool.pool_id,
            stamp(now)
        ),
        file_name: file_name(&pool.name, now),
        error: None,
        pool_mark: None,
        created_at: now,
        finished_at: None,
        started_by: Some(caller.origin()),
    };
    submit(store, cx.jobs, export, cx.max_open).await
}

/// Stores a pending export (capped by `max_open` if it counts among its organization's open
/// jobs) and hands it to the workers; marks it failed if they cannot take it.
pub(super) async fn submit<S: Exports + ?Sized>(
    store: &S,
    jobs: &dyn Jobs,
    export: Export,
    max_open: MaxOpenJobs,
) -> Result<Export> {
    store.put_export(&export, max_open).await?;
    let job = Job::Export {
        org: export.org.clone(),
        export_id: export.export_id,
    };
    if let Err(e) = jobs.submit(&job).await {
        tracing::error!(error = %e, export = %export.export_id, "an export could not be queued");
        let failed = Export {
            status: ExportStatus::Failed,
            error: Some("the export could not be queued; try again".into()),
            ..export
        };
        store.finish_export(&failed).await?;
        return Err(e);
    }
    Ok(export)
}

/// An export of the organization, with a download link when it is done.
pub async fn get<S: Exports + ?Sized>(
    store: &S,
    objects: &dyn ObjectStore,
    org: &OrgId,
    export_id: &str,
) -> Result<(Export, Option<String>)> {
    let id = ExportId::parse(export_id).ok_or(Error::NotFound(Missing::Export))?;
    let export = store
        .get_export(org, &id)
        .await?
        .ok_or(Error::NotFound(Missing::Export))?;
    let url = match export.status {
        ExportStatus::Done => Some(
            objects
                .download_url(&export.object_key, &export.file_name, LINK_LIFETIME)
                .await?,
        ),
        _ => None,
    };
    Ok((export, url))
}

/// An export of the organization, with a download link for `caller` when it is done: being
/// handed the link is the download the audit records (in AWS the file itself comes from S3,
/// which we never see), in the name of the export, never with the link or its signature.
pub async fn get_link<S: Exports + AuditLog + ?Sized>(
    store: &S,
    objects: &dyn ObjectStore,
    caller: &Caller,
    export_id: &str,
    now: Timestamp,
) -> Result<(Export, Option<String>)> {
    let (export, url) = get(store, objects, &caller.org, export_id).await?;
    if url.is_some() {
        let record = caller
            .record(
                AuditAction::ExportDownloaded,
                Resource::new("export", export.export_id),
                Summary::new()
                    .with("file_name", export.file_name.clone())
                    .with("rows", export.rows),
                now,
            )
            .in_pool(export.pool_id);
        store.record_audit(&record).await?;
    }
    Ok((export, url))
}

/// A page of a pool's exports, newest first, each done one with a download link.
pub async fn list<S: Pools + Exports + ?Sized>(
    store: &S,
    objects: &dyn ObjectStore,
    org: &OrgId,
    pool_id: &str,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Page<(Export, Option<String>)>> {
    // The pool's settings are enough to know it is the caller's; its counts are not needed.
    let pool_id = PoolId::parse(pool_id).ok_or(Error::NotFound(Missing::Pool))?;
    if store.get_pool_settings(org, &pool_id).await?.is_none() {
        return Err(Error::NotFound(Missing::Pool));
    }
    let page = store.list_exports(org, &pool_id, cursor, limit).await?;
    let mut items = Vec::with_capacity(page.items.len());
    for export in page.items {
        let url = match export.status {
            ExportStatus::Done => Some(
                objects
                    .download_url(&export.object_key, &export.file_name, LINK_LIFETIME)
                    .await?,
            ),
            _ => None,
        };
        items.push((export, url));
    }
    Ok(Page {
        items,
        next_cursor: page.next_cursor,
    })
}

/// Runs an export job: writes the file, or fails leaving no file. Safe to run again for the
/// same export (a redelivered job): a finished export is left alone, a started one restarts.
#[tracing::instrument(skip(store, objects, clock), fields(org = %org, export = %export_id))]
pub async fn run<S: Courses + Pools + Keys + Exports + ?Sized>(
    store: &S,
    objects: &dyn ObjectStore,
    clock: &dyn Clock,
    org: &OrgId,
    export_id: &ExportId,
) -> Result<Export> {
    let Some(mut export) = store.get_export(org, export_id).await? else {
        return Err(Error::NotFound(Missing::Export));
    };
    match export.status {
        ExportStatus::Done | ExportStatus::Failed => return Ok(export),
        // An earlier attempt stopped part-way: undo its marks before writing again.
        ExportStatus::Running if export.mark_distributed => {
            store
                .unmark_distributed(&export.pool_id, &export.export_id)
                .await?;
        }
        _ => {}
    }
    export.status = ExportStatus::Running;
    export.rows = 0;
    if !store.update_export(&export).await? {
        // Another run finished it meanwhile.
        return store
            .get_export(org, export_id)
            .await?
            .ok_or(Error::NotFound(Missing::Export));
    }
    let started = clock.now();
    let outcome = write_file(store, objects, &mut export, started).await;
    export.finished_at = Some(clock.now());
    match outcome {
        Ok(()) => {
            export.status = ExportStatus::Done;
            tracing::info!(rows = export.rows, key = %export.object_key, "export written");
        }
        Err(e) => {
            tracing::error!(error = %e, rows = export.rows, "export failed");
            // The run ends failed whatever happens to its marks: an export is never left
            // running with no one to finish it.
            let unmarked = !export.mark_distributed || unmark(store, &export).await;
            export.status = ExportStatus::Failed;
            export.rows = 0;
            export.error = Some(match (&e, unmarked) {
                (Error::NotFound(what), _) => format!("the {what} no longer exists"),
                (_, true) => "the export stopped part-way and left no file; try again".into(),
                (_, false) => "the export stopped part-way and left no file, and some of its keys \
                               may still be marked as distributed; try again"
                    .into(),
            });
        }
    }
    store.finish_export(&export).await?;
    if export.kind == ExportKind::Scheduled && export.status == ExportStatus::Failed {
        // Let the next scheduled run try this pool again.
        if let Some(mark) = export.pool_mark {
            store
                .release_scheduled_export(&export.org, &export.pool_id, mark)
                .await?;
        }
    }
    Ok(export)
}

/// Takes back a failed export's distribution marks, trying a few times with backoff; false
/// when they could not all be taken back (logged).
async fn unmark<S: Keys + ?Sized>(store: &S, export: &Export) -> bool {
    let mut delay = Duration::from_millis(50);
    for attempt in 1..=UNMARK_ATTEMPTS {
        match store
            .unmark_distributed(&export.pool_id, &export.export_id)
            .await
        {
            Ok(_) => return true,
            Err(e) => {
                tracing::error!(error = %e, attempt, "taking back an export's marks failed");
                if attempt < UNMARK_ATTEMPTS {
                    tokio::time::sleep(delay).await;
                    delay *= 4;
                }
            }
        }
    }
    false
}

/// How often a failed export tries to take back its marks before it gives up on them.
const UNMARK_ATTEMPTS: u32 = 3;

/// Streams the pool's keys into the upload; aborts the upload on any failure.
async fn write_file<S: Courses + Pools + Keys + Exports + ?Sized>(
    store: &S,
    objects: &dyn ObjectStore,
    export: &mut Export,
    now: Timestamp,
) -> Result<()> {
    let pool = store
        .get_pool(&export.org, &export.pool_id)
        .await?
        .ok_or(Error::NotFound(Missing::Pool))?;
    let course_title = store
        .get_course(&export.org, &pool.course_id)
        .await?
        .map(|c| c.title)
        .unwrap_or_default();
    let mut upload = objects
        .upload(&export.object_key, "text/csv; charset=utf-8")
        .await?;
    let written = write_rows(store, upload.as_mut(), export, &pool, &course_title, now).await;
    match written {
        Ok(()) => upload.finish().await,
        Err(e) => {
            if let Err(abort) = upload.abort().await {
                tracing::error!(error = %abort, "aborting an export upload failed");
            }
            Err(e)
        }
    }
}

async fn write_rows<S: Keys + Exports + ?Sized>(
    store: &S,
    upload: &mut dyn crate::objects::Upload,
    export: &mut Export,
    pool: &Pool,
    course_title: &str,
    now: Timestamp,
) -> Result<()> {
    let filter = KeyFilter {
        status: export.key_status,
        undistributed: export.undistributed,
    };
    let mut out = csv_writer();
    out.write_record(CSV_HEADER).map_err(csv_error)?;
    let mut page = store.list_keys(&pool.pool_id, &filter, None, PAGE).await?;
    let mut pages = 0u64;
    loop {
        // The next page is read while this one is written: the export runs at the pace of
        // the slower of the two, not of their sum.
        let cursor = page.next_cursor.take();
        let next = async {
            match &cursor {
                Some(c) => store
                    .list_keys(&pool.pool_id, &filter, Some(c), PAGE)
                    .await
                    .map(Some),
                None => Ok(None),
            }
        };
        let mut items = std::mem::take(&mut page.items);
        let write = async {
            if export.mark_distributed {
                mark_page(store, &mut items, &filter, &export.export_id, now).await?;
            }
            for key in &items {
                write_row(&mut out, key, pool, course_title)?;
                export.rows += 1;
            }
            if out.get_ref().len() >= CHUNK {
                flush(&mut out, upload).await?;
            }
            Ok::<(), Error>(())
        };
        let (next, written) = tokio::join!(next, write);
        written?;
        pages += 1;
        // Progress for whoever reads the export meanwhile.
        if pages.is_multiple_of(PROGRESS_EVERY) && !store.update_export(export).await? {
            return Err(anyhow::anyhow!("another run finished this export").into());
        }
        match next? {
            Some(p) => page = p,
            None => break,
        }
    }
    flush(&mut out, upload).await
}

/// Marks a page's available, unmarked keys before they are written, so that no two exports
/// hand out one key: a key another export marked first keeps its mark, and leaves the page
/// when the export asked for undistributed keys only.
async fn mark_page<S: Keys + ?Sized>(
    store: &S,
    items: &mut Vec<KeyRecord>,
    filter: &KeyFilter,
    export_id: &ExportId,
    now: Timestamp,
) -> Result<()> {
    let wanted: Vec<KeyCode> = items
        .iter()
        .filter(|k| k.status == KeyStatus::Available && k.distributed_at.is_none())
        .map(|k| k.key.clone())
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let asked: std::collections::HashSet<&KeyCode> = wanted.iter().collect();
    let marked: std::collections::HashSet<KeyCode> = store
        .mark_distributed(&wanted, export_id, now)
        .await?
        .into_iter()
        .collect();
    let mut kept = Vec::with_capacity(items.len());
    for mut key in items.drain(..) {
        if marked.contains(&key.key) {
            key.distributed_at = Some(now);
        } else if asked.contains(&key.key) {
            // Changed since it was read (marked elsewhere, redeemed, removed): read it again.
            match store.get_key(&key.key).await? {
                Some(now_key) if !(filter.undistributed && now_key.distributed_at.is_some()) => {
                    key = now_key;
                }
                _ => continue,
            }
        }
        kept.push(key);
    }
    *items = kept;
    Ok(())
}

async fn flush(
    out: &mut csv::Writer<Vec<u8>>,
    upload: &mut dyn crate::objects::Upload,
) -> Result<()> {
    let full = std::mem::replace(out, csv_writer());
    let bytes = full
        .into_inner()
        .map_err(|e| Error::Internal(anyhow::anyhow!("writing CSV: {}", e.error())))?;
    upload.write(&bytes).await
}

fn csv_error(e: csv::Error) -> Error {
    Error::Internal(anyhow::anyhow!("writing CSV: {e}"))
}

/// One row: formula-looking cells neutralised (learner ids and names come from outside).
fn write_row(
    out: &mut csv::Writer<Vec<u8>>,
    key: &KeyRecord,
    pool: &Pool,
    course_title: &str,
) -> Result<()> {
    let opt_time = |t: &Option<Timestamp>| t.as_ref().map(time::format).unwrap_or_default();
    out.write_record([
        key.key.display_form().as_str(),
        key.status.as_str(),
        &time::format(&key.created_at),
        &cell(key.redeemed_by.as_ref().map_or("", |u| u.as_str())),
        &opt_time(&key.redeemed_at),
        &key.assignment_id.map(|a| a.to_string()).unwrap_or_default(),
        &opt_time(&key.assignment_expires_at),
        &cell(&pool.name),
        &cell(course_title),
        &opt_time(&key.distributed_at),
        &pool.pool_id.to_string(),
    ])
    .map_err(csv_error)
}

/// Runs an export job from a queue; a generation job is not the export function's to run.
pub async fn run_job<S: Courses + Pools + Keys + Exports + ?Sized>(
    store: &S,
    objects: &dyn ObjectStore,
    clock: &dyn Clock,
    job: &Job,
) -> Result<()> {
    match job {
        Job::Export { org, export_id } => {
            run(store, objects, clock, org, export_id).await.map(drop)
        }
        Job::Generate { .. } => {
            Err(anyhow::anyhow!("a generation job reached the export function: {job:?}").into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_come_from_the_pool_and_the_time() {
        let at = time::parse("2026-11-28T21:19:33.123Z").unwrap();
        assert_eq!(
            file_name("Spring cohort: Rust/Go!", at),
            "spring-cohort-rust-go-keys-20261128-211933.csv"
        );
        assert_eq!(file_name("¿¡!", at), "pool-keys-20261128-211933.csv");
        assert_eq!(stamp(at), "2026-11-28T21-19-33.123Z");
    }
}
