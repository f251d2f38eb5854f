//! `keypool-local`: the whole product on one machine.
//!
//! `serve` runs every function's router on one port over the embedded DynamoDB engine (or any
//! DynamoDB endpoint named by `AWS_ENDPOINT_URL_DYNAMODB` / `AWS_ENDPOINT_URL`); `token` prints
//! a token the server accepts. (`keypool-bench`, a binary of its own, measures it.)

mod connections;
mod console;
mod data_dir;
mod http_limits;
mod origins;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use keypool::http::{AppState, Authenticator, app, local_files};
use keypool::identity::{OrgId, Role, TokenAuthority, UserId};
use keypool::local::engine::EmbeddedEngine;
use keypool::local::follower::StreamFollower;
use keypool::local::jobs::LocalJobs;
use keypool::objects::LocalObjects;
use keypool::ops::schedule;
use keypool::schema::{self, Tables};
use keypool::store::DynamoStore;
use keypool::store::prelude::*;
use keypool::time::{Clock, SystemClock};

#[derive(Parser)]
#[command(name = "keypool-local", version, about = "KeyPool on one machine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API on loopback, with data in DATA_DIR.
    Serve {
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1")]
        host: std::net::IpAddr,
        /// How often every changed pool is exported into DATA_DIR/exports (e.g. 24h, 30m,
        /// 90s); 0 turns it off.
        #[arg(long, default_value = "24h", value_parser = parse_interval)]
        export_every: std::time::Duration,
        /// Offer the demo sign-in: anyone who reaches the server can sign in as the demo
        /// organization's admin or learners, and no one else. For trying KeyPool out.
        #[arg(long)]
        demo: bool,
        /// The address people reach the server at, such as https://keys.example.org behind a
        /// proxy: the server answers for its host too (besides localhost), and download links
        /// start with it.
        #[arg(long, value_parser = parse_public_url)]
        public_url: Option<reqwest::Url>,
        /// Let webhooks go to http URLs and to private, loopback and link-local addresses
        /// (a receiver on this machine or its network). Never where untrusted admins sign in.
        #[arg(long)]
        allow_private_webhooks: bool,
        /// Send letters through this SMTP server (smtp://host:587, smtp://host?tls=required,
        /// smtps://user:pass@host) instead of writing them into DATA_DIR/outbox.
        #[arg(long)]
        smtp_url: Option<String>,
        /// Who letters come from: `Name <address>` or an address.
        #[arg(long, default_value = "KeyPool <keys@keypool.localhost>")]
        mail_from: String,
    },
    /// Print a token that the server with the same DATA_DIR accepts.
    Token {
        /// The organization (required for admins).
        #[arg(long)]
        org: Option<String>,
        #[arg(long, value_enum)]
        role: RoleArg,
        /// The user's id.
        #[arg(long)]
        sub: String,
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
        /// How long the token is valid, in hours (at most a year).
        #[arg(long, default_value_t = 24 * 30,
              value_parser = clap::value_parser!(i64).range(1..=keypool::identity::MAX_TOKEN_HOURS))]
        hours: i64,
    },
    /// Print the API's OpenAPI document (what `GET /v1/openapi.json` answers).
    Openapi,
    /// Start a rotation of the key that signs launch tokens: a new key signs from the
    /// server's next start, and the old one stays published beside it until the next rotation.
    RotateLaunchKey {
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum RoleArg {
    Admin,
    Viewer,
    Finance,
    Learner,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_http=warn,aws=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Serve {
            data_dir,
            port,
            host,
            export_every,
            demo,
            public_url,
            allow_private_webhooks,
            smtp_url,
            mail_from,
        } => {
            let options = ServeOptions {
                addr: SocketAddr::new(host, port),
                export_every,
                demo,
                public_url,
                allow_private_webhooks,
                smtp_url,
                mail_from,
            };
            serve(&data_dir, options).await
        }
        Command::Token {
            org,
            role,
            sub,
            data_dir,
            hours,
        } => {
            let role = match role {
                RoleArg::Admin => Role::Admin,
                RoleArg::Viewer => Role::Viewer,
                RoleArg::Finance => Role::Finance,
                RoleArg::Learner => Role::Learner,
            };
            let org = org
                .as_deref()
                .map(OrgId::parse)
                .transpose()
                .map_err(anyhow::Error::msg)?;
            anyhow::ensure!(
                !role.is_staff() || org.is_some(),
                "a {} token needs --org",
                role.as_str()
            );
            let sub = UserId::parse(&sub).map_err(anyhow::Error::msg)?;
            let authority = TokenAuthority::new(&data_dir::load_or_create_secret(&data_dir)?);
            println!(
                "{}",
                authority.mint(&sub, org.as_ref(), role, chrono::Duration::hours(hours))?
            );
            Ok(())
        }
        Command::Openapi => {
            print!("{}", keypool::http::openapi::document_json());
            Ok(())
        }
        Command::RotateLaunchKey { data_dir } => {
            data_dir::rotate_launch_key(&data_dir)?;
            println!(
                "a new launch key signs from the server's next start; the old one stays published beside it"
            );
            Ok(())
        }
    }
}

