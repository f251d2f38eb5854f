//! What only the local server runs, in place of what AWS runs for the functions (feature
//! `local`, never in Lambda builds); the tests and the bench run it too:
//! - `engine`: the embedded DynamoDB engine (dynoxide over SQLite), in place of DynamoDB;
//! - `jobs`: the job runner, in place of the SQS queues and their functions;
//! - `follower`: the assignments stream's reader, in place of Lambda's event source mappings
//!   (billing, and webhooks' events);
//! - `webhooks`: the webhook sender, in place of the delivery queue and its function;
//! - `sdk_config`, the one configuration of every client of a local endpoint (the engine, or
//!   moto in the tests), and the clients built from it.

pub mod engine;
pub mod follower;
pub mod jobs;
pub mod webhooks;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::{Credentials, SharedCredentialsProvider};

/// The SDK configuration for a local endpoint: fixed region, placeholder credentials, the
/// SDK's own defaults for the rest.
pub fn sdk_config(endpoint: &str) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "local",
            "local",
            None,
            None,
            "keypool-local",
        )))
        .build()
}

/// A DynamoDB client for a local endpoint, retrying as every DynamoDB client of ours does
/// (`setup::dynamo_retries`).
pub fn dynamo_client(endpoint: &str) -> aws_sdk_dynamodb::Client {
    crate::setup::dynamo_client(&sdk_config(endpoint))
}

/// A DynamoDB Streams client for a local endpoint.
pub fn streams_client(endpoint: &str) -> aws_sdk_dynamodbstreams::Client {
    aws_sdk_dynamodbstreams::Client::new(&sdk_config(endpoint))
}
