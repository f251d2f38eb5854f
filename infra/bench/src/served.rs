//! The API served over HTTP on a loopback port, as `keypool-local serve` serves it, for the
//! figures that measure it from outside; and the tokens they call it with.

use std::sync::Arc;

use keypool::http::{AppState, Authenticator, app};
use keypool::identity::{OrgId, Role, TokenAuthority, UserId};
use keypool::store::DynamoStore;
use keypool::time::SystemClock;

/// A server of one `AppState`, stopped when dropped.
pub(super) struct ApiServer {
    /// `http://127.0.0.1:port`.
    pub(super) base: String,
    serving: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl ApiServer {
    /// Serves `state` with each request's peer address, as `serve` has it: redemptions check
    /// the address's counter too.
    pub(super) async fn start(state: AppState) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let serving = tokio::spawn(async move {
            axum::serve(
                listener,
                app(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .await
        });
        Ok(Self { base, serving })
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.serving.abort();
    }
}

/// An admin's token for `org`, valid for the length of a full run.
pub(super) fn admin_of(authority: &TokenAuthority, org: &str) -> anyhow::Result<String> {
    let org = OrgId::parse(org).map_err(anyhow::Error::msg)?;
    authority.mint(
        &UserId::parse("bench-admin").map_err(anyhow::Error::msg)?,
        Some(&org),
        Role::Admin,
        chrono::Duration::hours(4),
    )
}

/// The state `serve` builds over `store`, trusting tokens `authority` signs.
pub(super) fn local_state(
    store: Arc<DynamoStore>,
    authority: &TokenAuthority,
) -> anyhow::Result<AppState> {
    AppState::new(
        store,
        Authenticator::Local(Box::new(authority.clone())),
        Arc::new(SystemClock),
    )
}
