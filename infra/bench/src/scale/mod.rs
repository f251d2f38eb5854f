//! The sharding simulation: DynamoDB's transaction-conflict model run in virtual time, so that
//! a pool's count shards can be sized without an AWS account (docs/scale.md has the model it
//! checks).
//!
//! An item admits one transaction at a time: a transaction holds every item it touches for
//! `hold`, and one that reaches a held item is cancelled with TransactionConflict. The client
//! retries like `shared/src/store/dynamo/transact.rs`: full jitter over a delay that starts at
//! 5 ms and doubles up to 500 ms, 10 attempts, then 409 `write_conflict`. A redemption is one
//! read round and then its transaction, which touches one count shard chosen at random (kept on
//! retry, since `transact` resends the same items). Every other item a redemption writes (key,
//! assignment, guard, pointer, the learner's own counter) is its own, so it cannot conflict;
//! learners behind one client address share nothing more, since its counter is in no
//! transaction. `addresses` models the design before that: the address's counter checked in
//! every transaction, for the comparison row.
//! Generation runners write batches of 99 keys and one shard update meanwhile.
//!
//! A discrete-event simulation with a seeded generator: the same scenario gives the same
//! outcome, and a whole table takes well under a second.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use keypool::domain::DEFAULT_SHARDS;

/// Virtual time, in microseconds.
type Micros = u64;

/// Attempts of one transaction before 409 (`CONFLICT_ATTEMPTS` in the store).
const ATTEMPTS: u32 = 10;
/// The first backoff delay, doubled after each retry.
const FIRST_DELAY: Micros = 5_000;
/// The longest backoff delay.
const MAX_DELAY: Micros = 500_000;
/// Keys a generation transaction puts beside its shard update.
const KEYS_PER_BATCH: u64 = 99;
/// One network round trip between the function and DynamoDB in the same Region.
const RTT: Micros = 2_000;
/// Redemptions started in each row of the table.
const REDEMPTIONS: usize = 20_000;

/// How redemptions come.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Load {
    /// This many learners at once, each starting its next redemption when the last one ends.
    Learners(usize),
    /// Redemptions arriving at random (Poisson) at this rate, each from a new learner.
    PerSec(f64),
}

/// One run's setting.
#[derive(Clone, Copy, Debug)]
pub(super) struct Scenario {
    /// Count shards of the pool.
    pub(super) shards: usize,
    pub(super) load: Load,
    /// As before the address left the transaction: client addresses the learners share, whose
    /// counters every transaction checks; `None` as landed (no transaction checks one).
    pub(super) addresses: Option<usize>,
    /// Whether a retry picks its shard anew (`transact` today resends the same items).
    pub(super) repick: bool,
    /// Generation runners writing key batches into the same pool meanwhile.
    pub(super) generators: usize,
    /// Redemptions started in all.
    pub(super) redemptions: usize,
    /// How long a transaction holds its items.
    pub(super) hold: Micros,
    /// One round trip between the function and DynamoDB.
    pub(super) rtt: Micros,
    /// Seed of the shard choices, the arrivals and the jitter.
    pub(super) seed: u64,
}

impl Scenario {
    fn new(shards: usize, load: Load, hold: Micros, seed: u64) -> Self {
        Self {
            shards,
            load,
            addresses: None,
            repick: false,
            generators: 0,
            redemptions: REDEMPTIONS,
            hold,
            rtt: RTT,
            seed,
        }
    }

    /// The most redemptions per second the model allows: each shard (and each shared address
    /// counter) admits one transaction per `hold`, each learner one redemption per read round,
    /// transaction and reply, and arrivals no more than their rate.
    pub(super) fn ceiling(&self) -> f64 {
        let per_sec = |micros: Micros| 1e6 / micros as f64;
        let mut ceiling = self.shards as f64 * per_sec(self.hold);
        ceiling = ceiling.min(match self.load {
            Load::Learners(n) => n as f64 * per_sec(2 * self.rtt + self.hold),
            Load::PerSec(rate) => rate,
        });
        if let Some(addresses) = self.addresses {
            ceiling = ceiling.min(addresses as f64 * per_sec(self.hold));
        }
        ceiling
    }
}

