//! Building a process's clients and state once, at start-up.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::BehaviorVersion;
use aws_sdk_dynamodb::config::retry::RetryConfig;

use crate::domain::MaxOpenJobs;
use crate::http::{
    Authenticator, ClaimNames, ExportState, KeyGenerationState, PoolAdminState, RedemptionState,
};
use crate::schema::Tables;
use crate::settings::Settings;
use crate::store::DynamoStore;
use crate::time::SystemClock;

/// How DynamoDB clients retry throttling and transient failures: ten attempts with jittered
/// exponential backoff from 25 ms up to 1 s, as AWS's own DynamoDB clients long did (the
/// SDK's default of three attempts from 1 s gives up on a partition that is busy for a
/// moment). A request throttled through all of them answers 503 `store_busy`.
pub fn dynamo_retries() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(10)
        .with_initial_backoff(Duration::from_millis(25))
        .with_max_backoff(Duration::from_secs(1))
}

/// A DynamoDB client from a loaded configuration, with [`dynamo_retries`].
pub fn dynamo_client(config: &aws_config::SdkConfig) -> Client {
    let config = aws_sdk_dynamodb::config::Builder::from(config)
        .retry_config(dynamo_retries())
        .build();
    Client::from_conf(config)
}

/// A DynamoDB client from the environment (region, credentials, `AWS_ENDPOINT_URL*`).
pub async fn client_from_env() -> Client {
    let config = aws_config::load_defaults(BehaviorVersion::latest()).await;
    dynamo_client(&config)
}

/// What every Lambda function builds from its environment, failing fast with the missing
/// variable: the store over `MAIN_TABLE` and `ASSIGNMENTS_TABLE`, identity from API Gateway's
/// JWT authorizer (claim names from `ORG_CLAIM` and `ROLE_CLAIM`).
struct Lambda {
    config: aws_config::SdkConfig,
    store: Arc<DynamoStore>,
    auth: Arc<Authenticator>,
    clock: Arc<SystemClock>,
    settings: Arc<Settings>,
}

impl Lambda {
    async fn from_env() -> anyhow::Result<Self> {
        let config = aws_config::load_defaults(BehaviorVersion::latest()).await;
        let settings = Settings::from_env()?;
        let store = DynamoStore::new(dynamo_client(&config), Tables::from_env()?)
            .with_audit_retention(settings.audit_retention_days);
        Ok(Self {
            config,
            store: Arc::new(store),
            auth: Arc::new(Authenticator::ApiGateway(ClaimNames::from_env())),
            clock: Arc::new(SystemClock),
            settings: Arc::new(settings),
        })
    }

    /// The cap on an organization's open jobs.
    fn max_open_jobs(&self) -> anyhow::Result<MaxOpenJobs> {
        max_open_jobs()
    }

    /// The job queue named by `JOBS_QUEUE_URL`.
    fn jobs(&self) -> anyhow::Result<Arc<crate::jobs::SqsJobs>> {
        Ok(Arc::new(crate::jobs::SqsJobs::new(
            aws_sdk_sqs::Client::new(&self.config),
            required("JOBS_QUEUE_URL")?,
        )))
    }
}

/// The pool-admin function's state; long key lists go to `JOBS_QUEUE_URL` as import jobs.
pub async fn pool_admin_state() -> anyhow::Result<PoolAdminState> {
    let l = Lambda::from_env().await?;
    Ok(PoolAdminState {
        jobs: l.jobs()?,
        max_open_jobs: l.max_open_jobs()?,
        store: l.store,
        auth: l.auth,
        clock: l.clock,
        settings: l.settings,
        // A test event or a redelivery goes to the webhooks function's queue at once.
        webhooks: crate::http::WebhookParts {
            deliveries: Arc::new(crate::webhooks::SqsDeliveries::new(
                aws_sdk_sqs::Client::new(&l.config),
                required("WEBHOOK_QUEUE_URL")?,
            )),
            ..crate::http::WebhookParts::strict()?
        },
    })
}

