//! A minimal Lambda Runtime API (the `2018-06-01` endpoints a runtime client calls), served on
//! loopback, so that a test or a bench can start a function's real binary with
//! `AWS_LAMBDA_RUNTIME_API` pointing here, hand it events and read its answers.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use tokio::process::{Child, Command};
use tokio::sync::{Mutex, mpsc, oneshot};

/// What the function answered to one invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The handler's response payload.
    Response(Value),
    /// An invocation error the runtime reported.
    Error(Value),
}

type Waiters = HashMap<String, oneshot::Sender<Outcome>>;

#[derive(Clone)]
struct Shared {
    queue: Arc<Mutex<mpsc::Receiver<(String, Value)>>>,
    waiters: Arc<Mutex<Waiters>>,
    init_error: Arc<Mutex<Option<Value>>>,
}

/// A running Runtime API endpoint.
pub struct RuntimeApi {
    address: String,
    sender: mpsc::Sender<(String, Value)>,
    shared: Shared,
    next_id: AtomicU64,
    server: tokio::task::JoinHandle<()>,
}

impl RuntimeApi {
    /// Serves the endpoint on a free loopback port.
    pub async fn start() -> anyhow::Result<Self> {
        let (sender, receiver) = mpsc::channel(16);
        let shared = Shared {
            queue: Arc::new(Mutex::new(receiver)),
            waiters: Arc::new(Mutex::new(HashMap::new())),
            init_error: Arc::new(Mutex::new(None)),
        };
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?.to_string();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            address,
            sender,
            shared,
            next_id: AtomicU64::new(1),
            server,
        })
    }

    /// The `host:port` for `AWS_LAMBDA_RUNTIME_API`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Queues an event and waits for the function's answer.
    pub async fn invoke(&self, event: Value, timeout: Duration) -> anyhow::Result<Outcome> {
        let id = format!("req-{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        self.shared.waiters.lock().await.insert(id.clone(), tx);
        self.sender.send((id, event)).await?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(_)) => anyhow::bail!("the endpoint dropped the invocation"),
            Err(_) => {
                let init = self.shared.init_error.lock().await.clone();
                anyhow::bail!("no answer within {timeout:?} (init error: {init:?})")
            }
        }
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn next(State(shared): State<Shared>) -> Response {
    let Some((id, event)) = shared.queue.lock().await.recv().await else {
        return StatusCode::GONE.into_response();
    };
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        + Duration::from_secs(30);
    let mut headers = HeaderMap::new();
    let mut put = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    put("lambda-runtime-aws-request-id", id);
    put(
        "lambda-runtime-deadline-ms",
        deadline.as_millis().to_string(),
    );
    put(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:123456789012:function:keypool-test".into(),
    );
    put(
        "lambda-runtime-trace-id",
        "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1".into(),
    );
    (StatusCode::OK, headers, axum::Json(event)).into_response()
}

async fn settle(shared: &Shared, id: &str, outcome: Outcome) -> StatusCode {
    match shared.waiters.lock().await.remove(id) {
        Some(tx) => {
            let _ = tx.send(outcome);
            StatusCode::ACCEPTED
        }
        None => StatusCode::BAD_REQUEST,
    }
}

fn json_or_text(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_string()))
}

async fn response(
    State(shared): State<Shared>,
    UrlPath(id): UrlPath<String>,
    body: String,
) -> StatusCode {
    settle(&shared, &id, Outcome::Response(json_or_text(&body))).await
}

async fn error(
    State(shared): State<Shared>,
    UrlPath(id): UrlPath<String>,
    body: String,
) -> StatusCode {
    settle(&shared, &id, Outcome::Error(json_or_text(&body))).await
}

async fn init_error(State(shared): State<Shared>, body: String) -> StatusCode {
    *shared.init_error.lock().await = Some(json_or_text(&body));
    StatusCode::ACCEPTED
}

/// The environment Lambda gives a function, pointed at this endpoint and at a DynamoDB
/// endpoint; `extra` adds the function's own variables.
pub fn lambda_env(
    runtime: &RuntimeApi,
    name: &str,
    dynamodb_endpoint: &str,
) -> Vec<(String, String)> {
    [
        ("AWS_LAMBDA_RUNTIME_API", runtime.address()),
        ("AWS_LAMBDA_FUNCTION_NAME", name),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "test-stream"),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/test"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "local"),
        ("AWS_SECRET_ACCESS_KEY", "local"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_ENDPOINT_URL", dynamodb_endpoint),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// A function process; killed when dropped.
pub struct Function {
    child: Child,
}

impl Function {
    /// Starts a function binary with exactly the given environment.
    pub fn spawn(binary: &Path, env: &[(String, String)]) -> anyhow::Result<Self> {
        let child = Command::new(binary)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(Self { child })
    }

    /// Stops the process.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Starts a binary, sends one event and measures from process start to the first answer.
pub async fn cold_start(
    binary: &Path,
    env: &[(String, String)],
    runtime: &RuntimeApi,
    event: Value,
) -> anyhow::Result<(Duration, Outcome)> {
    let started = Instant::now();
    let function = Function::spawn(binary, env)?;
    let outcome = runtime.invoke(event, Duration::from_secs(30)).await;
    let elapsed = started.elapsed();
    function.stop().await;
    Ok((elapsed, outcome?))
}
