//! The HTTP contract through the routers, on a real DynamoDB engine per test.
//!
//! One module per area of the API; `fixtures` holds the helpers they share.

mod audit;
mod classroom;
mod contract;
mod courses_pools;
mod faults;
mod fixtures;
mod job_cap;
mod keys;
mod launch;
mod races;
mod redemption;
mod roles;
mod webhooks;
