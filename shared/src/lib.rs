//! KeyPool: training key pools for self-paced learning.
//!
//! The domain (`keys`, `pools`, `inventory`, `redemption`), the store behind a domain-shaped
//! trait (`store`, with the table layout in `schema`), and the HTTP routers (`http`) that every
//! Lambda function and the local server serve.

pub mod billing;
#[cfg(feature = "embedded")]
pub mod embedded;
pub mod error;
pub mod export;
pub mod generation;
pub mod http;
pub mod identity;
pub mod inventory;
pub mod jobs;
pub mod keys;
pub mod objects;
pub mod pools;
pub mod redemption;
pub mod schema;
pub mod setup;
pub mod spreadsheet;
pub mod store;
pub mod time;

pub use error::{Error, Result};
