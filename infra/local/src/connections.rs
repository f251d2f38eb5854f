//! Accepting and serving connections, with bounds on what slow or silent clients can hold.
//!
//! `axum::serve` sets no timeout: a client that trickles its request head, or connects and
//! sends nothing, holds its connection (and a task) for ever, and enough of them hold the
//! machine's file descriptors. So the server runs hyper's HTTP/1 connections itself:
//!
//! - **Request head: 10 s** (`KEYPOOL_HEADER_TIMEOUT_MS`). hyper's `header_read_timeout`
//!   starts when the connection opens, and again as soon as an answer has gone out on a
//!   kept-alive connection; by its end the whole head must have arrived, or the connection is
//!   closed without an answer. So the same bound covers a connection that sends nothing at
//!   all, a head that trickles in, and the **idle time between requests** on a kept-alive
//!   connection. 10 s is long for a head (a few hundred bytes, even on a slow link) and a
//!   common keep-alive (Apache's is 5 s): a browser that finds its connection closed opens
//!   another.
//! - **Connections: 512 at once** (`KEYPOOL_MAX_CONNECTIONS`). Beyond that the server stops
//!   accepting, so new connections wait in the kernel's accept backlog (once that is full,
//!   the kernel drops new attempts, which clients retry) until one closes, as an idle or
//!   slow-headed one does within the bound above. 512 leaves room under the common limit of
//!   1,024 open files per process for the database, the exports and the engine's own
//!   loopback connections; a browser opens at most six per server.
//!
//! Not bounded here: how long a client takes to send a body (at most 4 MiB, read by the
//! routes) or to read an answer.
//!
//! The two variables are for tests and for machines that need other bounds; a malformed
//! value stops the server at start. What a connection keeps from before: hyper's own refusals
//! answer in JSON (`http_limits`), routers see the peer as `ConnectInfo<SocketAddr>`, and
//! shutdown lets answers in progress finish.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::Service as _;

use crate::http_limits::JsonErrorIo;

/// How long a request head may take, from when the server waits for it.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How many connections are served at once.
pub const MAX_CONNECTIONS: usize = 512;

/// The bounds on connections.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// See `HEADER_TIMEOUT`.
    pub header_timeout: Duration,
    /// See `MAX_CONNECTIONS`.
    pub max_connections: usize,
}

impl Limits {
    /// The defaults, or `KEYPOOL_HEADER_TIMEOUT_MS` and `KEYPOOL_MAX_CONNECTIONS`.
    pub fn from_env() -> anyhow::Result<Self> {
        let header_timeout = match positive("KEYPOOL_HEADER_TIMEOUT_MS")? {
            Some(ms) => Duration::from_millis(ms),
            None => HEADER_TIMEOUT,
        };
        let max_connections = match positive("KEYPOOL_MAX_CONNECTIONS")? {
            Some(n) => usize::try_from(n)
                .ok()
                .filter(|n| *n <= Semaphore::MAX_PERMITS)
                .context("KEYPOOL_MAX_CONNECTIONS is too large")?,
            None => MAX_CONNECTIONS,
        };
        Ok(Self {
            header_timeout,
            max_connections,
        })
    }
}

/// A whole number above 0 from the environment, if the variable is set.
fn positive(name: &str) -> anyhow::Result<Option<u64>> {
    let Ok(text) = std::env::var(name) else {
        return Ok(None);
    };
    match text.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(Some(n)),
        _ => anyhow::bail!("{name} must be a whole number above 0, not {text:?}"),
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` completes, then waits for
/// the connections to finish what they are answering.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        // A free slot first: until one is, connections wait unaccepted.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            () = &mut shutdown => break,
        };
        let Ok(slot) = slot else { break };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let router = router.clone();
        // Routers read the client's address from `ConnectInfo<SocketAddr>`.
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            router.clone().call(request)
        });
        let connection = http.serve_connection(TokioIo::new(JsonErrorIo::new(stream)), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // A client gone, or too slow with its head: nothing to answer, nothing to log above
            // debug.
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// After a failed accept: a connection that died in the backlog is nothing; anything else
/// (such as running out of file descriptors) is logged and waited out a moment, as axum does.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accepting a connection failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
