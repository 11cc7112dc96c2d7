//! The one task that owns the replica (DESIGN §6). It feeds inputs in priority order
//! (control and consensus messages before timers before transactions, Req 7.4) and applies
//! the replica's outputs strictly in order: a sign state is durable before any message after
//! it leaves, a committed block is stored before anything after it happens.
//!
//! Storage writes run inline on this task. They are short LMDB transactions with an fsync;
//! consensus cannot proceed without them anyway, and handing them to another thread would
//! only add a hop between "durable" and "send".

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use consensus_core::timer::Timer;
use consensus_core::{
    Block, ConsensusMessage, Event, ForkProof, Input, NodeId, Output, Replica, SyncRequest,
    Transaction, TxError,
};
use tokio::sync::{mpsc, watch};

use super::transport::Outgoing;
use super::{
    now_ms, AlertKind, Control, NodeError, NodeStatus, Query, Shared, TxStatus, TxSubmission,
};
use crate::routes;
use crate::store::StoreError;
use crate::wire::{self, kind, ChainNotice, Envelope};

/// Sleeps until `at`, or for ever.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// How stale the published `/status` snapshot may get while anything changes.
pub const STATUS_STALE_MAX: Duration = Duration::from_millis(50);

/// Alerts kept for `/status` (newest last).
const ALERTS_MAX: usize = 32;
/// Transactions `/GetPendingTransactions` returns at most (bounded by the body limit too).
pub const PENDING_LIST_MAX: usize = 256;
/// The `kind` of a fork proof record in the evidence store.
const FORK_PROOF_KIND: &str = "fork_proof";
/// Timers kept at most; stale ones (older heights) are dropped first.
const TIMERS_MAX: usize = 4_096;

/// The driver's inbound queues, in the order it serves them (after due timers). Reads come
/// last: anyone can send them, and they must not hold back votes or transactions.
pub struct Inbound {
    pub control: mpsc::Receiver<Control>,
    pub consensus: mpsc::Receiver<(NodeId, ConsensusMessage)>,
    pub transactions: mpsc::Receiver<TxSubmission>,
    pub queries: mpsc::Receiver<Query>,
}

pub struct Driver {
    shared: Arc<Shared>,
    replica: Replica,
    /// Keyed by when they fire on the monotonic clock: a wall-clock step must neither fire
    /// every timeout at once nor hold them back.
    timers: BTreeMap<(tokio::time::Instant, u64), Timer>,
    timer_seq: u64,
    last_commit_latency_ms: Option<u64>,
    /// The proposer's timestamp of the block just stored, for the commit latency.
    last_block_timestamp_ms: u64,
    alerts: VecDeque<String>,
    /// When the `/status` snapshot must be published next (something changed since).
    status_due: Option<Instant>,
    /// Test builds: what `--misbehave replay` sends again.
    #[cfg(feature = "misbehave")]
    replay: super::misbehave::ReplayLog,
}

impl Driver {
    /// Rebuilds the replica from the store: every stored block is re-validated (certificate
    /// against its height's active set), and the last-signed state is restored so this node
    /// never signs a vote conflicting with one it signed before the restart.
    pub fn restore(shared: Arc<Shared>) -> Result<Self, NodeError> {
        let blocks = shared.store.committed_blocks()?;
        let sign_state = shared.store.sign_state()?.unwrap_or_default();
        let mut replica = Replica::new(
            shared.config.replica_config(),
            &shared.genesis,
            shared.key.clone(),
            rand::random(),
        )
        .with_verifier(shared.verifier.clone());
        let locked_proposals = shared.store.locked_proposals()?;
        replica.restore(&blocks, sign_state, &locked_proposals)?;
        let driver = Self {
            shared,
            replica,
            timers: BTreeMap::new(),
            timer_seq: 0,
            last_commit_latency_ms: None,
            last_block_timestamp_ms: 0,
            alerts: VecDeque::new(),
            status_due: None,
            #[cfg(feature = "misbehave")]
            replay: Default::default(),
        };
        driver.load_peers_from_blockchain();
        Ok(driver)
    }

    pub async fn run(
        mut self,
        mut inbound: Inbound,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), NodeError> {
        let result = self.event_loop(&mut inbound, &mut stop).await;
        if let Err(e) = &result {
            let reason = e.to_string();
            tracing::error!(error = %reason, "consensus stopped (fail-stop)");
            if let Ok(mut f) = self.shared.fatal.write() {
                *f = Some(reason);
            }
        }
        result.map_err(NodeError::Store)
    }

