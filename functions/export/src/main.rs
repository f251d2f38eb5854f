//! The export Lambda function: the export routes, and the scheduled export (EventBridge events
//! reach the router as `POST /events` through lambda_http's pass-through).
//!
//! Exports are built by their own issue; until then the HTTP routes answer 501 and the
//! schedule only logs that it ran.

use keypool::http::{export_routes, service};
use lambda_http::request::RequestContext;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let state = keypool::setup::lambda_state().await?;
    let routes = export_routes().route(
        "/events",
        axum::routing::post(|request: axum::extract::Request| async move {
            // Only events that Lambda delivered directly (not HTTP requests) come this way.
            if !matches!(
                request.extensions().get::<RequestContext>(),
                Some(RequestContext::PassThrough)
            ) {
                return axum::http::StatusCode::NOT_FOUND;
            }
            lambda_http::tracing::info!("scheduled export invoked; exports are not built yet");
            axum::http::StatusCode::OK
        }),
    );
    lambda_http::run(service(routes, state)).await
}
