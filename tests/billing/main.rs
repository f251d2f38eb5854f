//! Billing: stream records to invoice lines exactly once, the invoice routes, cancellation, and
//! the local stream follower, on a real DynamoDB engine.
//!
//! One module per part; `fixtures` holds the helpers they share.

mod cancellation;
mod fixtures;
mod follower;
mod invoices;
mod replay;
mod stats;
mod stats_replay;
mod stream;
