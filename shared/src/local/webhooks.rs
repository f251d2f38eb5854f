//! The local server's webhook sender, in place of AWS's delivery queue and function.
//!
//! Deliveries arrive from whoever stores them (the stream follower's fan-out, a test event, an
//! admin's retry) and are found again by their due markers on every tick, so a restart loses
//! none and retries come back when due. Each attempt runs as a task of its own, at most
//! `PER_ENDPOINT` under way at once per endpoint (of which the sender lets
//! `SENDS_PER_ENDPOINT` send at a time, while the others do their store work) and `IN_FLIGHT`
//! in all: a slow or dead endpoint (each attempt bounded to 10 s) holds up only its own
//! deliveries, and at most `PER_ENDPOINT` of the shared slots.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Semaphore, mpsc};

use crate::domain::{DeliveryId, WebhookId};
use crate::ops::webhooks::{Turn, attempt};
use crate::store::Webhooks;
use crate::time::Clock;
use crate::webhooks::{DeliveryQueue, Sender};

/// Attempts of one endpoint under way at once: twice what may send at once, so that the
/// store work of some overlaps the requests of the others.
pub const PER_ENDPOINT: usize = 2 * crate::webhooks::SENDS_PER_ENDPOINT;
/// Attempts in flight at once, over every endpoint.
pub const IN_FLIGHT: usize = 64;
/// How often waiting deliveries are looked for, besides those handed over.
pub const DEFAULT_TICK: Duration = Duration::from_secs(1);

/// Hands deliveries to the local sender.
#[derive(Clone)]
pub struct LocalDeliveries {
    tx: mpsc::UnboundedSender<(WebhookId, DeliveryId)>,
}

#[async_trait]
impl DeliveryQueue for LocalDeliveries {
    async fn submit(&self, deliveries: &[(WebhookId, DeliveryId)]) -> crate::error::Result<()> {
        for delivery in deliveries {
            // A stopped sender finds them by their markers when it starts again.
            let _ = self.tx.send(*delivery);
        }
        Ok(())
    }
}

/// What the sender works with.
pub struct Settings {
    /// The wait after a first failed attempt (`KEYPOOL_WEBHOOK_FIRST_RETRY_MS`).
    pub first_retry: chrono::Duration,
    /// How often waiting deliveries are looked for.
    pub tick: Duration,
}

struct Worker {
    store: Arc<dyn Webhooks>,
    sender: Sender,
    clock: Arc<dyn Clock>,
    first_retry: chrono::Duration,
    all: Arc<Semaphore>,
    endpoints: Mutex<HashMap<WebhookId, Arc<Semaphore>>>,
    running: Mutex<HashSet<DeliveryId>>,
    tx: mpsc::UnboundedSender<(WebhookId, DeliveryId)>,
}

impl Worker {
    fn endpoint(&self, id: WebhookId) -> Arc<Semaphore> {
        let mut endpoints = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        endpoints
            .entry(id)
            .or_insert_with(|| Arc::new(Semaphore::new(PER_ENDPOINT)))
            .clone()
    }

    /// Starts one delivery's turn, unless it is running already.
    fn start(self: &Arc<Self>, webhook: WebhookId, delivery: DeliveryId) {
        {
            let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            if !running.insert(delivery) {
                return;
            }
        }
        let worker = self.clone();
        tokio::spawn(async move {
            let endpoint = worker.endpoint(webhook);
            let turn = match (endpoint.acquire().await, worker.all.acquire().await) {
                (Ok(_mine), Ok(_all)) => {
                    attempt(
                        worker.store.as_ref(),
                        &worker.sender,
                        &webhook,
                        &delivery,
                        worker.clock.now(),
                        worker.first_retry,
                    )
                    .await
                }
                _ => return,
            };
            worker
                .running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&delivery);
            let next = match turn {
                Ok(Turn::Attempted(d)) => d.next_attempt_at,
                Ok(Turn::NotDue(at)) => Some(at),
                Ok(Turn::Done) => None,
                Err(e) => {
                    tracing::warn!(error = %e, "a webhook delivery will be tried again");
                    None
                }
            };
            // Come back when it is due (the tick finds it too, after a restart).
            if let Some(at) = next {
                let wait = (at - worker.clock.now()).to_std().unwrap_or_default();
                let tx = worker.tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(wait).await;
                    let _ = tx.send((webhook, delivery));
                });
            }
        });
    }
}

/// Starts the sender; returns what hands it deliveries, and its task.
pub fn start(
    store: Arc<dyn Webhooks>,
    sender: Sender,
    clock: Arc<dyn Clock>,
    settings: Settings,
) -> (LocalDeliveries, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let worker = Arc::new(Worker {
        store,
        sender,
        clock,
        first_retry: settings.first_retry,
        all: Arc::new(Semaphore::new(IN_FLIGHT)),
        endpoints: Mutex::default(),
        running: Mutex::default(),
        tx: tx.clone(),
    });
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(settings.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                handed = rx.recv() => match handed {
                    Some((webhook, delivery)) => worker.start(webhook, delivery),
                    None => return,
                },
                _ = tick.tick() => {
                    match worker.store.due_deliveries(worker.clock.now(), 500).await {
                        Ok(due) => for (webhook, delivery) in due {
                            worker.start(webhook, delivery);
                        },
                        Err(e) => tracing::warn!(error = %e, "looking for due webhook deliveries failed"),
                    }
                }
            }
        }
    });
    (LocalDeliveries { tx }, task)
}
