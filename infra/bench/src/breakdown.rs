//! Where one learner's redemption spends its time: each part alone, one at a time, next to
//! the whole redemption through the API and the bare transaction of the same shape.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use aws_sdk_dynamodb::Client;
use keypool::domain::CounterId;
use keypool::identity::{TokenAuthority, UserId};
use keypool::keys::KeyCode;
use keypool::ops::redeem::{PoolCache, Redeemer, redeem};
use keypool::schema::Tables;
use keypool::settings::Settings;
use keypool::store::{Counters, DynamoStore};

use super::api::make_pool;
use super::measure::{ms, stats};
use super::redemption::{Timed, bare_requests, generate, our_redemptions, run_bare, run_ours};

/// The API server the figures talk to, and who they talk to it as.
pub(super) struct Served<'a> {
    pub(super) http: &'a reqwest::Client,
    pub(super) base: &'a str,
    pub(super) admin: &'a str,
    pub(super) authority: &'a TokenAuthority,
}

pub(super) async fn redemption_breakdown(
    n: usize,
    engine: &str,
    client: &Client,
    tables: &Tables,
    store: &Arc<DynamoStore>,
    served: Served<'_>,
) -> anyhow::Result<()> {
    let Served {
        http,
        base,
        admin,
        authority,
    } = served;
    let pool_id = make_pool(http, base, admin).await?;
    let mut keys = generate(http, base, admin, &pool_id, 2 * n).await?;
    let learner = |i: usize| UserId::parse(&format!("parts-{i}")).map_err(anyhow::Error::msg);

    // The HTTP hop alone: a request to the server that does nothing.
    let mut hop = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = http.get(format!("{base}/healthz")).send().await?;
        anyhow::ensure!(r.status().is_success(), "healthz answered {}", r.status());
        r.bytes().await?;
        hop.push(t.elapsed());
    }

    // The read round alone: a key and the learner's and the address's counters.
    let mut reads = Vec::with_capacity(n);
    for (i, key) in keys.iter().take(n).enumerate() {
        let code = KeyCode::parse(key).map_err(anyhow::Error::msg)?;
        let ids = [
            CounterId::Learner(learner(i)?),
            CounterId::address(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        ];
        let t = Instant::now();
        let (found, _) = store.keys_and_counters(&[code], &ids).await?;
        reads.push(t.elapsed());
        anyhow::ensure!(found.first().is_some_and(Option::is_some), "key not read");
    }

    // The engine's fixed cost: an HTTP request it answers without the database, and the
    // cheapest call through the SDK.
    let mut engine_hop = Vec::with_capacity(n);
    let mut sdk_calls = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        http.get(engine).send().await?.bytes().await?;
        engine_hop.push(t.elapsed());
        let t = Instant::now();
        client.list_tables().send().await?;
        sdk_calls.push(t.elapsed());
    }

    // A key alone, by GetItem and by BatchGetItem.
    let mut gets = Vec::with_capacity(n);
    let mut batch_gets = Vec::with_capacity(n);
    for key in keys.iter().take(n) {
        let pk = keypool::schema::key_pk(&KeyCode::parse(key).map_err(anyhow::Error::msg)?);
        let k = super::measure::HashMapKey::new(&pk, keypool::schema::KEY_SK).0;
        let t = Instant::now();
        let got = client
            .get_item()
            .table_name(&tables.main)
            .set_key(Some(k.clone()))
            .consistent_read(true)
            .send()
            .await?;
        gets.push(t.elapsed());
        anyhow::ensure!(got.item().is_some(), "key not read");
        let t = Instant::now();
        client
            .batch_get_item()
            .request_items(
                &tables.main,
                aws_sdk_dynamodb::types::KeysAndAttributes::builder()
                    .keys(k)
                    .consistent_read(true)
                    .build()?,
            )
            .send()
            .await?;
        batch_gets.push(t.elapsed());
    }

    // The redemption without HTTP (the domain operation on the store), through the API, and
    // the bare transaction, in turn, so that the engine's slowing as it fills weighs on all
    // three alike.
    let settings = Settings::default();
    let cache = PoolCache::new();
    let mut bare_work = bare_requests(store, http, base, admin, n, "parts").await?;
    let mut our_work = our_redemptions(http, base, admin, authority, n, "parts").await?;
    let mut direct = Vec::with_capacity(n);
    let mut whole = Timed::default();
    let mut bare = Timed::default();
    for i in 0..n {
        let key = keys.pop().context("a key")?;
        let learner_id = learner(100_000 + i)?;
        let who = Redeemer {
            learner: &learner_id,
            address: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        };
        let t = Instant::now();
        redeem(&**store, &settings, &cache, &who, &key, chrono::Utc::now()).await?;
        direct.push(t.elapsed());

        whole.add(run_ours(http, base, vec![our_work.pop().context("a key")?], 1).await?);
        bare.add(run_bare(client, vec![bare_work.pop().context("a bare request")?], 1).await?);
    }
    let bare = bare.stats();
    let p50 = |v: Vec<Duration>| stats(v, Duration::from_secs(1)).p50;
    let bare_p50 = bare.p50.as_secs_f64();
    out!("\n## Where one learner's redemption spends its time (p50 of {n}, one at a time)\n");
    out!("| part | p50 | of the bare transaction |");
    out!("|---|---|---|");
    for (part, d) in [
        ("HTTP round trip to `/healthz`", p50(hop)),
        (
            "HTTP round trip to the engine (no database)",
            p50(engine_hop),
        ),
        ("ListTables through the SDK", p50(sdk_calls)),
        ("GetItem of a key", p50(gets)),
        ("BatchGetItem of a key", p50(batch_gets)),
        (
            "the read round (BatchGetItem: key + 2 counters)",
            p50(reads),
        ),
        (
            "the redemption operation on the store, no HTTP",
            p50(direct),
        ),
        ("the redemption through the API", whole.stats().p50),
        (
            "the bare transaction: our very request, sent alone",
            bare.p50,
        ),
    ] {
        out!("| {part} | {} | {:.2} |", ms(d), d.as_secs_f64() / bare_p50);
    }
    out!(
        "\nThe bare transaction, here and in the redemption rows above, is the very \
         TransactWriteItems our store sends on the happy path (`DynamoStore::redemption_items`: \
         the key's update with its index key, a count shard, the assignment, the guard, the \
         pointer and the limit checks), built before the clock starts and sent alone with the \
         SDK, for keys added through the API like ours. Ours is the whole request: HTTP, \
         token, the operation, and the answer. The happy path sends that transaction and \
         reads nothing: a generated key's tag names its pool once the process has read the \
         pool (the first redemption of each pool reads the key)."
    );
    Ok(())
}
