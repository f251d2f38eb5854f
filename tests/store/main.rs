//! The store's behaviour on a real DynamoDB engine (a fresh in-memory one per test): every
//! operation of the `Store` trait, and the domain operations built on it, with their errors.
//! Nothing here goes through HTTP; the `api` suite covers the contract on the wire.
//!
//! One module per aggregate; `fixtures` holds the helpers they share.

mod assignments;
mod courses;
mod fixtures;
mod key_removal;
mod keys;
mod listings;
mod pools;
mod probing;
mod redemption;
mod shards;
mod throttle;
mod webhooks;
