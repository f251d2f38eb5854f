//! `keypool-faults`: for the tests and the bench only, in a crate of its own so that neither the
//! library nor any binary of the product links it.
//!
//! DynamoDB's conflicts and throttling, injected: an HTTP client for the SDK that answers a
//! chosen fraction of requests itself, in DynamoDB's own words, before they reach the engine,
//! and passes the others through. Nothing an injected request asked for is applied, as on
//! DynamoDB; and since each attempt goes through the HTTP client, the SDK's retries and ours
//! meet every injected fault as they would meet DynamoDB's.
//!
//! - a transaction (TransactWriteItems) is cancelled with `TransactionCanceledException`, one
//!   cancellation reason per item: `TransactionConflict` (or, for a throttled item,
//!   `ThrottlingError`) for every item, or for one item with `None` for the others (both
//!   shapes DynamoDB sends);
//! - any request is refused with HTTP 400 `ProvisionedThroughputExceededException`.
//!
//! Decisions come from a seeded generator: the seed is printed when a world starts and can be
//! set with `KEYPOOL_FAULT_SEED` to replay a failure (concurrent requests may still draw in
//! another order).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use serde_json::{Value, json};

/// How often to inject each fault, as fractions of requests from 0.0 to 1.0.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Faults {
    /// Of transactions, those cancelled with `TransactionConflict`.
    pub conflicts: f64,
    /// Of all requests, those refused with `ProvisionedThroughputExceededException`.
    pub throttles: f64,
    /// Of transactions, those cancelled because an item was throttled (`ThrottlingError`).
    pub throttled_items: f64,
}

impl Faults {
    /// No faults: every request reaches the engine.
    pub const NONE: Faults = Faults {
        conflicts: 0.0,
        throttles: 0.0,
        throttled_items: 0.0,
    };

    /// A fraction of transactions cancelled for conflicts.
    pub fn conflicts(fraction: f64) -> Self {
        Self {
            conflicts: fraction,
            ..Self::NONE
        }
    }

    /// A fraction of all requests throttled.
    pub fn throttles(fraction: f64) -> Self {
        Self {
            throttles: fraction,
            ..Self::NONE
        }
    }

    /// A fraction of transactions cancelled for a throttled item.
    pub fn throttled_items(fraction: f64) -> Self {
        Self {
            throttled_items: fraction,
            ..Self::NONE
        }
    }
}

/// The injector of one world: what it injects (changeable while the world runs) and what it
/// injected so far.
#[derive(Debug)]
pub struct Injector {
    faults: Mutex<Faults>,
    rng: Mutex<u64>,
    seed: u64,
    conflicts: AtomicU64,
    throttles: AtomicU64,
    passed: AtomicU64,
    /// Transactions passed since the last one cancelled for a conflict.
    streak: AtomicU64,
    /// Every request so far, by operation, injected or passed.
    operations: Mutex<BTreeMap<String, u64>>,
}

/// What an injector did with one request.
enum Decision {
    Pass,
    /// Cancel the transaction of `items` actions, for `reason`.
    Cancel {
        items: usize,
        reason: &'static str,
    },
    Throttle,
}

impl Injector {
    /// An injector drawing from `seed`.
    pub fn new(faults: Faults, seed: u64) -> Self {
        Self {
            faults: Mutex::new(faults),
            rng: Mutex::new(seed),
            seed,
            conflicts: AtomicU64::new(0),
            throttles: AtomicU64::new(0),
            passed: AtomicU64::new(0),
            streak: AtomicU64::new(0),
            operations: Mutex::new(BTreeMap::new()),
        }
    }

    /// `KEYPOOL_FAULT_SEED` when set, else a new seed.
    pub fn seed_from_env() -> u64 {
        match std::env::var("KEYPOOL_FAULT_SEED") {
            Ok(seed) => seed.parse().expect("KEYPOOL_FAULT_SEED is a number"),
            Err(_) => getrandom::u64().expect("the OS gives random numbers"),
        }
    }

    /// The seed, to replay a run.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Changes what is injected from now on.
    pub fn set(&self, faults: Faults) {
        *self.faults.lock().unwrap() = faults;
    }

    /// Transactions cancelled so far (for conflicts or throttled items).
    pub fn conflicts(&self) -> u64 {
        self.conflicts.load(Ordering::SeqCst)
    }

    /// Requests throttled so far.
    pub fn throttles(&self) -> u64 {
        self.throttles.load(Ordering::SeqCst)
    }

    /// Requests passed through to the engine so far.
    pub fn passed(&self) -> u64 {
        self.passed.load(Ordering::SeqCst)
    }

    /// Requests so far, by DynamoDB operation (`GetItem`, `TransactWriteItems`, ...), whatever
    /// became of them: what a step costs is the difference of two of these.
    pub fn operations(&self) -> BTreeMap<String, u64> {
        self.operations.lock().unwrap().clone()
    }

