//! The operations, one module per use case: each a short function over the store's narrow
//! traits (its bounds say which aggregates it touches), with no DynamoDB or HTTP types. The
//! HTTP handlers and the event handlers call these and nothing below them.

pub mod add_keys;
pub mod assignments;
pub mod bill;
pub mod cancel;
pub mod export;
pub mod inventory;
pub mod invoices;
pub mod key_jobs;
pub mod limits;
pub mod open_jobs;
pub mod paste;
pub mod pools;
pub mod redeem;
pub mod schedule;
