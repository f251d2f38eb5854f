//! The webhooks Lambda function: fans the assignments stream's events out to endpoints, sends
//! the deliveries its queue brings (each attempt queued again for the next, delayed), and
//! sweeps up deliveries whose next attempt lies beyond SQS's delays.

use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    // Built once per execution environment, not per batch.
    let parts = keypool::setup::webhooks_function().await?;
    let parts = &parts;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            Ok::<serde_json::Value, Error>(
                keypool::events::webhooks::function(
                    parts.store.as_ref(),
                    &parts.sender,
                    &parts.queue,
                    &parts.clock,
                    parts.first_retry,
                    event.payload,
                )
                .await?,
            )
        },
    ))
    .await
}
