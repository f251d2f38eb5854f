//! The local server as a user runs it: the built binary serves, its tokens work, the data
//! survives a restart, and what reaches its port is bounded.
//!
//! One module per concern; `fixtures` holds what they share: servers started from the binary,
//! tokens, requests and raw connections.

mod connections;
mod console;
mod data_dir;
mod failures;
mod fixtures;
mod origins;
