//! The export Lambda function: the export routes, the jobs that write export files (SQS
//! messages), and the scheduled export (EventBridge); the last two reach the router as
//! `POST /events` through lambda_http's pass-through.

use keypool::http::{export_event_routes, export_routes, service};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    // Clients and configuration are built once per execution environment, not per request.
    let state = keypool::setup::export_state().await?;
    lambda_http::run(service(export_routes().merge(export_event_routes()), state)).await
}
