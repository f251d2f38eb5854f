//! What only the local server runs, in place of what AWS runs for the functions (feature
//! `local`, never in Lambda builds); the tests and the bench run it too:
//! - `engine`: the embedded DynamoDB engine (dynoxide over SQLite), in place of DynamoDB;
//! - `jobs`: the job runner, in place of the SQS queues and their functions;
//! - `follower`: the assignments stream's reader, in place of Lambda's event source mapping.

pub mod engine;
pub mod follower;
pub mod jobs;
