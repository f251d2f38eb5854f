//! The embedded DynamoDB engine (dynoxide over SQLite), served on loopback from a runtime
//! thread of its own, so its synchronous SQLite work never stalls the caller's workers.

use std::path::Path;
use std::thread::JoinHandle;

use anyhow::Context as _;
use tokio::sync::oneshot;

/// A running engine; dropping it stops the server and waits for its thread.
pub struct EmbeddedEngine {
    endpoint: String,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EmbeddedEngine {
    /// An engine over an in-memory database: fresh and private, for tests and benches.
    pub fn memory() -> anyhow::Result<Self> {
        let db = dynoxide::Database::memory().context("opening an in-memory database")?;
        Self::serve(db)
    }

    /// An engine over a database file, created when missing.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let text = path
            .to_str()
            .with_context(|| format!("the path {} is not UTF-8", path.display()))?;
        let db = dynoxide::Database::new(text)
            .with_context(|| format!("opening the database {}", path.display()))?;
        Self::serve(db)
    }

    fn serve(db: dynoxide::Database) -> anyhow::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding loopback")?;
        listener.set_nonblocking(true)?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let (shutdown, stop) = oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("building the engine's runtime")?;
        let thread = std::thread::Builder::new()
            .name("dynamodb-engine".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!(error = %e, "the embedded engine could not listen");
                            return;
                        }
                    };
                    let stopped = async {
                        let _ = stop.await;
                    };
                    if let Err(e) =
                        dynoxide::server::serve_with_shutdown(listener, db, stopped).await
                    {
                        tracing::error!(error = %e, "the embedded engine stopped");
                    }
                });
            })
            .context("starting the engine's thread")?;
        Ok(Self {
            endpoint,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// The engine's HTTP endpoint, for a DynamoDB client.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

impl Drop for EmbeddedEngine {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
