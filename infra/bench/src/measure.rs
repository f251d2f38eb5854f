//! Latency statistics and their formatting, and the pieces the bare store writes share.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;

pub(super) struct Stats {
    pub(super) p50: Duration,
    pub(super) p99: Duration,
    pub(super) per_sec: f64,
}

pub(super) fn stats(mut latencies: Vec<Duration>, wall: Duration) -> Stats {
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Stats {
        p50: at(0.50),
        p99: at(0.99),
        per_sec: latencies.len() as f64 / wall.as_secs_f64(),
    }
}

pub(super) fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(super) struct HashMapKey(pub(super) std::collections::HashMap<String, AttributeValue>);

impl HashMapKey {
    pub(super) fn new(pk: &str, sk: &str) -> Self {
        Self(std::collections::HashMap::from([
            ("PK".to_string(), s(pk)),
            ("SK".to_string(), s(sk)),
        ]))
    }
}
