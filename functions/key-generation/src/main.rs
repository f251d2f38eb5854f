//! The key-generation Lambda function: its router from the shared crate, served by lambda_http.

use keypool::http::{key_generation_routes, service};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    // Clients and configuration are built once per execution environment, not per request.
    let state = keypool::setup::lambda_state().await?;
    lambda_http::run(service(key_generation_routes(), state)).await
}
