//! Outbound HTTP to peers (DESIGN §6, Req 5.2, 10.3): per peer, one queue and one sender
//! task for consensus messages and another for relayed transactions ([`RelayLane`]), so a
//! dead or slow peer delays only its own messages and a proposal never waits behind
//! transaction batches. Each message is tried up to
//! `send_attempts` times with exponential back-off and jitter; the outcome of every exchange
//! goes back to the replica as a [`consensus_core::Input::PeerReport`] (delinquency, RTT).
//!
//! A full peer queue drops its *oldest* message: consensus messages age fast and the
//! replica's rebroadcast timer re-sends what still matters, while a queue that refused new
//! messages would keep only stale ones. Messages older than half the replay window are
//! dropped unsent: the receiver would refuse them as stale anyway.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use consensus_core::crypto::Keypair;
use consensus_core::{Hash32, NodeId, Transaction, Validator};
use rand::Rng;
use tokio::sync::{mpsc, watch, Notify};

use super::clock_skew::ClockSkewAlarm;
use super::metrics::Metrics;
use super::relay::RelayLane;
use super::Control;
use crate::config::NetworkSection;
use crate::routes;
use crate::wire::{self, kind, Envelope, WireBody, WireError};

/// One message for one peer: the endpoint and the already sealed, serialised envelope.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub path: &'static str,
    /// Shared by every peer it goes to and every retry (cloning `Bytes` copies nothing).
    pub body: axum::body::Bytes,
    pub queued: Instant,
}

#[derive(Debug)]
struct PeerLink {
    address: Mutex<String>,
    queue: Mutex<VecDeque<Outgoing>>,
    ready: Notify,
    relay: Mutex<RelayLane>,
    relay_ready: Notify,
}

impl PeerLink {
    fn url(&self, path: &str) -> String {
        let address = self.address.lock().map(|a| a.clone()).unwrap_or_default();
        format!("{}{path}", base_url(&address))
    }
}

/// Whether an exchange's round trip goes into the peer report.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RttReport {
    Include,
    Omit,
}

pub struct Transport {
    client: reqwest::Client,
    network: NetworkSection,
    /// Seal relayed transaction batches (consensus messages come sealed by the driver).
    chain_id: Hash32,
    key: Keypair,
    links: Mutex<HashMap<NodeId, Arc<PeerLink>>>,
    control: mpsc::Sender<Control>,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
    clock_skew: ClockSkewAlarm,
}

/// `host:port` or a full URL → the base URL.
pub fn base_url(address: &str) -> String {
    if address.starts_with("http://") || address.starts_with("https://") {
        address.trim_end_matches('/').to_owned()
    } else {
        format!("http://{address}")
    }
}

