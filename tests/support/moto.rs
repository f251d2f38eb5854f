//! The second engine: moto's server from PyPI, one per test process, single-threaded; and
//! the SQS queues and S3 buckets it also serves.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use keypool::schema::Tables;

struct Server {
    endpoint: String,
    // Holding the child (and its stdin) keeps the server alive; it exits when we do.
    _child: Child,
}

static SERVER: OnceLock<Server> = OnceLock::new();
static TABLES: AtomicUsize = AtomicUsize::new(0);

/// The Python that has moto: `KEYPOOL_MOTO_PYTHON`, else the workspace's `.venv`.
pub fn python() -> String {
    std::env::var("KEYPOOL_MOTO_PYTHON")
        .unwrap_or_else(|_| format!("{}/../.venv/bin/python", env!("CARGO_MANIFEST_DIR")))
}

/// The shared server's endpoint, starting it on first use.
pub fn endpoint() -> &'static str {
    &SERVER
        .get_or_init(|| {
            let script = format!("{}/moto/serve.py", env!("CARGO_MANIFEST_DIR"));
            let mut child = Command::new(python())
                .arg(&script)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "starting moto with {}: {e} (run tests/run.sh, which installs it)",
                        python()
                    )
                });
            let mut line = String::new();
            BufReader::new(child.stdout.take().expect("stdout"))
                .read_line(&mut line)
                .expect("moto prints its port");
            let port: u16 = line
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("moto said {line:?}"));
            Server {
                endpoint: format!("http://127.0.0.1:{port}"),
                _child: child,
            }
        })
        .endpoint
}

/// A client for the shared server. One thread answers every request in turn, so a race
/// test's burst queues for longer than the SDK's default timeouts allow.
pub fn client() -> aws_sdk_dynamodb::Client {
    use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
    let base = keypool::local::dynamo_client(endpoint());
    let config = base
        .config()
        .to_builder()
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(std::time::Duration::from_secs(60))
                .operation_attempt_timeout(std::time::Duration::from_secs(120))
                .build(),
        )
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

/// Table names no other world of this process uses.
pub fn fresh_tables() -> Tables {
    let n = TABLES.fetch_add(1, Ordering::Relaxed);
    let base = Tables::default();
    Tables {
        main: format!("{}-{n}", base.main),
        assignments: format!("{}-{n}", base.assignments),
        audit: format!("{}-{n}", base.audit),
    }
}

/// A new SQS queue on moto's server, by its URL.
pub async fn moto_queue() -> String {
    static QUEUES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let name = format!(
        "keypool-jobs-{}-{}",
        std::process::id(),
        QUEUES.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    );
    let answer = reqwest::Client::new()
        .post(endpoint())
        .header("content-type", "application/x-www-form-urlencoded")
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/sqs/aws4_request, \
             SignedHeaders=host, Signature=0",
        )
        .body(format!(
            "Action=CreateQueue&QueueName={name}&Version=2012-11-05"
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let url = answer
        .split("<QueueUrl>")
        .nth(1)
        .and_then(|rest| rest.split("</QueueUrl>").next())
        .unwrap_or_else(|| panic!("no queue URL in {answer}"));
    url.to_string()
}

/// An S3 bucket of its own on moto's server, with a client that addresses it path-style.
pub async fn s3_bucket() -> keypool::objects::S3Objects {
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
    static BUCKETS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .force_path_style(true)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .build();
    let client = aws_sdk_s3::Client::from_conf(config);
    let bucket = format!(
        "keypool-exports-{}-{}",
        std::process::id(),
        BUCKETS.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    );
    client.create_bucket().bucket(&bucket).send().await.unwrap();
    keypool::objects::S3Objects::new(client, bucket)
}

/// A KMS client for moto's server, and a new P-256 signing key there, by its id.
pub async fn kms_signing_key() -> (aws_sdk_kms::Client, String) {
    use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
    use aws_sdk_kms::types::{KeySpec, KeyUsageType};
    let config = aws_sdk_kms::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .build();
    let client = aws_sdk_kms::Client::from_conf(config);
    let key = client
        .create_key()
        .key_spec(KeySpec::EccNistP256)
        .key_usage(KeyUsageType::SignVerify)
        .send()
        .await
        .expect("a KMS key on moto");
    let id = key
        .key_metadata()
        .map(|m| m.key_id().to_string())
        .expect("the key's id");
    (client, id)
}
