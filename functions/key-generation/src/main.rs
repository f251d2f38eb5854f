//! The key-generation Lambda function: its routes (small generations at once, large ones
//! queued as jobs, job progress), and the jobs themselves, which arrive from its SQS queue as
//! `POST /events` through lambda_http's pass-through.

use keypool::http::{key_generation_event_routes, key_generation_routes, service};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    // Clients and configuration are built once per execution environment, not per request.
    let state = keypool::setup::key_generation_state().await?;
    lambda_http::run(service(
        key_generation_routes().merge(key_generation_event_routes()),
        state,
    ))
    .await
}
