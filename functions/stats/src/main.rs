//! The stats Lambda function: counts what the assignments table's stream records say happened
//! (redemptions, launches, cancellations) per pool and day and per organization and month, in
//! order, and reports the first record it could not count so that Lambda retries from there.

use aws_lambda_events::event::dynamodb::Event;
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use keypool::schema::Tables;
use keypool::store::DynamoStore;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    // The store is built once per execution environment, not per batch.
    let store = DynamoStore::new(keypool::setup::client_from_env().await, Tables::from_env()?);
    let store = &store;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Event>| async move {
        Ok::<DynamoDbEventResponse, Error>(
            keypool::events::stats::count(store, &event.payload).await?,
        )
    }))
    .await
}