impl Transport {
    pub fn new(
        network: NetworkSection,
        chain_id: Hash32,
        key: Keypair,
        control: mpsc::Sender<Control>,
        metrics: Arc<Metrics>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Arc<Self>, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(network.request_timeout_ms))
            .connect_timeout(Duration::from_millis(network.request_timeout_ms))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()?;
        Ok(Arc::new(Self {
            client,
            network,
            chain_id,
            key,
            links: Mutex::new(HashMap::new()),
            clock_skew: ClockSkewAlarm::new(control.clone()),
            control,
            metrics,
            shutdown,
        }))
    }

    /// Raises clock-skew alerts, from this side (our messages refused as stale) and from
    /// the HTTP side (a validator's messages arriving stale).
    pub fn clock_skew(&self) -> &ClockSkewAlarm {
        &self.clock_skew
    }

    /// Queues `message` for `peer` at `address`.
    pub fn send(self: &Arc<Self>, peer: NodeId, address: &str, message: Outgoing) {
        let Some(link) = self.link(peer, address) else {
            return;
        };
        if let Ok(mut q) = link.queue.lock() {
            if q.len() >= self.network.peer_queue {
                q.pop_front();
                self.metrics.inc("tinyweb_outgoing_dropped_total");
            }
            q.push_back(message);
        }
        link.ready.notify_one();
    }

    /// Queues `tx` for `peer` at `address`, to be relayed in a batch sealed by `from`.
    pub fn relay(self: &Arc<Self>, peer: NodeId, address: &str, from: NodeId, tx: Transaction) {
        let Some(link) = self.link(peer, address) else {
            return;
        };
        if let Ok(mut lane) = link.relay.lock() {
            let dropped = lane.push(from, tx);
            if dropped > 0 {
                self.metrics
                    .add("tinyweb_relayed_txs_dropped_total", dropped as f64);
            }
        }
        link.relay_ready.notify_one();
    }

    /// The peer's link at `address`, with its two senders started on first use.
    fn link(self: &Arc<Self>, peer: NodeId, address: &str) -> Option<Arc<PeerLink>> {
        let link = {
            let mut links = self.links.lock().ok()?;
            match links.get(&peer) {
                Some(link) => link.clone(),
                None => {
                    let link = Arc::new(PeerLink {
                        address: Mutex::new(address.to_owned()),
                        queue: Mutex::new(VecDeque::new()),
                        ready: Notify::new(),
                        relay: Mutex::new(RelayLane::default()),
                        relay_ready: Notify::new(),
                    });
                    links.insert(peer, link.clone());
                    tokio::spawn(self.clone().run_link(peer, link.clone()));
                    tokio::spawn(self.clone().run_relay(peer, link.clone()));
                    link
                }
            }
        };
        if let Ok(mut a) = link.address.lock() {
            if *a != address {
                *a = address.to_owned();
            }
        }
        Some(link)
    }

    /// Outgoing messages waiting, over all peers.
    pub fn queued(&self) -> usize {
        let Ok(links) = self.links.lock() else {
            return 0;
        };
        links
            .values()
            .map(|l| {
                let messages = l.queue.lock().map(|q| q.len()).unwrap_or(0);
                messages + l.relay.lock().map(|r| r.waiting()).unwrap_or(0)
            })
            .sum()
    }

    async fn run_link(self: Arc<Self>, peer: NodeId, link: Arc<PeerLink>) {
        let mut shutdown = self.shutdown.clone();
        let stale_after = Duration::from_millis(self.network.replay_window_ms / 2);
        loop {
            let next = link.queue.lock().ok().and_then(|mut q| q.pop_front());
            let Some(message) = next else {
                tokio::select! {
                    _ = link.ready.notified() => continue,
                    _ = shutdown.changed() => return,
                }
            };
            if *shutdown.borrow() {
                return;
            }
            if message.queued.elapsed() > stale_after {
                self.metrics.inc("tinyweb_outgoing_dropped_total");
                continue;
            }
            self.deliver_and_report(
                peer,
                &link.url(message.path),
                &message.body,
                RttReport::Include,
            )
            .await;
        }
    }

    /// Sends the peer's waiting transactions, a batch at a time, the next one only after the
    /// last was answered (see [`super::relay`]).
    async fn run_relay(self: Arc<Self>, peer: NodeId, link: Arc<PeerLink>) {
        let mut shutdown = self.shutdown.clone();
        loop {
            let next = link.relay.lock().ok().and_then(|mut l| l.take_batch());
            let Some((from, transactions)) = next else {
                tokio::select! {
                    _ = link.relay_ready.notified() => continue,
                    _ = shutdown.changed() => return,
                }
            };
            if *shutdown.borrow() {
                return;
            }
            let envelope = Envelope::seal(
                &self.chain_id,
                &self.key,
                from,
                kind::TRANSACTION_BATCH,
                super::now_ms(),
                wire::TransactionBatch { transactions },
            );
            let Ok(body) = serde_json::to_vec(&envelope) else {
                continue;
            };
            // Its round trip includes the peer checking up to 256 signatures: reported as
            // a success or failure only, or it would inflate the RTT that sizes timeouts.
            self.deliver_and_report(
                peer,
                &link.url(routes::TRANSACTION.path),
                &body.into(),
                RttReport::Omit,
            )
            .await;
        }
    }

    async fn deliver_and_report(
        &self,
        peer: NodeId,
        url: &str,
        body: &axum::body::Bytes,
        rtt: RttReport,
    ) {
        let (ok, rtt_ms) = self.deliver(url, body).await;
        let rtt_ms = rtt_ms.filter(|_| rtt == RttReport::Include);
        if ok {
            self.metrics.inc("tinyweb_messages_sent_total");
        } else {
            self.metrics.inc("tinyweb_send_failures_total");
        }
        // Dropped if the replica is swamped: reports are statistics, not protocol.
        let _ = self
            .control
            .try_send(Control::PeerReport { peer, ok, rtt_ms });
    }

    /// POSTs with retries. 2xx and a 409 "replayed" (the peer already has it: an earlier
    /// attempt landed) count as delivered; 503 and transport errors are retried; other statuses mean the
    /// peer refused the message, which retrying cannot change.
    async fn deliver(&self, url: &str, body: &axum::body::Bytes) -> (bool, Option<u64>) {
        let attempts = self.network.send_attempts;
        for attempt in 0..attempts {
            let started = Instant::now();
            let result = self
                .client
                .post(url)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await;
            let rtt = started.elapsed().as_millis() as u64;
            match result {
                Ok(resp) if resp.status().is_success() => return (true, Some(rtt)),
                Ok(resp) if resp.status().as_u16() == 409 => {
                    // "replayed": an earlier attempt landed. "stale": our clock and the
                    // peer's disagree by more than the replay window; nothing we send gets
                    // through, which must show as a failing peer, not as success.
                    // A refusal is a few hundred bytes; read no more of what a peer sends.
                    let body = read_capped(resp, 4 * 1024).await.unwrap_or_default();
                    let refusal = serde_json::from_slice::<crate::api::ErrorBody>(&body).ok();
                    let stale = refusal.as_ref().is_some_and(|e| e.error == "stale");
                    if let Some(refusal) = refusal.filter(|_| stale) {
                        tracing::warn!(%url, "peer refuses our timestamps: check both clocks");
                        self.clock_skew.refused_by_peer(url, &refusal.message);
                    }
                    return (!stale, Some(rtt));
                }
                Ok(resp) if resp.status().as_u16() != 503 => {
                    tracing::debug!(%url, status = %resp.status(), "peer refused a message");
                    return (false, Some(rtt));
                }
                Ok(_) | Err(_) => {}
            }
            if attempt + 1 < attempts {
                tokio::time::sleep(self.backoff(attempt)).await;
            }
        }
        (false, None)
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let base = self
            .network
            .retry_backoff_ms
            .saturating_mul(1 << attempt.min(10));
        let jitter = rand::thread_rng().gen_range(0..=base / 2);
        Duration::from_millis(base + jitter)
    }

    /// `pbft_node_get_blockchain_length_from_peer`: the peer's `/GetBlockChainLength`.
    pub async fn get_blockchain_length(&self, address: &str) -> Option<u64> {
        let value = self
            .get_small_json(address, routes::GET_BLOCKCHAIN_LENGTH.path)
            .await?;
        value.get("chainLength")?.as_u64()
    }

    /// `pbft_node_get_last_block_hash_from_peer`: the peer's `/BlockChainLastHash`.
    pub async fn get_last_block_hash(&self, address: &str) -> Option<(u64, Hash32)> {
        let value = self
            .get_small_json(address, routes::BLOCKCHAIN_LAST_HASH.path)
            .await?;
        let height = value.get("height")?.as_u64()?;
        let hash = Hash32::from_hex(value.get("lastHash")?.as_str()?).ok()?;
        Some((height, hash))
    }

    /// A GET whose answer is a few fields: read at most a few KiB of it.
    async fn get_small_json(&self, address: &str, path: &str) -> Option<serde_json::Value> {
        const SMALL_ANSWER_BYTES: usize = 4 * 1024;
        let url = format!("{}{path}", base_url(address));
        let resp = self.client.get(url).send().await.ok()?;
        let raw = read_capped(resp, SMALL_ANSWER_BYTES).await.ok()?;
        serde_json::from_slice(&raw).ok()
    }

    /// One signed request/response exchange (sync, pending transactions): the answer must be
    /// an envelope of `expected` type signed by `peer_key` (Req 8.4: both ends authenticated).
    pub async fn exchange<Req: WireBody + Sync, Resp: WireBody>(
        &self,
        peer: &Validator,
        path: &str,
        request: &Envelope<Req>,
        expected: &[&str],
        chain_id: &Hash32,
    ) -> Result<Envelope<Resp>, ExchangeError> {
        let url = format!("{}{}", base_url(&peer.address), path);
        let body = serde_json::to_vec(request).map_err(|e| ExchangeError::Local(e.to_string()))?;
        // A page of large blocks takes longer than a vote: give the whole exchange (request,
        // the peer's reads, the transfer) several ordinary timeouts.
        let timeout = Duration::from_millis(self.network.request_timeout_ms.saturating_mul(5));
        let resp = self
            .client
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| ExchangeError::Transport(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(ExchangeError::Status(resp.status().as_u16()));
        }
        let raw = read_capped(resp, self.network.body_limit_bytes).await?;
        let envelope: Envelope<Resp> =
            wire::parse_envelope(&raw, expected).map_err(ExchangeError::Invalid)?;
        wire::authenticate(
            &envelope,
            chain_id,
            |id| (id == peer.id).then_some(peer.public_key),
            super::now_ms(),
            self.network.replay_window_ms,
        )
        .map_err(ExchangeError::Invalid)?;
        Ok(envelope)
    }
}

