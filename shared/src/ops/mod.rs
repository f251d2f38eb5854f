//! The operations, one module per use case: each a short function over the store's narrow
//! traits (its bounds say which aggregates it touches), taking and returning domain values,
//! with no DynamoDB, HTTP or Lambda event types: the edges (`http`, `events`) read the wire
//! formats and call these, and nothing below them.
//!
//! No use case imports another beside it. What two share lives in a module both import:
//! `assignments::load` (redeem, cancel), `open_jobs::JobContext` (every start of a job),
//! `key_jobs` (its runner, `job` and `checks`, used by its kinds and by `add_keys`), `paste`,
//! `pools` and `limits`. docs/architecture.md lists each module with what it imports.

pub mod add_keys;
pub mod assignments;
pub mod audit;
pub mod bill;
pub mod cancel;
pub mod export;
pub mod inventory;
pub mod invoices;
pub mod key_jobs;
pub mod launch;
pub mod limits;
pub mod open_jobs;
pub mod paste;
pub mod pools;
pub mod recipient_list;
pub mod redeem;
pub mod schedule;
pub mod stats;
pub mod text;
pub mod webhooks;
