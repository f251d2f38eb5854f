//! Building a process's clients and state once, at start-up.

use std::sync::Arc;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};

use crate::http::{AppState, Authenticator, ClaimNames};
use crate::schema::Tables;
use crate::store::DynamoStore;
use crate::time::SystemClock;

/// A DynamoDB client for a local engine: fixed region, placeholder credentials.
pub fn local_client(endpoint: &str) -> Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "local",
            "local",
            None,
            None,
            "keypool-local",
        ))
        .build();
    Client::from_conf(config)
}

/// A DynamoDB client from the environment (region, credentials, `AWS_ENDPOINT_URL*`).
pub async fn client_from_env() -> Client {
    let config = aws_config::load_defaults(BehaviorVersion::latest()).await;
    Client::new(&config)
}

/// Builds a Lambda function's state from its environment, failing fast with the missing
/// variable: tables from `MAIN_TABLE` and `ASSIGNMENTS_TABLE`, identity from API Gateway's
/// JWT authorizer (claim names from `ORG_CLAIM` and `ROLE_CLAIM`).
pub async fn lambda_state() -> anyhow::Result<AppState> {
    let config = aws_config::load_defaults(BehaviorVersion::latest()).await;
    state_from(&config)
}

fn state_from(config: &aws_config::SdkConfig) -> anyhow::Result<AppState> {
    let tables = Tables::from_env()?;
    let store = DynamoStore::new(Client::new(config), tables);
    Ok(AppState::new(
        Arc::new(store),
        Authenticator::ApiGateway(ClaimNames::from_env()),
        Arc::new(SystemClock),
    ))
}

/// An environment variable, or an error that names it.
fn required(name: &str) -> anyhow::Result<String> {
    std::env::var(name).map_err(|_| anyhow::anyhow!("environment variable {name} is not set"))
}

/// A DynamoDB Streams client for a local engine, as `local_client` builds the table client.
#[cfg(feature = "embedded")]
pub fn local_streams_client(endpoint: &str) -> aws_sdk_dynamodbstreams::Client {
    use aws_sdk_dynamodbstreams::config::{
        BehaviorVersion, Credentials as StreamCredentials, Region as StreamRegion,
    };
    let config = aws_sdk_dynamodbstreams::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(StreamRegion::new("us-east-1"))
        .credentials_provider(StreamCredentials::new(
            "local",
            "local",
            None,
            None,
            "keypool-local",
        ))
        .build();
    aws_sdk_dynamodbstreams::Client::from_conf(config)
}

/// The state of a function that queues jobs: `lambda_state` plus its job queue
/// (`JOBS_QUEUE_URL`), failing fast with the missing variable.
pub async fn jobs_state() -> anyhow::Result<AppState> {
    let config = aws_config::load_defaults(BehaviorVersion::latest()).await;
    with_jobs(&config)
}

fn with_jobs(config: &aws_config::SdkConfig) -> anyhow::Result<AppState> {
    let mut state = state_from(config)?;
    state.jobs = Arc::new(crate::jobs::SqsJobs::new(
        aws_sdk_sqs::Client::new(config),
        required("JOBS_QUEUE_URL")?,
    ));
    Ok(state)
}

/// The export function's state: `jobs_state` plus its bucket (`EXPORT_BUCKET`).
pub async fn export_state() -> anyhow::Result<AppState> {
    let config = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let mut state = with_jobs(&config)?;
    state.objects = Arc::new(crate::objects::S3Objects::new(
        aws_sdk_s3::Client::new(&config),
        required("EXPORT_BUCKET")?,
    ));
    Ok(state)
}
