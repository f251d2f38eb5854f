//! The pool-admin Lambda function: its router from the shared crate, served by lambda_http.

use keypool::http::{pool_admin_routes, service};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    // Clients and configuration are built once per execution environment, not per request.
    // Long key lists become import jobs on the key-generation queue.
    let state = keypool::setup::pool_admin_state().await?;
    lambda_http::run(service(pool_admin_routes(), state)).await
}
