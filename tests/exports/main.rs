//! Exports: the CSV's content, the distribution marks, the S3 path on moto's server (multipart,
//! presigned link, failure mid-upload), and the scheduled export from a real EventBridge event.
//!
//! `content` holds what a file says and which keys it hands out; `failures` what a failed
//! upload or a failed export leaves; `schedule` the schedule and the job queue's messages.

mod content;
mod failures;
mod schedule;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use axum::http::{Method, StatusCode};
use keypool::domain::{
    Course, CourseId, Export, ExportId, ExportStatus, KeyFilter, KeyRecord, MaxOpenJobs, NewKey,
    Page, Pool, PoolFilter, PoolId,
};
use keypool::identity::OrgId;
use keypool::keys::KeyCode;
use keypool::objects::{ObjectStore, Upload};
use keypool::ops::export;
use keypool::store::prelude::*;
use keypool::store::{InsertOutcome, RemoveConflict};
use keypool::time::Timestamp;
use keypool_tests::{Queued, World, s3_bucket, send};
use serde_json::{Value, json};

/// Starts an export through the API and waits for its job; returns the export as the API
/// shows it afterwards.
pub(crate) async fn export_via(
    w: &World,
    app: &axum::Router,
    org: &str,
    pool_id: &str,
    body: Value,
) -> Value {
    let admin = w.admin(org);
    let started = send(
        app,
        Method::POST,
        &format!("/v1/pools/{pool_id}/exports"),
        Some(&admin),
        Some("application/json"),
        body.to_string().into_bytes(),
    )
    .await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{:?}", started.body);
    assert_eq!(started.body["status"], "pending");
    let id = started.body["export_id"].as_str().unwrap().to_string();
    w.finished_export(org, &id).await;
    let read = send(
        app,
        Method::GET,
        &format!("/v1/exports/{id}"),
        Some(&admin),
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(read.status, StatusCode::OK);
    read.body
}

/// Downloads a local link through the router.
pub(crate) async fn download_local(w: &World, url: &str) -> (StatusCode, String, String) {
    let path = url
        .strip_prefix("http://keypool.test")
        .expect("a link to the local server");
    let reply = w.raw(Method::GET, path, None, None, Vec::new()).await;
    let disposition = reply
        .headers
        .get("content-disposition")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let text = match reply.body {
        Value::String(s) => s,
        other => other.to_string(),
    };
    (reply.status, text, disposition)
}

pub(crate) fn rows(text: &str) -> Vec<csv::StringRecord> {
    csv::Reader::from_reader(text.as_bytes())
        .records()
        .map(Result::unwrap)
        .collect()
}

pub(crate) fn column(name: &str) -> usize {
    export::CSV_HEADER.iter().position(|c| *c == name).unwrap()
}