/// How `serve` was asked to run, besides its data folder.
struct ServeOptions {
    addr: SocketAddr,
    export_every: std::time::Duration,
    demo: bool,
    public_url: Option<reqwest::Url>,
    allow_private_webhooks: bool,
    smtp_url: Option<String>,
    mail_from: String,
}

async fn serve(data_dir: &Path, options: ServeOptions) -> anyhow::Result<()> {
    let ServeOptions {
        addr,
        export_every,
        demo,
        public_url,
        allow_private_webhooks,
        smtp_url,
        mail_from,
    } = options;
    // Mail: an outbox of .eml files under the data folder, or an SMTP server.
    let from = keypool::mail::MailFrom::parse(&mail_from).map_err(anyhow::Error::msg)?;
    let mail = match &smtp_url {
        Some(url) => keypool::mail::MailParts::sending(Arc::new(
            keypool::mail::Smtp::from_url(url, from).map_err(anyhow::Error::msg)?,
        )),
        None => keypool::mail::MailParts::outbox(keypool::mail::Outbox::new(
            data_dir.join("outbox"),
            from,
        )),
    };
    let secret = data_dir::load_or_create_secret(data_dir)?;
    // Malformed limits stop the server before it opens anything.
    let settings = Arc::new(keypool::settings::Settings::from_env()?);
    let limits = connections::Limits::from_env()?;
    let max_open_jobs = keypool::setup::max_open_jobs()?;
    let external = std::env::var("AWS_ENDPOINT_URL_DYNAMODB")
        .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
        .ok();
    // The engine must outlive the server; it stops when this binding drops.
    let (client, streams, engine, store_name) = match external {
        Some(endpoint) => {
            let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
            // The stream is served where the table is, whichever variable named it.
            let streams = aws_sdk_dynamodbstreams::Client::from_conf(
                aws_sdk_dynamodbstreams::config::Builder::from(&config)
                    .endpoint_url(&endpoint)
                    .build(),
            );
            (
                keypool::setup::dynamo_client(&config),
                streams,
                None,
                format!("DynamoDB at {endpoint}"),
            )
        }
        None => {
            let path = data_dir.join("keypool.db");
            let engine = EmbeddedEngine::open(&path)?;
            let client = keypool::local::dynamo_client(engine.endpoint());
            let streams = keypool::local::streams_client(engine.endpoint());
            (
                client,
                streams,
                Some(engine),
                format!("embedded DynamoDB in {}", path.display()),
            )
        }
    };
    let tables = Tables::default();
    schema::ensure_tables(&client, &tables)
        .await
        .context("creating the tables")?;
    if engine.is_some() {
        data_dir::protect_database(&data_dir.join("keypool.db"))?;
    }
    let store: Arc<dyn Store> = Arc::new(
        DynamoStore::new(client.clone(), tables.clone())
            .with_audit_retention(settings.audit_retention_days),
    );
    let audit_log: Arc<dyn AuditLog> = store.clone();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    // Billing and stats: the same handlers as the Lambda functions, fed from the assignments
    // table's stream.
    let (stop_billing, billing_stopped) = tokio::sync::watch::channel(());
    // Webhooks: events of the stream fanned out to endpoints, and sent by a sender of this
    // process that finds every waiting delivery again after a restart.
    let sender = keypool::webhooks::Sender::new(
        Arc::new(keypool::webhooks::SystemResolver),
        keypool::webhooks::Reach {
            allow_private: allow_private_webhooks,
        },
    )?;
    let (deliveries, _sender_task) = keypool::local::webhooks::start(
        store.clone(),
        sender.clone(),
        clock.clone(),
        keypool::local::webhooks::Settings {
            first_retry: settings.webhook_first_retry,
            tick: keypool::local::webhooks::DEFAULT_TICK,
        },
    );
    let webhooks = keypool::http::WebhookParts {
        sender: Arc::new(sender),
        deliveries: Arc::new(deliveries),
    };
    let follower = StreamFollower::new(client, streams, store.clone(), tables.assignments)
        .with_webhooks(webhooks.deliveries.clone());
    let billing = tokio::spawn(
        follower.run(keypool::local::follower::DEFAULT_POLL, async move {
            let mut stopped = billing_stopped;
            let _ = stopped.changed().await;
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    let bound = listener.local_addr()?;
    // Where this machine reaches the server; a wildcard address is reached through loopback.
    let local_url = if bound.ip().is_unspecified() {
        format!(
            "http://{}",
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), bound.port())
        )
    } else {
        format!("http://{bound}")
    };
    // Links in export answers point to the public URL, or here.
    let link_base = public_url
        .as_ref()
        .map_or_else(|| local_url.clone(), |u| u.origin().ascii_serialization());
    // Exports: files under the data folder, written by a job runner of this process that
    // resumes what a previous run left unfinished, and on a schedule.
    let objects = Arc::new(LocalObjects::new(
        data_dir,
        link_base.clone(),
        TokenAuthority::for_download_links(&secret),
    ));
    let (jobs, _worker) = LocalJobs::start(store.clone(), objects.clone(), clock.clone());
    let resumed = jobs.resume(store.as_ref(), clock.as_ref()).await?;
    if resumed > 0 {
        tracing::info!(resumed, "resuming unfinished jobs");
    }
    let scheduler = (!export_every.is_zero()).then(|| {
        let (store, jobs, clock) = (store.clone(), jobs.clone(), clock.clone());
        tokio::spawn(async move {
            // The first run is one interval after start, not at every restart.
            let mut ticks =
                tokio::time::interval_at(tokio::time::Instant::now() + export_every, export_every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                if let Err(e) = schedule::schedule(store.as_ref(), &jobs, clock.now()).await {
                    tracing::warn!(error = %e, "scheduled export will be retried");
                }
            }
        })
    });
    let state = AppState {
        store: store.clone(),
        auth: Arc::new(Authenticator::Local(Box::new(TokenAuthority::new(&secret)))),
        clock,
        jobs: Arc::new(jobs),
        objects: objects.clone(),
        settings,
        max_open_jobs,
        // Launch tokens name this server, as its public URL or its local one, as issuer.
        launch: Arc::new(keypool::launch::LocalSigner::new(
            link_base,
            &data_dir::load_or_create_launch_keys(data_dir)?
                .iter()
                .map(Vec::as_slice)
                .collect::<Vec<_>>(),
        )?),
        webhooks,
        mail,
    };
    let origins = origins::Origins::new(bound, public_url.as_ref());
    // On stdout, with the bound port (which --port 0 picks), for people and scripts alike.
    let public = public_url
        .as_ref()
        .map(|u| format!(", public at {}", u.origin().ascii_serialization()))
        .unwrap_or_default();
    println!("KeyPool listening on {local_url} ({store_name}{public})");
    if bound.ip().is_unspecified() && public_url.is_none() {
        tracing::warn!(
            "listening on every address, but answering only for localhost: give --public-url \
             to be reached by another name"
        );
    }
    if demo {
        tracing::warn!("demo sign-in on: anyone who reaches the server can sign in as a demo user");
    }
    let console = console::Console::from_env(demo.then(|| console::DemoSignIn {
        authority: Arc::new(TokenAuthority::new(&secret)),
        audit: audit_log.clone(),
    }));
    let router = app(state)
        .merge(local_files(objects))
        .merge(console::routes(console))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(origins),
            origins::guard,
        ));
    connections::serve(listener, router, limits, shutdown_signal()).await;
    if let Some(scheduler) = scheduler {
        scheduler.abort();
    }
    // The follower finishes the batch in hand and saves its checkpoint before the engine stops.
    let _ = stop_billing.send(());
    let _ = billing.await;
    Ok(())
}

/// `0`, or a number with a unit: `s`, `m`, `h`, `d` (seconds without one).
fn parse_interval(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not an interval like 24h, 30m or 0"))?;
    let seconds = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        _ => return Err(format!("{text:?}: the unit is s, m, h or d")),
    }
    .ok_or_else(|| format!("{text:?} is too long an interval"))?;
    Ok(std::time::Duration::from_secs(seconds))
}

/// An origin, `http(s)://host[:port]`: the console and the API live at its root.
fn parse_public_url(text: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "{text:?}: the URL starts with http:// or https:// and a host"
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{text:?}: no user or password in the URL"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "{text:?}: only scheme, host and port, such as https://keys.example.org; the server \
             is served at the root of its address"
        ));
    }
    Ok(url)
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