/// What a run measured.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Outcome {
    /// Redemptions that succeeded.
    pub(super) redeemed: u64,
    /// Redemptions that ran out of attempts (409 `write_conflict`).
    pub(super) failed: u64,
    /// Cancelled redemption attempts (TransactionConflict).
    pub(super) conflicts: u64,
    /// Redemptions that succeeded while every learner was busy, per second of that time.
    pub(super) per_sec: f64,
    /// Successful redemptions' latency from the read round to the transaction's reply.
    pub(super) p50: Micros,
    pub(super) p99: Micros,
    /// Keys the generation runners stored while every learner was busy, per second.
    pub(super) keys_per_sec: f64,
    /// Generation batches that ran out of attempts.
    pub(super) failed_batches: u64,
}

/// SplitMix64: small, seeded, and good enough for shard choices, arrivals and jitter.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is far below what the table shows).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Time to the next of Poisson arrivals at `rate` a second.
    fn gap(&mut self, rate: f64) -> Micros {
        let uniform = ((self.next() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        (-uniform.ln() / rate * 1e6) as Micros
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    /// The next learner arrives (open load).
    Arrival,
    /// Start the next redemption (or key batch).
    Begin,
    /// The transaction reaches DynamoDB.
    Arrive,
    /// Its reply reaches the function.
    Reply { committed: bool },
}

struct Actor {
    /// The address counter item this learner's transactions check, if shared.
    address: Option<usize>,
    generator: bool,
    shard: usize,
    failures: u32,
    delay: Micros,
    started: Micros,
}

impl Actor {
    fn new(address: Option<usize>, generator: bool) -> Self {
        Self {
            address,
            generator,
            shard: 0,
            failures: 0,
            delay: FIRST_DELAY,
            started: 0,
        }
    }
}

/// The events still to happen, in time order (ties in the order they were planned).
struct Queue {
    events: BinaryHeap<Reverse<(Micros, u64, usize, Step)>>,
    planned: u64,
}

impl Queue {
    fn push(&mut self, at: Micros, actor: usize, step: Step) {
        self.planned += 1;
        self.events.push(Reverse((at, self.planned, actor, step)));
    }
}

/// Runs one scenario to its end: every redemption either redeemed or failed.
pub(super) fn simulate(s: &Scenario) -> Outcome {
    let shards = s.shards.max(1);
    let mut rng = Rng(s.seed);
    // Items that can conflict: the shards, then the shared address counters.
    let mut held_until: Vec<Micros> = vec![0; shards + s.addresses.unwrap_or(0)];
    let address_of = |i: usize| s.addresses.map(|a| shards + i % a.max(1));
    let learners = match s.load {
        Load::Learners(n) => n,
        Load::PerSec(_) => 0,
    };
    let mut actors: Vec<Actor> = (0..learners)
        .map(|i| Actor::new(address_of(i), false))
        .chain((0..s.generators).map(|_| Actor::new(None, true)))
        .collect();
    let mut queue = Queue {
        events: BinaryHeap::new(),
        planned: 0,
    };
    for actor in 0..actors.len() {
        // Staggered over one round trip, so that nobody starts in lockstep.
        let at = rng.below(s.rtt.max(1));
        queue.push(at, actor, Step::Begin);
    }
    if let Load::PerSec(_) = s.load {
        queue.push(0, usize::MAX, Step::Arrival);
    }

    let (mut issued, mut in_flight) = (0usize, 0usize);
    // When the last redemption started: the end of the time in which the load was full.
    let mut stop: Option<Micros> = None;
    let (mut redeemed, mut redeemed_busy, mut failed, mut conflicts) = (0u64, 0u64, 0u64, 0u64);
    let (mut keys_busy, mut failed_batches) = (0u64, 0u64);
    let mut latencies = Vec::with_capacity(s.redemptions);

    while let Some(Reverse((now, _, id, step))) = queue.events.pop() {
        if step == Step::Arrival {
            if issued == s.redemptions {
                continue;
            }
            if let Load::PerSec(rate) = s.load {
                queue.push(now + rng.gap(rate), usize::MAX, Step::Arrival);
            }
            actors.push(Actor::new(address_of(issued), false));
            issued += 1;
            in_flight += 1;
            if issued == s.redemptions {
                stop = Some(now);
            }
            queue.push(now, actors.len() - 1, Step::Begin);
            continue;
        }
        let actor = &mut actors[id];
        match step {
            Step::Arrival => {}
            Step::Begin => {
                if actor.generator {
                    if issued == s.redemptions && in_flight == 0 {
                        continue;
                    }
                } else if learners > 0 {
                    if issued == s.redemptions {
                        // A learner with nothing left to redeem: the load is no longer full.
                        stop.get_or_insert(now);
                        continue;
                    }
                    issued += 1;
                    in_flight += 1;
                }
                actor.shard = rng.below(shards as u64) as usize;
                actor.failures = 0;
                actor.delay = FIRST_DELAY;
                actor.started = now;
                // A redemption reads first (one BatchGetItem round); a key batch does not.
                let read = if actor.generator { 0 } else { s.rtt };
                queue.push(now + read + s.rtt / 2, id, Step::Arrive);
            }
            Step::Arrive => {
                let items = [Some(actor.shard), actor.address];
                let free = items.iter().flatten().all(|&i| held_until[i] <= now);
                if free {
                    for &i in items.iter().flatten() {
                        held_until[i] = now + s.hold;
                    }
                }
                let reply = now + if free { s.hold } else { 0 } + s.rtt / 2;
                queue.push(reply, id, Step::Reply { committed: free });
            }
            Step::Reply { committed } => {
                let done = if committed {
                    if actor.generator {
                        if stop.is_none() {
                            keys_busy += KEYS_PER_BATCH;
                        }
                    } else {
                        redeemed += 1;
                        if stop.is_none() {
                            redeemed_busy += 1;
                        }
                        latencies.push(now - actor.started);
                    }
                    true
                } else {
                    actor.failures += 1;
                    if !actor.generator {
                        conflicts += 1;
                    }
                    if actor.failures < ATTEMPTS {
                        // Full jitter, as `transact` sleeps: uniform in 0..=delay.
                        let jitter = rng.below(actor.delay + 1);
                        actor.delay = (actor.delay * 2).min(MAX_DELAY);
                        if s.repick {
                            actor.shard = rng.below(shards as u64) as usize;
                        }
                        queue.push(now + jitter + s.rtt / 2, id, Step::Arrive);
                        false
                    } else {
                        if actor.generator {
                            failed_batches += 1;
                        } else {
                            failed += 1;
                        }
                        true
                    }
                };
                if done {
                    if !actor.generator {
                        in_flight -= 1;
                    }
                    // A learner of a closed load, or a generation runner, goes on.
                    if actor.generator || learners > 0 {
                        queue.push(now, id, Step::Begin);
                    }
                }
            }
        }
    }

    let busy_secs = stop.unwrap_or(0).max(1) as f64 / 1e6;
    latencies.sort_unstable();
    let at = |q: f64| {
        let last = latencies.len().saturating_sub(1);
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(last))
            .copied()
            .unwrap_or(0)
    };
    Outcome {
        redeemed,
        failed,
        conflicts,
        per_sec: redeemed_busy as f64 / busy_secs,
        p50: at(0.50),
        p99: at(0.99),
        keys_per_sec: keys_busy as f64 / busy_secs,
        failed_batches,
    }
}

/// Count shards of a new pool (`keypool::domain::DEFAULT_SHARDS`, also the most a pool may have).
const DEFAULT: usize = DEFAULT_SHARDS as usize;

/// The rows of the table: 1, 4, 16 and the default shards at 32 and 256 learners, then 5,000
/// redemptions a second arriving at the default shards, beside 64 for comparison, then what
/// else binds.
fn scenarios(hold: Micros, seed: u64) -> Vec<(Scenario, &'static str)> {
    let row = |shards, load| Scenario::new(shards, load, hold, seed);
    let mut rows = Vec::new();
    for shards in [1, 4, 16, DEFAULT] {
        for learners in [32, 256] {
            rows.push((row(shards, Load::Learners(learners)), "—"));
        }
    }
    rows.push((row(DEFAULT, Load::Learners(1024)), "—"));
    let repick = |scenario: Scenario| Scenario {
        repick: true,
        ..scenario
    };
    rows.push((
        repick(row(DEFAULT, Load::Learners(256))),
        "retries pick a new shard",
    ));
    for rate in [5_000.0, 6_000.0] {
        rows.push((row(DEFAULT, Load::PerSec(rate)), "—"));
        rows.push((
            repick(row(DEFAULT, Load::PerSec(rate))),
            "retries pick a new shard",
        ));
    }
    rows.push((row(64, Load::PerSec(5_000.0)), "—"));
    // A classroom or a company behind one NAT: its address counter is in no transaction
    // (only misses of custom keys write it), so the learners share no item but the shards.
    rows.push((
        row(DEFAULT, Load::Learners(2_000)),
        "all behind one client address",
    ));
    rows.push((
        row(DEFAULT, Load::PerSec(2_000.0)),
        "all behind one client address",
    ));
    // As it was: the address's counter checked in every redemption's transaction.
    rows.push((
        Scenario {
            addresses: Some(1),
            ..row(DEFAULT, Load::Learners(256))
        },
        "one client address checked in every transaction (before)",
    ));
    rows.push((
        Scenario {
            generators: 4,
            ..row(DEFAULT, Load::Learners(256))
        },
        "4 generation runners",
    ));
    rows.push((
        Scenario {
            generators: 1,
            ..row(1, Load::Learners(32))
        },
        "1 generation runner",
    ));
    rows
}

fn ms(micros: Micros) -> String {
    format!("{:.1}", micros as f64 / 1000.0)
}

/// Prints the sharding simulation's table.
pub(super) fn scale_figures(hold_ms: f64, seed: u64) {
    let hold = (hold_ms * 1000.0).round().max(1.0) as Micros;
    out!(
        "\n| sharding simulation ({REDEMPTIONS} redemptions a row; hold {} ms, round trip {} ms, seed {seed}) | load | beside it | redemptions/s | model ceiling | conflicts per redemption | failed (409) | p50 / p99 ms | keys generated/s (batches failed) |",
        ms(hold),
        ms(RTT)
    );
    out!("|---|---|---|---|---|---|---|---|---|");
    let started = std::time::Instant::now();
    for (scenario, beside) in scenarios(hold, seed) {
        let o = simulate(&scenario);
        let load = match scenario.load {
            Load::Learners(n) => format!("{n} learners"),
            Load::PerSec(rate) => format!("{rate:.0}/s arriving"),
        };
        let generated = if scenario.generators == 0 {
            "—".to_string()
        } else {
            format!("{:.0} ({})", o.keys_per_sec, o.failed_batches)
        };
        out!(
            "| {} count shards | {load} | {beside} | {:.0} | {:.0} | {:.2} | {} ({:.2}%) | {} / {} | {generated} |",
            scenario.shards,
            o.per_sec,
            scenario.ceiling(),
            o.conflicts as f64 / scenario.redemptions as f64,
            o.failed,
            100.0 * o.failed as f64 / scenario.redemptions as f64,
            ms(o.p50),
            ms(o.p99),
        );
    }
    out!(
        "\nAn item admits one transaction at a time: a transaction holds its items for the hold, and one that reaches a held item is cancelled (TransactionConflict) and retried as the store does (full jitter from 5 ms doubling to 500 ms, 10 attempts, then 409). The model ceiling is min(shards / hold, learners / (2 round trips + hold), arrival rate). Virtual time: the table took {:.2} s of wall time; `keypool-bench --only scale --scale-hold-ms H` reruns it.",
        started.elapsed().as_secs_f64()
    );
}

#[cfg(test)]
mod tests;