    async fn event_loop(
        &mut self,
        inbound: &mut Inbound,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), StoreError> {
        for proof in self.stored_fork_proofs()? {
            self.step(Input::ForkProof(proof))?;
        }
        self.step(Input::Start)?;
        self.ask_peers_for_their_tips();
        loop {
            // Due timers first: under a steady stream of messages the biased select below
            // would never reach its timer arm, and a stuck round would never time out.
            self.fire_due_timers()?;
            // Checked here too: under a steady stream of messages the biased select below
            // would never reach its publish arm, and `/status` would go stale.
            if self.status_due.is_some_and(|at| at <= Instant::now()) {
                self.publish_status();
            }
            let next_timer = self.timers.keys().next().map(|(at, _)| *at);
            let timer = sleep_until(next_timer);
            let publish = sleep_until(self.status_due.map(tokio::time::Instant::from_std));
            tokio::select! {
                biased;
                _ = stop.changed() => return Ok(()),
                Some(control) = inbound.control.recv() => self.on_control(control)?,
                Some((from, message)) = inbound.consensus.recv() => {
                    self.step(Input::Message { from, message })?
                }
                _ = timer => self.fire_due_timers()?,
                _ = publish => {
                    // Publishing changes nothing to publish: no new deadline (an idle
                    // node goes quiet).
                    self.publish_status();
                    continue;
                }
                Some(submission) = inbound.transactions.recv() => self.on_transaction(submission)?,
                Some(query) = inbound.queries.recv() => self.answer(query),
            }
            self.publish_queue_depths();
            self.status_due
                .get_or_insert_with(|| Instant::now() + STATUS_STALE_MAX);
        }
    }

    fn step(&mut self, input: Input) -> Result<(), StoreError> {
        let now = now_ms();
        let outputs = self.replica.handle(now, input);
        self.apply(now, outputs)
    }

    fn apply(&mut self, now: u64, outputs: Vec<Output>) -> Result<(), StoreError> {
        // Answers to `CompareWithStored` go back in after this batch: feeding them mid-loop
        // would interleave a second batch of outputs with this one.
        let mut fork_proofs = Vec::new();
        for output in outputs {
            #[cfg(feature = "misbehave")]
            let Some(output) = self.misbehave(now, output) else {
                continue;
            };
            match output {
                Output::PersistSignState(state) => {
                    crate::fail_point!(SIGN_STATE_BEFORE_PERSIST);
                    self.shared.store.save_sign_state(&state)?;
                    crate::fail_point!(SIGN_STATE_AFTER_PERSIST);
                }
                Output::PersistLockedProposal(proposal) => {
                    self.shared.store.save_locked_proposal(&proposal)?;
                    crate::fail_point!(LOCKED_AFTER_PERSIST);
                }
                Output::Commit(block) => {
                    self.commit(block)?;
                    crate::fail_point!(COMMIT_AFTER_STORE);
                }
                Output::Broadcast(message) => {
                    let to: Vec<NodeId> = self.peers().collect();
                    self.send_message(now, &to, &message);
                }
                Output::Send { to, message } => self.send_message(now, &[to], &message),
                Output::BroadcastTx { tx, except } => self.rebroadcast_transaction(tx, except),
                Output::ScheduleTimer(timer) => self.schedule(timer),
                Output::RequestSync { peer, request } => self.request_sync(peer, request),
                Output::ForkProof(proof) => self.keep_fork_proof(proof)?,
                Output::CompareWithStored(theirs) => {
                    let ours = self.shared.store.block(theirs.height())?;
                    fork_proofs.extend(ours.and_then(|ours| ForkProof::between(&theirs, &ours)));
                }
                Output::Event(event) => self.on_event(now, event),
            }
        }
        for proof in fork_proofs {
            self.step(Input::ForkProof(proof))?;
        }
        Ok(())
    }

