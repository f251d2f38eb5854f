//! The redemption Lambda function: its router from the shared crate, served by lambda_http.

use keypool::http::{redemption_routes, service};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    // Clients and configuration are built once per execution environment, not per request.
    let state = keypool::setup::redemption_state().await?;
    lambda_http::run(service(redemption_routes(), state)).await
}
