//! KeyPool: training key pools for self-paced learning.
//!
//! Read it bottom-up, one layer at a time (docs/architecture.md has the map):
//! - values: `error`, `time`, `keys` (key codes, generation, the check symbol), `identity`;
//! - `domain`: the records and their ids, which know nothing above them;
//! - `store`: narrow traits per aggregate, implemented over DynamoDB (`store::dynamo`), with
//!   the table layout in `schema`;
//! - `ops`: one module per use case, over the store's traits;
//! - the edges: `http` (one router per function), `events` (queue batches, the schedule and
//!   stream records, read into domain values), `jobs` (background work), `objects` (export
//!   files), `launch` (signed launch tokens: local keys or KMS), `webhooks` (sending them), `mail` (letters, templates and their
//!   transports: an outbox folder, SMTP),
//!   `setup` (clients and state at start-up);
//! - `local` (feature `local`, never in Lambda builds): what only the local server runs in
//!   place of AWS: the embedded engine, the job runner, the stream follower.

pub mod domain;
pub mod error;
pub mod events;
pub mod http;
pub mod identity;
pub mod jobs;
pub mod keys;
pub mod launch;
#[cfg(feature = "local")]
pub mod local;
pub mod mail;
pub mod objects;
pub mod ops;
pub mod schema;
pub mod settings;
pub mod setup;
pub mod spreadsheet;
pub mod store;
pub mod time;
pub mod webhooks;

pub use error::{Error, Result};