    /// Test builds with `--misbehave`: this node's proposals and votes leave as a Byzantine
    /// node's would ([`super::misbehave`]), sent here; every other output goes on (`Some`).
    #[cfg(feature = "misbehave")]
    fn misbehave(&self, now: u64, output: Output) -> Option<Output> {
        let (Some(misbehaviour), Some(me)) = (self.shared.config.misbehaviour, self.replica.id())
        else {
            return Some(output);
        };
        if misbehaviour == super::misbehave::Misbehaviour::Replay {
            // What was sent a second ago goes again: the same bytes, then re-sealed now
            // (queued directly: a replay is not recorded to be replayed again).
            for old in self.replay.due(Instant::now()) {
                self.queue_for(old.to.iter().copied(), old.path, old.body);
                let resealed = wire::seal_message(
                    &self.shared.chain_id,
                    &self.shared.key,
                    me,
                    now,
                    &old.message,
                );
                self.queue_for(old.to, old.path, axum::body::Bytes::from(resealed));
            }
        }
        let peers: Vec<NodeId> = self.peers().collect();
        let (to, message) = match output {
            Output::Broadcast(message) => (peers.clone(), message),
            Output::Send { to, message } => (vec![to], message),
            other => return Some(other),
        };
        let signer = super::misbehave::Signer {
            chain_id: &self.shared.chain_id,
            key: &self.shared.key,
            id: me,
        };
        for (to, message) in misbehaviour.outgoing(&signer, &peers, &to, message) {
            self.send_message(now, &to, &message);
        }
        None
    }

    /// Req 8.7: more than f validators signed conflicting blocks. The proof is kept for good
    /// (with our own side's certificate filled in from the store), fed back to the replica
    /// after every restart, and shown in `/status`.
    fn keep_fork_proof(&mut self, mut proof: ForkProof) -> Result<(), StoreError> {
        for side in [&mut proof.first, &mut proof.second] {
            if side.certificate.is_none() {
                let ours = self.shared.store.block(proof.height)?;
                side.certificate = ours
                    .filter(|b| b.hash() == side.block_hash)
                    .and_then(|b| b.commit);
            }
        }
        let record = serde_json::json!({ "kind": FORK_PROOF_KIND, "proof": proof });
        self.shared.store.put_evidence(&record)?;
        tracing::error!(
            security = true,
            height = proof.height,
            first = %proof.first.block_hash,
            second = %proof.second.block_hash,
            "FORK PROOF: two certified blocks at one height, kept in the evidence store"
        );
        Ok(())
    }

    /// Fork proofs kept before a restart: the replica verifies each and stays halted.
    fn stored_fork_proofs(&self) -> Result<Vec<ForkProof>, StoreError> {
        Ok(self
            .shared
            .store
            .evidence()?
            .into_iter()
            .filter(|record| record["kind"] == FORK_PROOF_KIND)
            .filter_map(|record| serde_json::from_value(record["proof"].clone()).ok())
            .collect())
    }

    fn commit(&mut self, block: Block) -> Result<(), StoreError> {
        self.shared.store.append_block(&block)?;
        self.last_block_timestamp_ms = block.header.timestamp_ms;
        self.load_peers_from_blockchain();
        let current = self.replica.height() + 1;
        self.timers.retain(|_, t| t.height >= current);
        Ok(())
    }