/// Reads an answer's body, refusing one over `limit` bytes (a peer's answer is as untrusted
/// as its requests).
async fn read_capped(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, ExchangeError> {
    let mut raw = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| ExchangeError::Transport(e.to_string()))?
    {
        if raw.len() + chunk.len() > limit {
            return Err(ExchangeError::Invalid(WireError::TooLarge { limit }));
        }
        raw.extend_from_slice(&chunk);
    }
    Ok(raw)
}

#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("cannot reach the peer: {0}")]
    Transport(String),
    #[error("the peer answered HTTP {0}")]
    Status(u16),
    #[error("the peer's answer is invalid: {0}")]
    Invalid(WireError),
    #[error("{0}")]
    Local(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::post;
    use consensus_core::TxKind;
    use tokio::sync::Semaphore;

    /// A peer whose `/Transaction` answers only when the test lets it, and which reports
    /// each request's path and, for a batch, its transaction count.
    async fn peer(gate: Arc<Semaphore>) -> (String, mpsc::UnboundedReceiver<(String, usize)>) {
        let (seen, arrivals) = mpsc::unbounded_channel();
        let batches = seen.clone();
        let app = axum::Router::new()
            .route(
                routes::TRANSACTION.path,
                post(move |body: axum::body::Bytes| async move {
                    let envelope: Envelope<wire::TransactionBatch> =
                        serde_json::from_slice(&body).expect("a batch envelope");
                    let count = envelope.body.transactions.len();
                    let _ = batches.send((routes::TRANSACTION.path.to_owned(), count));
                    let _ = gate.acquire().await.map(|p| p.forget());
                    "{}"
                }),
            )
            .route(
                routes::PROPOSE_BLOCK.path,
                post(move || async move {
                    let _ = seen.send((routes::PROPOSE_BLOCK.path.to_owned(), 0));
                    "{}"
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let address = listener.local_addr().expect("bound").to_string();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (address, arrivals)
    }

    fn transport() -> (Arc<Transport>, watch::Sender<bool>, mpsc::Receiver<Control>) {
        let (stop, shutdown) = watch::channel(false);
        let (control, reports) = mpsc::channel(1024);
        let transport = Transport::new(
            NetworkSection::default(),
            Hash32::ZERO,
            Keypair::from_secret([1; 32]),
            control,
            Arc::new(Metrics::default()),
            shutdown,
        )
        .expect("a client");
        (transport, stop, reports)
    }

    fn tx(nonce: u64) -> Transaction {
        let key = Keypair::from_secret([7; 32]);
        Transaction::new_signed(&Hash32::ZERO, &key, TxKind::Message, vec![1], nonce, 0)
    }

    async fn next(arrivals: &mut mpsc::UnboundedReceiver<(String, usize)>) -> (String, usize) {
        tokio::time::timeout(Duration::from_secs(10), arrivals.recv())
            .await
            .expect("an arrival within 10 s")
            .expect("the peer is up")
    }

    #[tokio::test]
    async fn a_consensus_message_passes_a_transaction_batch_the_peer_is_still_answering() {
        let gate = Arc::new(Semaphore::new(0));
        let (address, mut arrivals) = peer(gate.clone()).await;
        let (transport, _stop, _reports) = transport();
        let (me, them) = (NodeId(0), NodeId(1));
        transport.relay(them, &address, me, tx(1));
        assert_eq!(next(&mut arrivals).await, ("/Transaction".into(), 1));
        // The peer holds that batch unanswered while a proposal is queued.
        transport.send(
            them,
            &address,
            Outgoing {
                path: routes::PROPOSE_BLOCK.path,
                body: axum::body::Bytes::from_static(b"{}"),
                queued: Instant::now(),
            },
        );
        assert_eq!(next(&mut arrivals).await, ("/ProposeBlock".into(), 0));
        gate.add_permits(1);
    }

    #[tokio::test]
    async fn transactions_queued_while_a_batch_is_in_flight_leave_together_when_it_is_answered() {
        let gate = Arc::new(Semaphore::new(0));
        let (address, mut arrivals) = peer(gate.clone()).await;
        let (transport, _stop, _reports) = transport();
        let (me, them) = (NodeId(0), NodeId(1));
        transport.relay(them, &address, me, tx(0));
        assert_eq!(
            next(&mut arrivals).await.1,
            1,
            "after a quiet spell: at once"
        );
        for nonce in 1..=100 {
            transport.relay(them, &address, me, tx(nonce));
        }
        assert_eq!(transport.queued(), 100, "waiting for the batch in flight");
        gate.add_permits(1);
        assert_eq!(next(&mut arrivals).await.1, 100, "one batch of all of them");
        gate.add_permits(1);
    }
}
