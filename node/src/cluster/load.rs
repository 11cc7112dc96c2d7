//! Steady load: signed `message` transactions at a fixed rate, round-robin over the nodes
//! marked up. When a node's mempool is full it answers 503 (counted as rejected), never
//! accept-and-drop (DESIGN §9).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use consensus_core::crypto::Keypair;
use consensus_core::{Hash32, Transaction, TxKind};

use super::probe::error_chain;

/// Load transactions in flight at once; beyond it the load generator waits.
pub const IN_FLIGHT_MAX: usize = 256;

/// What the node said to a submitted transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Submitted {
    /// Admitted to the mempool; the hash is the node's if it named one, else ours.
    Accepted { tx_hash: String },
    /// Refused: the HTTP status and the node's `{"error", "message"}` body.
    Rejected {
        status: u16,
        code: String,
        message: String,
    },
}

/// A signed `message` transaction for the chain `chain_id` (the signature binds it: no other
/// chain accepts it). The nonce is random: transactions are told apart by hash, so two
/// identical messages sent in the same millisecond must still differ.
pub fn message_tx(chain_id: &Hash32, key: &Keypair, payload: Vec<u8>) -> Transaction {
    Transaction::new_signed(
        chain_id,
        key,
        TxKind::Message,
        payload,
        crate::api::random_nonce(),
        crate::node::now_ms(),
    )
}

/// `POST {url}/Transaction` with the transaction's own JSON. A refusal is an `Ok`: only
/// "could not ask" is an error.
pub async fn submit_tx(
    client: &reqwest::Client,
    url: &str,
    tx: &Transaction,
) -> Result<Submitted, reqwest::Error> {
    let response = client
        .post(format!("{url}{}", crate::routes::TRANSACTION.path))
        .json(tx)
        .send()
        .await?;
    let status = response.status().as_u16();
    let body = response.text().await?;
    Ok(submit_outcome(status, &body, tx))
}

/// Reads a node's answer to a submission.
pub fn submit_outcome(status: u16, body: &str, tx: &Transaction) -> Submitted {
    let json: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let field = |name: &str| {
        json.as_ref()
            .and_then(|j| j.get(name))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    let accepted = json
        .as_ref()
        .and_then(|j| j.get("accepted"))
        .and_then(serde_json::Value::as_bool);
    if (200..300).contains(&status) && accepted != Some(false) {
        return Submitted::Accepted {
            tx_hash: field("txHash").unwrap_or_else(|| tx.hash().to_hex()),
        };
    }
    Submitted::Rejected {
        status,
        code: field("error").unwrap_or_else(|| "rejected".to_owned()),
        message: field("message").unwrap_or_else(|| body.trim().to_owned()),
    }
}

/// What the load generator did.
#[derive(Debug, Default)]
pub struct LoadStats {
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    pub unreachable: AtomicU64,
    last_problem: Mutex<Option<String>>,
}

impl LoadStats {
    pub fn problem(&self, text: String) {
        if let Ok(mut last) = self.last_problem.lock() {
            *last = Some(text);
        }
    }

    pub fn summary(&self, rate: f64) -> String {
        if rate <= 0.0 {
            return "load off".to_owned();
        }
        let mut s = format!(
            "load {rate} tx/s: {} accepted, {} rejected, {} unreachable",
            self.accepted.load(Ordering::Relaxed),
            self.rejected.load(Ordering::Relaxed),
            self.unreachable.load(Ordering::Relaxed)
        );
        if let Some(p) = self.last_problem.lock().ok().and_then(|p| p.clone()) {
            let _ = write!(s, " (last: {p})");
        }
        s
    }
}

/// Where and how fast [`generate`] submits.
pub struct LoadPlan {
    pub rate: f64,
    pub chain_id: Hash32,
    pub key: Keypair,
    pub urls: Vec<String>,
    /// Which of `urls` to use now (the supervisor's view of who is up).
    pub up: Arc<Vec<AtomicBool>>,
    /// Each accepted transaction's hash and when it was submitted, for latency figures.
    pub accepted: Option<tokio::sync::mpsc::UnboundedSender<(String, Instant)>>,
}

/// Submits `plan.rate` transactions per second until the task is dropped or aborted. Behind
/// by more than two seconds' worth (all nodes slow or down), it skips ahead instead of
/// bursting.
pub async fn generate(plan: LoadPlan, stats: Arc<LoadStats>) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            stats.problem(format!("cannot build an HTTP client: {e}"));
            return;
        }
    };
    let LoadPlan {
        rate,
        chain_id,
        key,
        urls,
        up,
        accepted,
    } = plan;
    let key = Arc::new(key);
    let in_flight = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT_MAX));
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs_f64((1.0 / rate).max(0.01)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let backlog_max = (2.0 * rate).max(1.0) as u64;
    let (mut sent, mut next) = (0_u64, 0_usize);
    loop {
        tick.tick().await;
        // The first transaction goes out at once, then `rate` per second.
        let due = (started.elapsed().as_secs_f64() * rate) as u64 + 1;
        if due.saturating_sub(sent) > backlog_max {
            sent = due - 1;
        }
        while sent < due {
            sent += 1;
            let targets: Vec<usize> = (0..urls.len())
                .filter(|i| up[*i].load(Ordering::Relaxed))
                .collect();
            if targets.is_empty() {
                continue;
            }
            let url = urls[targets[next % targets.len()]].clone();
            next = next.wrapping_add(1);
            let Ok(permit) = in_flight.clone().acquire_owned().await else {
                return;
            };
            let payload = format!("tinyweb load #{sent}").into_bytes();
            let tx = message_tx(&chain_id, &key, payload);
            let (client, stats, accepted) = (client.clone(), stats.clone(), accepted.clone());
            tokio::spawn(async move {
                let submitted_at = Instant::now();
                match submit_tx(&client, &url, &tx).await {
                    Ok(Submitted::Accepted { tx_hash }) => {
                        stats.accepted.fetch_add(1, Ordering::Relaxed);
                        if let Some(accepted) = accepted {
                            let _ = accepted.send((tx_hash, submitted_at));
                        }
                    }
                    Ok(Submitted::Rejected {
                        status,
                        code,
                        message,
                    }) => {
                        stats.rejected.fetch_add(1, Ordering::Relaxed);
                        stats.problem(format!("{url}: {status} {code}: {message}"));
                    }
                    Err(e) => {
                        stats.unreachable.fetch_add(1, Ordering::Relaxed);
                        stats.problem(error_chain(&e));
                    }
                }
                drop(permit);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn submit_outcomes_follow_the_status_and_body() {
        let tx = message_tx(
            &Hash32::ZERO,
            &crate::config::generate_key(),
            b"hi".to_vec(),
        );
        assert_eq!(
            submit_outcome(200, r#"{"txHash":"aa","accepted":true}"#, &tx),
            Submitted::Accepted {
                tx_hash: "aa".into()
            }
        );
        // A node that accepts without naming the hash: ours is the same hash.
        assert_eq!(
            submit_outcome(200, r#"{"accepted":true}"#, &tx),
            Submitted::Accepted {
                tx_hash: tx.hash().to_hex()
            }
        );
        assert_eq!(
            submit_outcome(409, r#"{"error":"replay","message":"seen before"}"#, &tx),
            Submitted::Rejected {
                status: 409,
                code: "replay".into(),
                message: "seen before".into()
            }
        );
        assert_eq!(
            submit_outcome(502, "bad gateway", &tx),
            Submitted::Rejected {
                status: 502,
                code: "rejected".into(),
                message: "bad gateway".into()
            }
        );
    }
}
