//! A fresh world per test: its own in-memory DynamoDB engine on its own port, the tables,
//! the store, a clock the test moves, and the whole API router.

use std::sync::Arc;

use axum::Router;
use axum::http::{Method, StatusCode};
use keypool::domain::MaxOpenJobs;
use keypool::http::{AppState, Authenticator, app};
use keypool::identity::{OrgId, Role, TokenAuthority, UserId};
use keypool::jobs::Jobs;
use keypool::local::engine::EmbeddedEngine;
use keypool::local::jobs::{LocalJobs, Settings};
use keypool::objects::{LocalObjects, ObjectStore};
use keypool::schema::{self, Tables};
use keypool::store::DynamoStore;
use keypool::store::prelude::*;
use keypool::time::{Clock, ManualClock, Timestamp};
use serde_json::json;

mod http;
mod key_jobs;
mod lambda;
pub mod moto;
pub mod smtp;
pub mod webhooks;

pub use http::{Reply, send};
pub use key_jobs::Queued;
pub use keypool_faults as faults;
pub use keypool_faults::{Faults, Injector};
pub use lambda::{apigw_event, run_as_lambda, seed_acme_pool};
pub use moto::{kms_signing_key, moto_queue, s3_bucket};

/// The fraction of transactions cancelled for conflicts in the races run with injected faults.
pub const RACE_CONFLICTS: f64 = 0.2;

/// Declares a race twice: `$plain` on a plain world, and `$conflicted` on one whose engine
/// cancels [`RACE_CONFLICTS`] of all transactions for conflicts, as DynamoDB does under
/// contention, checking that some were injected (the race proves nothing about retries
/// otherwise). `$race` is an `async fn(Arc<World>)` that runs the race and checks it.
#[macro_export]
macro_rules! race_test {
    ($(#[$doc:meta])* $plain:ident, $conflicted:ident, $race:ident, threads = $threads:literal) => {
        $(#[$doc])*
        #[tokio::test(flavor = "multi_thread", worker_threads = $threads)]
        async fn $plain() {
            $race(::std::sync::Arc::new($crate::World::new().await)).await;
        }

        $(#[$doc])*
        ///
        /// With a fifth of all transactions cancelled for conflicts.
        #[tokio::test(flavor = "multi_thread", worker_threads = $threads)]
        async fn $conflicted() {
            let faults = $crate::Faults::conflicts($crate::RACE_CONFLICTS);
            let w = ::std::sync::Arc::new($crate::World::with_faults(faults).await);
            $race(w.clone()).await;
            let injected = w.injector().conflicts();
            assert!(injected > 0, "no conflict was injected");
            eprintln!("{injected} transactions cancelled, {} requests passed", w.injector().passed());
        }
    };
}

/// One test's private world.
pub struct World {
    pub store: Arc<DynamoStore>,
    pub tables: Tables,
    pub clock: ManualClock,
    pub authority: TokenAuthority,
    pub app: Router,
    /// Export files, in a folder of this world's own.
    pub objects: Arc<LocalObjects>,
    /// The world's job runner, as the local server's.
    pub jobs: LocalJobs,
    /// The most open jobs an organization of this world may have.
    pub max_open_jobs: MaxOpenJobs,
    /// Pools' settings as the world's direct redemptions last read them.
    pub pools: Arc<keypool::ops::redeem::PoolCache>,
    /// Signs the world's launch tokens (issuer `http://keypool.test`), with a key of its own.
    pub launch: Arc<keypool::launch::LocalSigner>,
    /// The world's webhook sender (private targets allowed, for the tests' receivers) and its
    /// local delivery queue: the first retry comes 30 s (of the world's clock) after a failure.
    pub webhooks: keypool::http::WebhookParts,
    /// What the world's webhook sender resolves names to.
    pub names: Arc<webhooks::Names>,
    files: std::path::PathBuf,
    /// The webhook sender's task, stopped with the world so it never polls gone tables.
    sending: tokio::task::JoinHandle<()>,
    /// The faults injected into this world's requests to DynamoDB, when it was made with some.
    injector: Option<Arc<Injector>>,
    // Last, so the engine outlives the client that talks to it.
    engine: EmbeddedEngine,
}

/// The world's token secret; its download links are signed with a key derived from it.
const SECRET: &[u8] = b"test-secret-test-secret-test-secret!";

/// The worlds' job runner works key jobs in turns of one chunk each, so every job a test runs
/// through it is cut into many turns and resumed from its stored progress each time.
const RUNNER: Settings = Settings {
    turn: std::time::Duration::from_millis(1),
    export_workers: 2,
};

static WORLDS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Drop for World {
    /// On moto, the world's tables go with it: moto's transactions copy every table, so
    /// tables left behind would slow every later test of the process.
    fn drop(&mut self) {
        self.sending.abort();
        let _ = std::fs::remove_dir_all(&self.files);
        if !self.is_moto() {
            return;
        }
        if let Some(injector) = &self.injector {
            injector.set(Faults::NONE);
        }
        let client = self.store.client().clone();
        let tables = [
            self.tables.main.clone(),
            self.tables.assignments.clone(),
            self.tables.audit.clone(),
        ];
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                for table in tables {
                    let _ = client.delete_table().table_name(table).send().await;
                }
            });
        })
        .join();
    }
}