    /// A number in [0, 1) from the seeded generator (SplitMix64).
    fn draw(&self) -> f64 {
        let mut state = self.rng.lock().unwrap();
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    fn decide(&self, request: &HttpRequest) -> Decision {
        let faults = *self.faults.lock().unwrap();
        let operation = request
            .headers()
            .get("x-amz-target")
            .and_then(|t| t.strip_prefix("DynamoDB_20120810."))
            .unwrap_or_default();
        *self
            .operations
            .lock()
            .unwrap()
            .entry(operation.to_string())
            .or_default() += 1;
        if faults.throttles > 0.0 && self.draw() < faults.throttles {
            self.throttles.fetch_add(1, Ordering::SeqCst);
            return Decision::Throttle;
        }
        if operation == "TransactWriteItems" {
            // A run of passed transactions twice as long as the fraction makes likely is cut,
            // so that a short race still meets its conflicts (and a test can say it did).
            let streak = self.streak.fetch_add(1, Ordering::SeqCst) + 1;
            for (fraction, reason) in [
                (faults.conflicts, "TransactionConflict"),
                (faults.throttled_items, "ThrottlingError"),
            ] {
                let overdue = reason == "TransactionConflict"
                    && fraction > 0.0
                    && streak as f64 >= 2.0 / fraction;
                if fraction > 0.0 && (overdue || self.draw() < fraction) {
                    if reason == "TransactionConflict" {
                        self.streak.store(0, Ordering::SeqCst);
                    }
                    self.conflicts.fetch_add(1, Ordering::SeqCst);
                    return Decision::Cancel {
                        items: transact_items(request),
                        reason,
                    };
                }
            }
        }
        self.passed.fetch_add(1, Ordering::SeqCst);
        Decision::Pass
    }

    /// DynamoDB's answer to a transaction it cancelled for `reason`.
    fn cancel(&self, items: usize, reason: &str) -> HttpResponse {
        // Half the time every item fails, otherwise one does and the others are fine.
        let one = (self.draw() < 0.5).then(|| (self.draw() * items as f64) as usize);
        let reasons: Vec<Value> = (0..items)
            .map(|i| match one {
                Some(j) if i != j => json!({ "Code": "None" }),
                _ if reason == "TransactionConflict" => json!({
                    "Code": reason,
                    "Message": "Transaction is ongoing for the item",
                }),
                _ => json!({
                    "Code": reason,
                    "Message": "Throughput exceeds the current capacity of your table or index.",
                }),
            })
            .collect();
        let codes: Vec<&str> = reasons
            .iter()
            .map(|r| r["Code"].as_str().unwrap_or_default())
            .collect();
        error_response(json!({
            "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
            "CancellationReasons": reasons,
            "Message": format!(
                "Transaction cancelled, please refer cancellation reasons for specific reasons [{}]",
                codes.join(", ")
            ),
        }))
    }
}

/// DynamoDB's answer to a request beyond the table's capacity.
fn throttle() -> HttpResponse {
    error_response(json!({
        "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
        "message": "The level of configured provisioned throughput for the table was exceeded. \
                    Consider increasing your provisioning level with the UpdateTable API.",
    }))
}

fn error_response(body: Value) -> HttpResponse {
    let mut response = HttpResponse::new(
        StatusCode::try_from(400).expect("400 is a status"),
        SdkBody::from(body.to_string()),
    );
    let headers = response.headers_mut();
    headers.insert("content-type", "application/x-amz-json-1.0");
    headers.insert("x-amzn-requestid", "injected-by-keypool-tests");
    response
}

/// The number of actions of a TransactWriteItems request.
fn transact_items(request: &HttpRequest) -> usize {
    request
        .body()
        .bytes()
        .and_then(|b| serde_json::from_slice::<Value>(b).ok())
        .and_then(|v| v["TransactItems"].as_array().map(Vec::len))
        .unwrap_or(1)
}

/// The SDK's HTTP client with an injector in front of it.
#[derive(Debug, Clone)]
pub struct FaultyHttp {
    inner: SharedHttpClient,
    injector: std::sync::Arc<Injector>,
}

impl FaultyHttp {
    /// The SDK's default HTTP client behind `injector`.
    pub fn new(injector: std::sync::Arc<Injector>) -> Self {
        use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
        let inner = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
            .build_https();
        Self { inner, injector }
    }
}

impl HttpClient for FaultyHttp {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(FaultyConnector {
            inner: self.inner.http_connector(settings, components),
            injector: self.injector.clone(),
        })
    }
}

#[derive(Debug)]
struct FaultyConnector {
    inner: SharedHttpConnector,
    injector: std::sync::Arc<Injector>,
}

impl HttpConnector for FaultyConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        match self.injector.decide(&request) {
            Decision::Pass => self.inner.call(request),
            Decision::Cancel { items, reason } => {
                HttpConnectorFuture::ready(Ok(self.injector.cancel(items, reason)))
            }
            Decision::Throttle => HttpConnectorFuture::ready(Ok(throttle())),
        }
    }
}

/// `client` with its requests going through `injector`, and a retry partition of its own, so
/// that the retry quota its injected throttling spends is not another world's.
pub fn faulty_client(
    client: &aws_sdk_dynamodb::Client,
    injector: std::sync::Arc<Injector>,
) -> aws_sdk_dynamodb::Client {
    use aws_sdk_dynamodb::config::retry::RetryPartition;
    static PARTITIONS: AtomicU64 = AtomicU64::new(0);
    let partition = format!(
        "keypool-faults-{}",
        PARTITIONS.fetch_add(1, Ordering::SeqCst)
    );
    let config = client
        .config()
        .to_builder()
        .http_client(FaultyHttp::new(injector))
        .retry_partition(RetryPartition::new(partition))
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}
