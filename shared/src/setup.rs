//! Building a process's clients and state once, at start-up.

use std::sync::Arc;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};

use crate::http::{AppState, Authenticator};
use crate::identity::TokenAuthority;
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

/// Builds a function's state from its environment, failing fast with the missing variable.
pub async fn state_from_env() -> anyhow::Result<AppState> {
    let tables = Tables::from_env()?;
    let secret = std::env::var("TOKEN_SECRET")
        .map_err(|_| anyhow::anyhow!("environment variable TOKEN_SECRET is not set"))?;
    anyhow::ensure!(
        secret.len() >= 32,
        "TOKEN_SECRET must have at least 32 characters"
    );
    let store = DynamoStore::new(client_from_env().await, tables);
    Ok(AppState {
        store: Arc::new(store),
        auth: Arc::new(Authenticator::Local(TokenAuthority::new(secret.as_bytes()))),
        clock: Arc::new(SystemClock),
    })
}