    /// Every other registered validator (suspended ones still follow the chain and vote;
    /// removed ones are left out).
    fn peers(&self) -> impl Iterator<Item = NodeId> + '_ {
        let me = self.replica.id();
        self.replica
            .chain_state()
            .registered()
            .iter()
            .filter(move |id| Some(*id) != me)
    }

    fn address_of(&self, id: NodeId) -> Option<String> {
        self.replica
            .chain_state()
            .validator(id)
            .map(|v| v.address.clone())
    }

    /// `pbft_node_broadcast_block`, `..._verification_vote`, `..._commit_vote` and the
    /// `/MissingProposer` vote: one sealed envelope, queued for each peer.
    fn send_message(&self, now: u64, to: &[NodeId], message: &ConsensusMessage) {
        let Some(me) = self.replica.id() else { return };
        let body = axum::body::Bytes::from(wire::seal_message(
            &self.shared.chain_id,
            &self.shared.key,
            me,
            now,
            message,
        ));
        let path = wire::path_of(message);
        #[cfg(feature = "misbehave")]
        if self.shared.config.misbehaviour == Some(super::misbehave::Misbehaviour::Replay) {
            self.replay.record(super::misbehave::Sent {
                at: Instant::now(),
                to: to.to_vec(),
                path,
                body: body.clone(),
                message: message.clone(),
            });
        }
        self.queue_for(to.iter().copied(), path, body);
        crate::fail_point!(MESSAGE_QUEUED);
    }

    /// Queues one sealed body for each of `peers` (at their address on chain).
    fn queue_for(
        &self,
        peers: impl IntoIterator<Item = NodeId>,
        path: &'static str,
        body: axum::body::Bytes,
    ) {
        let outgoing = Outgoing {
            path,
            body,
            queued: Instant::now(),
        };
        for peer in peers {
            if let Some(address) = self.address_of(peer) {
                self.shared.transport.send(peer, &address, outgoing.clone());
            }
        }
    }

    /// `pbft_node_rebroadcast_transaction`: the transaction, unmodified (its own signature
    /// intact), to every peer but its origin (Req 10.2, 10.6), in the peer's next batch.
    fn rebroadcast_transaction(&self, tx: Transaction, except: Option<NodeId>) {
        let Some(me) = self.replica.id() else { return };
        for peer in self.peers().filter(|&p| Some(p) != except) {
            if let Some(address) = self.address_of(peer) {
                self.shared.transport.relay(peer, &address, me, tx.clone());
            }
        }
    }

    fn schedule(&mut self, timer: Timer) {
        if self.timers.len() >= TIMERS_MAX {
            let current = self.replica.height() + 1;
            self.timers.retain(|_, t| t.height >= current);
            if self.timers.len() >= TIMERS_MAX {
                self.timers.pop_first();
            }
        }
        self.timer_seq += 1;
        // The replica speaks in its (wall-clock) ms; the wait is what is left of it now.
        let wait = Duration::from_millis(timer.deadline_ms.saturating_sub(now_ms()));
        let at = tokio::time::Instant::now() + wait;
        self.timers.insert((at, self.timer_seq), timer);
    }

    /// Fires the timers due now, oldest first. Timers scheduled while firing wait for the
    /// next turn of the loop even if already due (a zero-length timeout must not spin here).
    fn fire_due_timers(&mut self) -> Result<(), StoreError> {
        let now = tokio::time::Instant::now();
        let later = self.timers.split_off(&(now + Duration::from_millis(1), 0));
        let due = std::mem::replace(&mut self.timers, later);
        for timer in due.into_values() {
            self.step(Input::Timeout(timer))?;
        }
        Ok(())
    }

    /// `pbft_node_request_missing_blocks_from_peer` / `..._request_entire_blockchain_from_peer`:
    /// a signed request; the signed answer goes back to the replica, which validates every
    /// block. A failed exchange counts against the peer (Req 4.6).
    fn request_sync(&self, peer: NodeId, request: SyncRequest) {
        let Some(validator) = self.replica.chain_state().validator(peer).cloned() else {
            return;
        };
        // A validator that just joined is not one in its own (short) chain yet: it signs
        // with its key and no id, and the peer finds the key in its longer chain.
        let me = self.replica.id().unwrap_or(wire::NO_ID);
        match request {
            SyncRequest::MissingBlocks { last_hash } => self.spawn_sync_exchange(
                peer,
                validator,
                me,
                routes::MISSING_BLOCK_REQUEST.path,
                kind::MISSING_BLOCKS_REQUEST,
                kind::MISSING_BLOCKS,
                wire::LastHash { last_hash },
            ),
            SyncRequest::EntireChain { from_height } => self.spawn_sync_exchange(
                peer,
                validator,
                me,
                routes::REQUEST_ENTIRE_BLOCKCHAIN.path,
                kind::ENTIRE_CHAIN_REQUEST,
                kind::CHAIN_PAGE,
                wire::FromHeight { from_height },
            ),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn spawn_sync_exchange<B: wire::WireBody + Send + Sync + 'static>(
        &self,
        peer: NodeId,
        validator: consensus_core::Validator,
        me: NodeId,
        path: &'static str,
        request_kind: &'static str,
        answer_kind: &'static str,
        body: B,
    ) {
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let envelope = Envelope::seal(
                &shared.chain_id,
                &shared.key,
                me,
                request_kind,
                now_ms(),
                body,
            );
            let answer = shared
                .transport
                .exchange::<B, consensus_core::SyncResponse>(
                    &validator,
                    path,
                    &envelope,
                    &[answer_kind],
                    &shared.chain_id,
                )
                .await;
            let control = match answer {
                Ok(envelope) => Control::Sync {
                    from: peer,
                    response: envelope.body,
                },
                Err(error) => {
                    tracing::debug!(%peer, %error, "sync request failed");
                    Control::PeerReport {
                        peer,
                        ok: false,
                        rtt_ms: None,
                    }
                }
            };
            let _ = shared.control.send(control).await;
        });
    }

    /// Once at start, for every peer: `pbft_node_get_blockchain_length_from_peer` (a node
    /// that was down catches up even on an idle chain, where no message would show it is
    /// behind; each answer is only a claim, the replica validates what it then fetches),
    /// `pbft_node_get_last_block_hash_from_peer` (a peer at our height with another tip is
    /// a fork: alert), and `pbft_node_get_pending_transactions_from_peer` from the first
    /// peer that answers (transactions submitted while we were down).
    fn ask_peers_for_their_tips(&self) {
        let peers: Vec<consensus_core::Validator> = self
            .peers()
            .filter_map(|id| self.replica.chain_state().validator(id).cloned())
            .collect();
        let (our_height, our_hash) = (self.replica.height(), self.replica.last_hash());
        let me = self.replica.id().unwrap_or(wire::NO_ID);
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let mut pending_fetched = false;
            for peer in peers {
                let transport = &shared.transport;
                let Some(length) = transport.get_blockchain_length(&peer.address).await else {
                    continue;
                };
                let height = length.saturating_sub(1);
                if height > our_height {
                    let tip = Control::PeerTip {
                        peer: peer.id,
                        height,
                    };
                    let _ = shared.control.send(tip).await;
                } else if height == our_height {
                    let theirs = transport.get_last_block_hash(&peer.address).await;
                    if let Some((h, hash)) =
                        theirs.filter(|(h, hash)| *h == our_height && *hash != our_hash)
                    {
                        let alert = format!(
                            "peer {} has block {hash} at height {h}, we have {our_hash}: conflicting chains",
                            peer.id
                        );
                        let alert = Control::Alert {
                            kind: AlertKind::ConflictingChain,
                            message: alert,
                        };
                        let _ = shared.control.send(alert).await;
                    }
                }
                if !pending_fetched {
                    let envelope = Envelope::seal(
                        &shared.chain_id,
                        &shared.key,
                        me,
                        kind::PENDING_REQUEST,
                        now_ms(),
                        wire::Empty {},
                    );
                    let answer = transport
                        .exchange::<wire::Empty, wire::PendingTransactions>(
                            &peer,
                            routes::GET_PENDING_TRANSACTIONS.path,
                            &envelope,
                            &[kind::PENDING],
                            &shared.chain_id,
                        )
                        .await;
                    if let Ok(answer) = answer {
                        pending_fetched = true;
                        for tx in answer.body.pending_transactions {
                            let submission = TxSubmission {
                                tx,
                                origin: Some(peer.id),
                                reply: None,
                                signature_checked: false,
                            };
                            let _ = shared.tx_in.send(submission).await;
                        }
                    }
                }
            }
        });
    }

    fn on_control(&mut self, control: Control) -> Result<(), StoreError> {
        match control {
            Control::PeerReport { peer, ok, rtt_ms } => {
                self.step(Input::PeerReport { peer, ok, rtt_ms })
            }
            Control::Sync { from, response } => self.step(Input::SyncResponse { from, response }),
            Control::PeerTip { peer, height } => self.step(Input::PeerTip { peer, height }),
            Control::Alert { kind, message } => {
                tracing::error!(security = true, %message, "alert");
                self.shared.metrics.inc(&format!(
                    "tinyweb_security_events_total{{kind=\"{}\"}}",
                    kind.label()
                ));
                self.alert(message);
                Ok(())
            }
        }
    }

    fn answer(&self, query: Query) {
        match query {
            Query::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Query::Pending(reply) => {
                let list = self
                    .replica
                    .mempool()
                    .iter()
                    .take(PENDING_LIST_MAX)
                    .cloned()
                    .collect();
                let _ = reply.send(list);
            }
            Query::CheckJoin(join, reply) => {
                let verdict = self
                    .replica
                    .chain_state()
                    .check_join(&join, now_ms())
                    .map_err(|e| e.to_string());
                let _ = reply.send(verdict);
            }
            Query::TxStatus(hash, reply) => {
                let status = match self.shared.store.tx_height(&hash) {
                    Ok(Some(height)) => TxStatus::committed(height),
                    _ if self.replica.mempool().contains(&hash) => TxStatus::PENDING,
                    _ => TxStatus::UNKNOWN,
                };
                let _ = reply.send(status);
            }
        }
    }

    fn status(&self) -> NodeStatus {
        let validators = self.replica.chain_state().validators().to_vec();
        let mut status = NodeStatus::from_replica(
            &self.replica.status(),
            &validators,
            self.shared.key.public(),
            self.shared.chain_id,
        );
        status.last_commit_latency_ms = self.last_commit_latency_ms;
        status.alerts = self.alerts.iter().cloned().collect();
        status.outgoing_queued = self.shared.transport.queued();
        #[cfg(feature = "misbehave")]
        if let Some(misbehaviour) = self.shared.config.misbehaviour {
            status.alerts.insert(
                0,
                format!("this node is Byzantine on purpose ({misbehaviour:?}): test build"),
            );
        }
        status
    }

    /// Client transactions get the admission verdict; peers' rebroadcasts just go in (the
    /// replica checks them the same way and drops what fails).
    fn on_transaction(&mut self, submission: TxSubmission) -> Result<(), StoreError> {
        let TxSubmission {
            tx,
            origin,
            reply,
            signature_checked,
        } = submission;
        let hash = tx.hash();
        let verdict = match self
            .replica
            .check_transaction(now_ms(), &tx, signature_checked)
        {
            Ok(()) => Ok(hash),
            // Submitting the same transaction again is not an error for the client.
            Err(TxError::Duplicate) => Ok(hash),
            Err(e) => Err(e),
        };
        // A peer that relays a forged transaction is misbehaving: the replica's own check
        // refuses it again and records the peer (a `rejected` event). Other refusals (a
        // full mempool, an expired transaction) are not the peer's doing and stay quiet.
        let forged_by_peer = origin.is_some() && verdict == Err(TxError::BadSignature);
        let admitted = verdict.is_ok();
        if let Some(reply) = reply {
            let _ = reply.send(verdict);
        }
        if admitted || forged_by_peer {
            self.step(Input::Transaction { tx, origin })?;
        }
        if admitted && origin.is_none() {
            crate::fail_point!(TRANSACTION_ADMITTED);
        }
        Ok(())
    }

    fn on_event(&mut self, now: u64, event: Event) {
        self.shared.metrics.record(&event);
        log_event(&event);
        match &event {
            Event::Committed { .. } => {
                // Proposal to commit: the time a transaction waits once a block carries it
                // (the height's own duration includes idle time waiting for work).
                let latency = now.saturating_sub(self.last_block_timestamp_ms);
                self.last_commit_latency_ms = Some(latency);
                self.shared
                    .metrics
                    .set("tinyweb_last_commit_latency_ms", latency as f64);
            }
            Event::ByzantineOverload { height, detail } => self.alert(format!(
                "height {height}: more than f validators faulty: {detail}"
            )),
            Event::Equivocation {
                voter,
                kind,
                height,
                round,
            } => self.alert(format!(
                "equivocation: validator {voter} signed two {kind:?} votes at height {height} round {round}"
            )),
            Event::PeerDelinquent { peer, failures } => {
                self.alert(format!("peer {peer} delinquent after {failures} failures"))
            }
            Event::ValidatorJoined { node, .. } => {
                self.broadcast_blockchain_to_new_node(now, *node)
            }
            _ => {}
        }
        let me = self.replica.id().map(|id| id.0);
        let record = serde_json::json!({ "node": me, "timeMs": now, "event": event });
        let _ = self.shared.events.send(Arc::from(record.to_string()));
    }

    fn alert(&mut self, message: String) {
        if self.alerts.len() >= ALERTS_MAX {
            self.alerts.pop_front();
        }
        self.alerts.push_back(message);
    }

    /// `pbft_node_broadcast_blockchain_to_new_node`: tell a validator that just joined how
    /// long our chain is; it pulls (and validates) the blocks through normal sync.
    fn broadcast_blockchain_to_new_node(&self, now: u64, node: NodeId) {
        let Some(me) = self.replica.id().filter(|me| *me != node) else {
            return;
        };
        let notice = ChainNotice {
            chain_length: wire::chain_length(self.replica.height()),
            last_hash: self.replica.last_hash(),
        };
        let envelope = Envelope::seal(
            &self.shared.chain_id,
            &self.shared.key,
            me,
            kind::NEW_BLOCKCHAIN,
            now,
            notice,
        );
        if let Ok(body) = serde_json::to_vec(&envelope) {
            self.queue_for([node], routes::SEND_NEW_BLOCKCHAIN.path, body.into());
        }
    }

    /// `pbft_node_load_peers_from_blockchain`: the validator set (and so the peer list) is
    /// whatever the committed chain says; handlers authenticate senders against it.
    fn load_peers_from_blockchain(&self) {
        let validators = self.replica.chain_state().validators().to_vec();
        if let Ok(mut v) = self.shared.validators.write() {
            *v = validators;
        }
        if let Ok(mut a) = self.shared.vouchers.write() {
            *a = self.replica.chain_state().vouchers();
        }
        let status = self.replica.status();
        let m = &self.shared.metrics;
        m.set("tinyweb_height", status.height as f64);
        for (peer, failures) in &status.peer_failures {
            m.set(
                &format!("tinyweb_peer_failures{{peer=\"{peer}\"}}"),
                f64::from(*failures),
            );
            let up = if status.delinquent.contains(peer) {
                0.0
            } else {
                1.0
            };
            m.set(&format!("tinyweb_peer_up{{peer=\"{peer}\"}}"), up);
        }
    }

    fn publish_status(&mut self) {
        self.status_due = None;
        let status = Arc::new(self.status());
        if let Ok(mut slot) = self.shared.status.write() {
            *slot = Some(status);
        }
    }

    fn publish_queue_depths(&self) {
        let depth = |tx_cap: usize, free: usize| (tx_cap - free) as f64;
        let s = &self.shared;
        let m = &s.metrics;
        m.set(
            "tinyweb_queue_depth{queue=\"consensus\"}",
            depth(s.consensus_in.max_capacity(), s.consensus_in.capacity()),
        );
        m.set(
            "tinyweb_queue_depth{queue=\"transactions\"}",
            depth(s.tx_in.max_capacity(), s.tx_in.capacity()),
        );
        m.set(
            "tinyweb_queue_depth{queue=\"control\"}",
            depth(s.control.max_capacity(), s.control.capacity()),
        );
        m.set("tinyweb_mempool_txs", self.replica.mempool().len() as f64);
        s.mempool_full
            .store(self.replica.mempool().is_full(), Ordering::Relaxed);
        m.set("tinyweb_round", f64::from(self.replica.round()));
    }
}

