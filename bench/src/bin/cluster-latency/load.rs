//! Steady open-loop load: `rate` signed `message` transactions per second, round-robin over
//! the nodes, each submitted as a client does (POST `/Transaction`, wait for the verdict).
//! A transaction's clock starts just before its request is sent.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use consensus_core::crypto::Keypair;
use consensus_core::{Hash32, Transaction, TxKind};

/// Requests in flight at once. Past it the generator is the bottleneck, and says so by
/// counting the transactions it could not send in time.
const IN_FLIGHT_MAX: usize = 2048;

#[derive(Default)]
pub struct LoadStats {
    pub offered: AtomicU64,
    pub accepted: AtomicU64,
    /// 503 busy (mempool full or a queue full): shed by the node, as designed.
    pub rejected: AtomicU64,
    /// Any other answer, or no answer.
    pub errors: AtomicU64,
    /// Due but not sent: the generator had too many requests in flight.
    pub skipped: AtomicU64,
    /// Accepted transactions: hash -> (submitted at, inside the measured window).
    pub submitted: Mutex<HashMap<Hash32, (Instant, bool)>>,
}

pub struct Load {
    pub rate: f64,
    pub chain_id: Hash32,
    pub urls: Vec<String>,
    pub payload_bytes: usize,
    /// Transactions submitted in [measure_from, measure_until) are the ones measured.
    pub measure_from: Instant,
    pub measure_until: Instant,
}

impl Load {
    /// Runs until `measure_until`.
    pub async fn run(self, client: reqwest::Client, stats: Arc<LoadStats>) {
        let key = Keypair::from_secret(rand_secret());
        let permits = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT_MAX));
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sent = 0_u64;
        while Instant::now() < self.measure_until {
            tick.tick().await;
            let due = (started.elapsed().as_secs_f64() * self.rate) as u64;
            while sent < due {
                sent += 1;
                stats.offered.fetch_add(1, Ordering::Relaxed);
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    stats.skipped.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let url = &self.urls[(sent as usize) % self.urls.len()];
                let tx = self.transaction(&key, sent);
                let (client, stats, url) = (client.clone(), stats.clone(), url.clone());
                let window = self.measure_from..self.measure_until;
                tokio::spawn(async move {
                    let at = Instant::now();
                    let hash = tx.hash();
                    let outcome = client
                        .post(format!("{url}/Transaction"))
                        .json(&tx)
                        .send()
                        .await
                        .map(|r| r.status().as_u16());
                    match outcome {
                        Ok(200) => {
                            stats.accepted.fetch_add(1, Ordering::Relaxed);
                            if let Ok(mut s) = stats.submitted.lock() {
                                s.insert(hash, (at, window.contains(&at)));
                            }
                        }
                        Ok(503) => {
                            stats.rejected.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            stats.errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    drop(permit);
                });
            }
        }
        // Every request sent has its answer (the client's timeout bounds the wait), so the
        // slowest transactions are not missing from the tally.
        let _ = permits.acquire_many(IN_FLIGHT_MAX as u32).await;
    }

    fn transaction(&self, key: &Keypair, n: u64) -> Transaction {
        let mut payload = format!("cluster-latency #{n} ").into_bytes();
        payload.resize(self.payload_bytes.max(payload.len()), b'.');
        Transaction::new_signed(&self.chain_id, key, TxKind::Message, payload, n, now_ms())
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A fresh client key per trial (the chain is fresh too; nothing needs to persist).
fn rand_secret() -> [u8; 32] {
    let mut secret = [0_u8; 32];
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    secret[..16].copy_from_slice(&nanos.to_le_bytes());
    secret[16..20].copy_from_slice(&std::process::id().to_le_bytes());
    secret
}
