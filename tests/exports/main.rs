//! Exports: the CSV's content, the distribution marks, the S3 path on moto's server (multipart,
//! presigned link, failure mid-upload), and the scheduled export from a real EventBridge event.
//!
//! One module per part; `fixtures` holds the helpers they share.

mod failures;
mod fixtures;
mod on_demand;
mod s3;
mod schedule;