impl World {
    /// A new world: a new in-memory embedded engine, or, when `KEYPOOL_TEST_ENGINE=moto`,
    /// fresh tables on the shared single-threaded moto server.
    pub async fn new() -> Self {
        Self::with_max_open_jobs(MaxOpenJobs::DEFAULT.get()).await
    }

    /// A new world whose organizations may have at most `max_open` open jobs.
    pub async fn with_max_open_jobs(max_open: u64) -> Self {
        Self::build(max_open, None).await
    }

    /// A new world whose requests to DynamoDB meet `faults` (the world's injector changes
    /// them later). Its tables are made before any fault is injected.
    pub async fn with_faults(faults: Faults) -> Self {
        let seed = Injector::seed_from_env();
        eprintln!("injecting {faults:?} with seed {seed} (KEYPOOL_FAULT_SEED={seed} replays it)");
        let injector = Arc::new(Injector::new(faults, seed));
        Self::build(MaxOpenJobs::DEFAULT.get(), Some(injector)).await
    }

    /// The world's fault injector; panics for a world made without one.
    pub fn injector(&self) -> &Injector {
        self.injector
            .as_deref()
            .expect("a world made with World::with_faults")
    }

    async fn build(max_open: u64, injector: Option<Arc<Injector>>) -> Self {
        let max_open_jobs = MaxOpenJobs::new(max_open).expect("a cap of at least one job");
        // Errors the service logs show up in a failing test's output.
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter("warn")
            .try_init();
        let engine = EmbeddedEngine::memory().expect("engine starts");
        let (client, tables) = match std::env::var("KEYPOOL_TEST_ENGINE").as_deref() {
            Ok("moto") => (moto::client(), moto::fresh_tables()),
            Ok("dynoxide") | Err(_) => (
                keypool::local::dynamo_client(engine.endpoint()),
                Tables::default(),
            ),
            Ok(other) => panic!("unknown KEYPOOL_TEST_ENGINE {other:?}: use dynoxide or moto"),
        };
        schema::ensure_tables(&client, &tables)
            .await
            .expect("tables are created");
        // The webhook sender polls for due deliveries in the background; it reads through a
        // client of its own, so a test counting a request's operations counts only the request's.
        let background = Arc::new(DynamoStore::new(client.clone(), tables.clone()));
        let client = match &injector {
            Some(injector) => faults::faulty_client(&client, injector.clone()),
            None => client,
        };
        let store = Arc::new(DynamoStore::new(client, tables.clone()));
        let clock = ManualClock::new(chrono::Utc::now());
        let authority = TokenAuthority::new(SECRET);
        // Export files go to a folder of this world, linked from a host that never resolves:
        // tests fetch links through the router.
        let files = std::env::temp_dir().join(format!(
            "keypool-test-files-{}-{}",
            std::process::id(),
            WORLDS.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        let objects = Arc::new(LocalObjects::new(
            &files,
            "http://keypool.test",
            keypool::identity::TokenAuthority::for_download_links(SECRET),
        ));
        let (jobs, _) = LocalJobs::start_with(
            store.clone(),
            objects.clone(),
            Arc::new(clock.clone()),
            RUNNER,
        );
        let launch = Arc::new(
            keypool::launch::LocalSigner::new(
                "http://keypool.test",
                &[&keypool::launch::LocalSigner::generate_key().expect("a launch key")],
            )
            .expect("a launch signer"),
        );
        // Webhooks go where the tests' names say; the receivers run on 127.0.0.1, so this
        // world's sender allows private targets (`strict_sender` does not).
        let names = Arc::new(webhooks::Names::standard());
        let sender = keypool::webhooks::Sender::new(
            names.clone(),
            keypool::webhooks::Reach {
                allow_private: true,
            },
        )
        .expect("a webhook sender");
        let (deliveries, sending) = keypool::local::webhooks::start(
            background,
            sender.clone(),
            Arc::new(clock.clone()),
            keypool::local::webhooks::Settings {
                first_retry: chrono::Duration::seconds(30),
                tick: std::time::Duration::from_millis(50),
            },
        );
        let webhook_parts = keypool::http::WebhookParts {
            sender: Arc::new(sender),
            deliveries: Arc::new(deliveries),
        };
        let state = AppState {
            store: store.clone(),
            auth: Arc::new(Authenticator::Local(Box::new(authority.clone()))),
            clock: Arc::new(clock.clone()),
            jobs: Arc::new(jobs.clone()),
            objects: objects.clone(),
            settings: Default::default(),
            max_open_jobs,
            launch: launch.clone(),
            webhooks: webhook_parts.clone(),
            mail: keypool::mail::MailParts::none(),
        };
        Self {
            store,
            tables,
            clock,
            authority,
            app: app(state).merge(keypool::http::local_files(objects.clone())),
            objects,
            jobs,
            max_open_jobs,
            pools: Arc::default(),
            launch,
            webhooks: webhook_parts,
            names,
            files,
            sending,
            injector,
            engine,
        }
    }

    /// Volume tests (10,000 keys, 1,000 items) run on the embedded engine only: moto copies
    /// every table for each transaction, so they take minutes and gigabytes there, and test
    /// nothing about the engines' semantics that the other tests do not.
    pub fn skip_volume_on_moto(&self) -> bool {
        if self.is_moto() {
            eprintln!("volume test: runs on the embedded engine only");
        }
        self.is_moto()
    }

    /// True when this world runs on moto rather than the embedded engine.
    pub fn is_moto(&self) -> bool {
        std::env::var("KEYPOOL_TEST_ENGINE").as_deref() == Ok("moto")
    }

    /// A billing follower of this world's assignments stream, as the local server runs it.
    pub fn follower(&self) -> keypool::local::follower::StreamFollower {
        let store: Arc<dyn Store> = self.store.clone();
        keypool::local::follower::StreamFollower::new(
            self.store.client().clone(),
            keypool::local::streams_client(self.endpoint()),
            store,
            self.tables.assignments.clone(),
        )
        .with_webhooks(self.webhooks.deliveries.clone())
    }

    /// The API with exports written to `objects` by a job runner of their own.
    pub fn app_with(&self, objects: Arc<dyn ObjectStore>) -> Router {
        let (jobs, _) = LocalJobs::start_with(
            self.store.clone(),
            objects.clone(),
            Arc::new(self.clock.clone()),
            RUNNER,
        );
        self.app_with_jobs(Arc::new(jobs), objects)
    }

    /// The API with its jobs handed to `jobs` (a queue that runs nothing, say) and export
    /// files written to `objects`.
    pub fn app_with_jobs(&self, jobs: Arc<dyn Jobs>, objects: Arc<dyn ObjectStore>) -> Router {
        app(AppState {
            store: self.store.clone(),
            auth: Arc::new(Authenticator::Local(Box::new(self.authority.clone()))),
            clock: Arc::new(self.clock.clone()),
            jobs,
            objects,
            settings: Default::default(),
            max_open_jobs: self.max_open_jobs,
            launch: self.launch.clone(),
            webhooks: self.webhooks.clone(),
            mail: keypool::mail::MailParts::none(),
        })
    }

    /// A webhook sender with the production policy (public targets only) over the world's
    /// names.
    pub fn strict_sender(&self) -> keypool::webhooks::Sender {
        keypool::webhooks::Sender::new(self.names.clone(), keypool::webhooks::Reach::default())
            .expect("a webhook sender")
    }

    /// An export once it is done or failed (its job runs in the background); panics after 120 s.
    pub async fn finished_export(&self, org: &str, export_id: &str) -> keypool::domain::Export {
        use keypool::domain::ExportStatus;
        let org = OrgId::parse(org).unwrap();
        let id = keypool::domain::ExportId::parse(export_id).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let export = self.store.get_export(&org, &id).await.unwrap().unwrap();
            if matches!(export.status, ExportStatus::Done | ExportStatus::Failed) {
                return export;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "export still {:?}",
                export.status
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// The engine's endpoint, for processes that talk to it (Lambda binaries).
    pub fn endpoint(&self) -> &str {
        match std::env::var("KEYPOOL_TEST_ENGINE").as_deref() {
            Ok("moto") => moto::endpoint(),
            _ => self.engine.endpoint(),
        }
    }

    /// A function's routes as Lambda serves them, with that function's own state (`part`
    /// picks it, for example `AppState::pool_admin`): identity from API Gateway's JWT claims.
    pub fn lambda_app<S>(&self, routes: Router<S>, part: fn(&AppState) -> S) -> Router
    where
        S: Clone + Send + Sync + 'static,
        Arc<Authenticator>: axum::extract::FromRef<S>,
    {
        let state = AppState::new(
            self.store.clone(),
            Authenticator::ApiGateway(Default::default()),
            Arc::new(self.clock.clone()),
        )
        .expect("an app state");
        keypool::http::service(routes, part(&state))
    }

    /// The store as the domain sees it.
    pub fn dyn_store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// The world's current time.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// A token for an admin of `org` that expired two hours ago, signed with the world's
    /// secret (`mint` refuses to make one).
    pub fn expired_admin(&self, org: &str) -> String {
        let now = chrono::Utc::now().timestamp();
        let claims = json!({
            "sub": format!("admin-of-{org}"),
            "org": org,
            "role": "admin",
            "iss": keypool::identity::LOCAL_ISSUER,
            "iat": now - 3 * 3600,
            "nbf": now - 3 * 3600,
            "exp": now - 2 * 3600,
        });
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    }

    /// A token for an admin of `org`.
    pub fn admin(&self, org: &str) -> String {
        self.authority
            .mint(
                &UserId::parse(&format!("admin-of-{org}")).unwrap(),
                Some(&OrgId::parse(org).unwrap()),
                Role::Admin,
                chrono::Duration::hours(1),
            )
            .unwrap()
    }

    /// A token for a learner.
    pub fn learner(&self, sub: &str) -> String {
        self.authority
            .mint(
                &UserId::parse(sub).unwrap(),
                Some(&OrgId::parse("learners").unwrap()),
                Role::Learner,
                chrono::Duration::hours(1),
            )
            .unwrap()
    }

    /// A token for a member of `org`'s staff in `role` (admin, viewer, finance).
    pub fn staff(&self, org: &str, role: Role) -> String {
        self.authority
            .mint(
                &UserId::parse(&format!("{}-of-{org}", role.as_str())).unwrap(),
                Some(&OrgId::parse(org).unwrap()),
                role,
                chrono::Duration::hours(1),
            )
            .unwrap()
    }

    /// Overwrites one attribute of an existing item of the main table with a string, straight
    /// through the engine, as a damaged or hand-written item would look.
    pub async fn corrupt(&self, pk: String, sk: String, attribute: &str, value: &str) {
        use aws_sdk_dynamodb::types::AttributeValue;
        self.store
            .client()
            .update_item()
            .table_name(&self.tables.main)
            .key(schema::PK, AttributeValue::S(pk))
            .key(schema::SK, AttributeValue::S(sk))
            .update_expression("SET #a = :bad")
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_names("#a", attribute)
            .expression_attribute_values(":bad", AttributeValue::S(value.into()))
            .send()
            .await
            .expect("the item exists and is overwritten");
    }

    /// Creates a course and an active pool (started an hour ago, 30 days to go) for `org`.
    pub async fn pool(&self, org: &str, days: u32) -> (String, String) {
        let admin = self.admin(org);
        let course = self
            .call(
                Method::POST,
                "/v1/courses",
                Some(&admin),
                Some(json!({"title": "Rust 101"})),
            )
            .await;
        assert_eq!(course.status, StatusCode::CREATED, "{:?}", course.body);
        let course_id = course.body["course_id"].as_str().unwrap().to_string();
        let now = self.now();
        let pool = self
            .call(
                Method::POST,
                "/v1/pools",
                Some(&admin),
                Some(json!({
                    "name": "Spring cohort",
                    "course_id": course_id,
                    "starts_at": keypool::time::format(&(now - chrono::Duration::hours(1))),
                    "expires_at": keypool::time::format(&(now + chrono::Duration::days(30))),
                    "content_availability_days": days,
                })),
            )
            .await;
        assert_eq!(pool.status, StatusCode::CREATED, "{:?}", pool.body);
        (
            course_id,
            pool.body["pool_id"].as_str().unwrap().to_string(),
        )
    }

    /// Generates `count` keys into a pool and returns them as shown.
    pub async fn generate(&self, org: &str, pool_id: &str, count: usize) -> Vec<String> {
        let reply = self
            .call(
                Method::POST,
                &format!("/v1/pools/{pool_id}/keys/generate"),
                Some(&self.admin(org)),
                Some(json!({ "count": count })),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
        reply.body["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().to_string())
            .collect()
    }
}

/// An admin of `org` making changes outside a request (tests that call operations directly),
/// as the audit records them.
pub fn admin_of(org: &OrgId) -> keypool::domain::Caller {
    keypool::domain::Caller::new(org.clone(), "admin-1", Role::Admin)
}

/// An audit record for tests that write to the store directly.
pub fn test_record() -> keypool::domain::AuditRecord {
    let org = OrgId::parse("audit-test").expect("a valid org id");
    admin_of(&org).record(
        keypool::domain::AuditAction::PoolUpdated,
        keypool::domain::Resource::new("test", "test"),
        keypool::domain::Summary::new(),
        chrono::Utc::now(),
    )
}