/// Events as logs: security events at warn (Req 9.5), commits and round changes at info.
fn log_event(event: &Event) {
    match event {
        Event::Committed {
            height,
            round,
            txs,
            height_ms,
            block_hash,
        } => tracing::info!(height, round, txs, height_ms, hash = %block_hash, "committed"),
        Event::RoundChanged {
            height,
            round,
            reason,
        } if *round > 0 => tracing::info!(height, round, ?reason, "round changed"),
        Event::Rejected { from, reason } => {
            tracing::warn!(security = true, %from, %reason, "message rejected")
        }
        Event::Equivocation {
            voter,
            kind,
            height,
            round,
        } => tracing::warn!(security = true, %voter, ?kind, height, round, "equivocation"),
        Event::PeerDelinquent { peer, failures } => {
            tracing::warn!(%peer, failures, "peer delinquent")
        }
        Event::PeerRecovered { peer } => tracing::info!(%peer, "peer recovered"),
        Event::ValidatorSuspended { node, from_height } => {
            tracing::warn!(%node, from_height, "validator suspended")
        }
        Event::ValidatorReadmitted { node, from_height } => {
            tracing::info!(%node, from_height, "validator readmitted")
        }
        Event::ValidatorJoined { node, from_height } => {
            tracing::info!(%node, from_height, "validator joined")
        }
        Event::ValidatorBenched {
            node,
            from_height,
            until_height,
        } => {
            tracing::info!(%node, from_height, until_height, "validator benched for failed proposer turns")
        }
        Event::ByzantineOverload { height, detail } => {
            tracing::error!(security = true, height, %detail, "BYZANTINE OVERLOAD: committing stopped")
        }
        Event::SyncApplied {
            peer,
            blocks,
            height,
        } => tracing::info!(%peer, blocks, height, "synced"),
        other => tracing::debug!(event = ?other),
    }
}