/// The key-generation function's state, with its job queue (`JOBS_QUEUE_URL`).
pub async fn key_generation_state() -> anyhow::Result<KeyGenerationState> {
    let l = Lambda::from_env().await?;
    Ok(KeyGenerationState {
        jobs: l.jobs()?,
        max_open_jobs: l.max_open_jobs()?,
        store: l.store,
        auth: l.auth,
        clock: l.clock,
    })
}

/// The redemption function's state.
pub async fn redemption_state() -> anyhow::Result<RedemptionState> {
    let l = Lambda::from_env().await?;
    Ok(RedemptionState {
        launch: Arc::new(launch_signer(&l.config)?),
        store: l.store,
        auth: l.auth,
        clock: l.clock,
        settings: l.settings,
        pools: Arc::new(crate::ops::redeem::PoolCache::new()),
    })
}

/// Launch tokens signed in KMS: `LAUNCH_KEY_IDS` (comma-separated key ids or ARNs, the one
/// that signs first; a rotation lists the next one first and keeps the old one a day) and
/// `LAUNCH_ISSUER` (the `iss` of the tokens: the API's public URL).
fn launch_signer(config: &aws_config::SdkConfig) -> anyhow::Result<crate::launch::KmsSigner> {
    let key_ids: Vec<String> = required("LAUNCH_KEY_IDS")?
        .split(',')
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(String::from)
        .collect();
    anyhow::ensure!(!key_ids.is_empty(), "LAUNCH_KEY_IDS names no key");
    Ok(crate::launch::KmsSigner::new(
        aws_sdk_kms::Client::new(config),
        required("LAUNCH_ISSUER")?,
        key_ids,
    ))
}

/// The export function's state, with its job queue (`JOBS_QUEUE_URL`) and its bucket
/// (`EXPORT_BUCKET`).
pub async fn export_state() -> anyhow::Result<ExportState> {
    let l = Lambda::from_env().await?;
    Ok(ExportState {
        jobs: l.jobs()?,
        max_open_jobs: l.max_open_jobs()?,
        objects: Arc::new(crate::objects::S3Objects::new(
            aws_sdk_s3::Client::new(&l.config),
            required("EXPORT_BUCKET")?,
        )),
        store: l.store,
        auth: l.auth,
        clock: l.clock,
    })
}

/// What the webhooks function works with.
pub struct WebhooksFunction {
    pub store: Arc<DynamoStore>,
    pub sender: crate::webhooks::Sender,
    pub queue: crate::webhooks::SqsDeliveries,
    pub clock: SystemClock,
    pub first_retry: chrono::Duration,
}

/// The webhooks function's parts: its store, a sender to public addresses only, and its
/// queue (`WEBHOOK_QUEUE_URL`).
pub async fn webhooks_function() -> anyhow::Result<WebhooksFunction> {
    let l = Lambda::from_env().await?;
    Ok(WebhooksFunction {
        store: l.store,
        sender: crate::webhooks::Sender::new(
            Arc::new(crate::webhooks::SystemResolver),
            crate::webhooks::Reach::default(),
        )?,
        queue: crate::webhooks::SqsDeliveries::new(
            aws_sdk_sqs::Client::new(&l.config),
            required("WEBHOOK_QUEUE_URL")?,
        ),
        clock: SystemClock,
        first_retry: l.settings.webhook_first_retry,
    })
}

/// The most open jobs one organization may have: `KEYPOOL_MAX_OPEN_JOBS` (a whole number, at
/// least 1), 10 when it is not set. Read once, at start-up.
pub fn max_open_jobs() -> anyhow::Result<MaxOpenJobs> {
    const NAME: &str = "KEYPOOL_MAX_OPEN_JOBS";
    match std::env::var(NAME) {
        Err(std::env::VarError::NotPresent) => Ok(MaxOpenJobs::DEFAULT),
        Ok(text) => text
            .trim()
            .parse::<u64>()
            .ok()
            .and_then(MaxOpenJobs::new)
            .ok_or_else(|| {
                anyhow::anyhow!("{NAME} is {text:?}; set it to a whole number of at least 1")
            }),
        Err(e) => Err(anyhow::anyhow!("{NAME}: {e}")),
    }
}

/// An environment variable, or an error that names it.
fn required(name: &str) -> anyhow::Result<String> {
    std::env::var(name).map_err(|_| anyhow::anyhow!("environment variable {name} is not set"))
}
