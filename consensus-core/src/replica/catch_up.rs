//! Catching up: knowing when this validator is behind, and fetching the blocks it misses.
//!
//! [`CatchUp`] owns what tells us we are behind (validators seen signing later heights,
//! tips peers claimed, a commit quorum for a block we do not hold) and the one outstanding
//! sync request. The `impl Replica` below turns that into `/MissingBlockRequeset` and
//! `/RequestEntireBlockchain` requests and applies what comes back, validating every block.

use std::collections::BTreeMap;

use rand_chacha::rand_core::RngCore;

use super::{Out, Replica};
use crate::error::{BlockError, RejectReason, SyncError};
use crate::event::Event;
use crate::input::{SyncRequest, SyncResponse};
use crate::limits::SYNC_BLOCKS_MAX;
use crate::message::{Block, CertifiedHash, ForkProof, VoteKind};
use crate::recent_hashes::OwnHash;
use crate::timer::TimerKind;
use crate::types::{BlockHash, Height, NodeId, NodeSet};
use crate::Output;

/// What says this validator is behind, and the sync in flight. At most one request is
/// outstanding; the sync timer retries with another candidate.
#[derive(Default)]
pub(super) struct CatchUp {
    /// Validators seen signing messages of later heights, with the highest such height.
    ahead: BTreeMap<NodeId, Height>,
    /// Chain tips peers claimed ([`crate::Input::PeerTip`]): sync candidates until reached.
    claimed_tips: BTreeMap<NodeId, Height>,
    /// A commit quorum was seen for this block, which we do not hold.
    missing_block: Option<BlockHash>,
    outstanding: Option<NodeId>,
    timer_armed: bool,
}

impl CatchUp {
    /// A new height: forget what it satisfied. Validators seen beyond it are still ahead.
    pub(super) fn enter_height(&mut self, height: Height) {
        self.ahead.retain(|_, h| *h > height);
        self.claimed_tips.retain(|_, h| *h >= height);
        self.missing_block = None;
        // Timers of the old height are ignored when they fire; nothing may wait on them.
        self.outstanding = None;
        self.timer_armed = false;
    }

    pub(super) fn note_ahead(&mut self, signer: NodeId, height: Height) {
        let seen = self.ahead.entry(signer).or_insert(height);
        *seen = (*seen).max(height);
    }

    /// How many validators were seen ahead of the height being decided.
    pub(super) fn ahead_count(&self) -> usize {
        self.ahead.len()
    }

    /// Whether any validator was seen beyond `height`.
    pub(super) fn any_ahead_beyond(&self, height: Height) -> bool {
        self.ahead.values().any(|h| *h > height)
    }

    fn note_claim(&mut self, peer: NodeId, height: Height) {
        let claimed = self.claimed_tips.entry(peer).or_insert(height);
        *claimed = (*claimed).max(height);
    }

    fn claims_beyond(&self, peer: NodeId, tip: Height) -> bool {
        self.claimed_tips.get(&peer).is_some_and(|h| *h > tip)
    }

    #[cfg(debug_assertions)]
    pub(super) fn check_invariants(&self, tip: Height) {
        assert!(
            self.ahead.values().all(|h| *h > tip),
            "validators seen ahead are ahead of the tip"
        );
        assert!(self.ahead.len() <= crate::limits::VALIDATORS_MAX);
        assert!(self.claimed_tips.len() <= crate::limits::VALIDATORS_MAX);
    }
}

impl Replica {
    /// `block` differs from ours at its (committed) height: a fork proof if its certificate
    /// is valid for that height's validators. Our side's certificate is known here only for
    /// the tip; deeper, the host fills it in from its store.
    fn fork_with_ours(&self, block: &Block) -> Option<ForkProof> {
        let height = block.height();
        let cert = block.commit.as_ref()?;
        self.chain
            .verify_certificate_at(height, &block.hash(), cert)
            .ok()?;
        let ours = self.chain.hash_at(height)?;
        let our_cert = self
            .last_commit
            .as_ref()
            .filter(|b| b.hash() == ours)
            .and_then(|b| b.commit.clone());
        Some(ForkProof {
            height,
            first: CertifiedHash {
                block_hash: block.hash(),
                certificate: Some(cert.clone()),
            },
            second: CertifiedHash {
                block_hash: ours,
                certificate: our_cert,
            },
        })
    }

    /// A peer claims a longer chain: fetch from it now, or, if a sync is already running,
    /// keep the peer as a candidate for the sync timer's retry. Claims from non-validators
    /// are ignored; at most one claim per validator is kept.
    pub(super) fn on_peer_tip(&mut self, peer: NodeId, height: Height, out: &mut Out) {
        if height <= self.chain.height()
            || Some(peer) == self.id
            || self.chain.validator(peer).is_none()
        {
            return;
        }
        self.catch_up.note_claim(peer, height);
        if self.catch_up.outstanding.is_none() {
            self.request_blocks_after_tip(peer, out);
        }
    }

    /// We hold a commit quorum for `hash` but not the block: fetch it from a voter.
    pub(super) fn fetch_missing_block(&mut self, hash: BlockHash, out: &mut Out) {
        if self.catch_up.missing_block != Some(hash) {
            self.catch_up.missing_block = Some(hash);
            self.arm_sync(out, true);
        }
    }

    /// `/MissingBlockRequeset` to `peer`: the blocks after our last hash.
    fn request_blocks_after_tip(&mut self, peer: NodeId, out: &mut Out) {
        let last_hash = self.chain.last_hash();
        self.send_sync_request(peer, SyncRequest::MissingBlocks { last_hash }, out);
    }

    /// Schedules a sync attempt: right away when `urgent`, else after the sync timeout.
    pub(super) fn arm_sync(&mut self, out: &mut Out, urgent: bool) {
        if self.catch_up.outstanding.is_some() {
            return;
        }
        if urgent {
            self.request_sync(out);
        } else if !self.catch_up.timer_armed {
            self.catch_up.timer_armed = true;
            self.schedule(TimerKind::Sync, self.round, out);
        }
    }

    /// The sync timer fired: a peer that claimed a longer chain and then did not answer in
    /// time loses its claim (a claim is unauthenticated; it may come again); try another.
    pub(super) fn on_sync_timeout(&mut self, out: &mut Out) {
        self.catch_up.timer_armed = false;
        if let Some(silent) = self.catch_up.outstanding.take() {
            self.catch_up.claimed_tips.remove(&silent);
        }
        self.request_sync(out);
    }

    /// Asks one peer (a validator seen ahead, one claiming a longer chain, or a voter for
    /// the block we miss) for the blocks after our tip; retried on the sync timer.
    fn request_sync(&mut self, out: &mut Out) {
        let tip = self.chain.height();
        let c = &self.catch_up;
        let mut candidates: NodeSet = c.ahead.keys().copied().collect();
        for (id, h) in &c.claimed_tips {
            if *h > tip {
                candidates.insert(*id);
            }
        }
        if let Some(hash) = c.missing_block {
            for (round, h) in self.votes.value_quorums(VoteKind::Commit) {
                if h == hash {
                    candidates = NodeSet(
                        candidates.0 | self.votes.voters_for(round, VoteKind::Commit, Some(h)).0,
                    );
                }
            }
        }
        if let Some(me) = self.id {
            candidates.remove(me);
        }
        let candidates: Vec<NodeId> = candidates.iter().collect();
        if candidates.is_empty() {
            return;
        }
        let peer = candidates[(self.rng.next_u32() as usize) % candidates.len()];
        self.request_blocks_after_tip(peer, out);
    }

    fn send_sync_request(&mut self, peer: NodeId, request: SyncRequest, out: &mut Out) {
        self.catch_up.outstanding = Some(peer);
        out.push(Output::Event(Event::SyncRequested {
            peer,
            from_height: self.chain.height() + 1,
        }));
        out.push(Output::RequestSync { peer, request });
        if !self.catch_up.timer_armed {
            self.catch_up.timer_armed = true;
            self.schedule(TimerKind::Sync, self.round, out);
        }
    }

    pub(super) fn on_sync_response(&mut self, from: NodeId, response: SyncResponse, out: &mut Out) {
        if self.catch_up.outstanding != Some(from) {
            let reason = SyncError::Unsolicited { from };
            self.reject(from, RejectReason::InvalidSync(reason.to_string()), out);
            return;
        }
        self.catch_up.outstanding = None;
        let (blocks, more) = match response {
            SyncResponse::NoCommonHash => {
                // Req 4.10: no shared hash: page through the entire chain.
                self.send_sync_request(from, SyncRequest::EntireChain { from_height: 1 }, out);
                return;
            }
            SyncResponse::MissingBlocks { mut blocks } => {
                if blocks.is_empty() {
                    // Nothing after our tip: whatever tip it claimed, we have it now.
                    self.catch_up.claimed_tips.remove(&from);
                }
                blocks.reverse();
                let full = blocks.len() >= SYNC_BLOCKS_MAX;
                (blocks, full)
            }
            SyncResponse::ChainPage {
                blocks,
                chain_length,
            } => {
                let last = blocks.last().map(|b| b.height()).unwrap_or(0);
                (blocks, chain_length > last.saturating_add(1))
            }
        };
        if blocks.len() > SYNC_BLOCKS_MAX {
            self.health.report(from, false, None);
            return;
        }
        let (applied, error) = self.apply_synced(blocks, out);
        // A host may cut pages short (the node cuts them to its body limit): a peer that
        // claimed a tip we have not reached yet still has more for us.
        let more = more || self.catch_up.claims_beyond(from, self.chain.height());
        if self.halted.is_some() {
            return;
        }
        if let Some(e) = &error {
            // Req 4.6: a peer serving bad blocks counts toward its delinquency.
            self.health.report(from, false, None);
            let reason = match e {
                SyncError::Block { error, .. } => RejectReason::InvalidBlock(error.clone()),
                other => RejectReason::InvalidSync(other.to_string()),
            };
            self.reject(from, reason, out);
        }
        if applied > 0 {
            // Whatever was valid is committed: the height moved, so must the round state.
            out.push(Output::Event(Event::SyncApplied {
                peer: from,
                blocks: applied,
                height: self.chain.height(),
            }));
            self.enter_height(out);
            if more && error.is_none() && self.catch_up.outstanding.is_none() {
                self.request_blocks_after_tip(from, out);
            }
        }
    }

    /// Validates and commits synced blocks, oldest first, up to the first bad one. Returns
    /// how many were applied and why it stopped early, if it did. A block that conflicts
    /// with ours at its height and carries a valid certificate is not a bad peer's: it is a
    /// fork proof, and committing stops (DESIGN §3).
    fn apply_synced(&mut self, blocks: Vec<Block>, out: &mut Out) -> (usize, Option<SyncError>) {
        let mut applied = 0;
        // Blocks below the kept hashes cost a certificate check and a store read each, and
        // an honest page holds at most a few: a peer replaying old blocks gets one looked
        // at per answer.
        let mut compared = false;
        for block in blocks {
            let height = block.height();
            if height <= self.chain.height() {
                match self.chain.own_hash(height) {
                    OwnHash::Known(ours) if ours == block.hash() => {}
                    OwnHash::Forgotten if compared => {}
                    OwnHash::Forgotten => {
                        compared = true;
                        // Too deep to compare here: the host compares it with its store
                        // and hands back a fork proof if ours differs (the rest of this
                        // answer is applied first; any block it commits must still extend
                        // our own tip).
                        let verified = match &block.commit {
                            Some(cert) => {
                                self.chain
                                    .verify_certificate_at(height, &block.hash(), cert)
                            }
                            None => Err(BlockError::MissingCertificate),
                        };
                        if let Err(error) = verified {
                            return (applied, Some(SyncError::Block { height, error }));
                        }
                        out.push(Output::CompareWithStored(block));
                    }
                    OwnHash::Known(_) | OwnHash::NotCommitted => {
                        if let Some(proof) = self.fork_with_ours(&block) {
                            self.fork_found(proof, out);
                            break;
                        }
                        return (applied, Some(SyncError::Conflict { height }));
                    }
                }
                continue;
            }
            // A commit quorum in our own votes for another block at this height (the keeper
            // holds the votes of the height we were deciding: the first block of the page).
            let quorums = if self.votes.height() == height {
                self.votes.value_quorums(VoteKind::Commit)
            } else {
                Vec::new()
            };
            let voted = quorums.into_iter().find(|(_, hash)| *hash != block.hash());
            if let (Some((round, hash)), Some(cert)) = (voted, &block.commit) {
                if self.chain.verify_certificate(&block.hash(), cert).is_ok() {
                    let proof = ForkProof {
                        height,
                        first: CertifiedHash {
                            block_hash: block.hash(),
                            certificate: Some(cert.clone()),
                        },
                        second: self.certified_by_votes(round, hash),
                    };
                    self.fork_found(proof, out);
                    break;
                }
            }
            if let Err(error) = self.chain.verify_certified_block(&block) {
                return (applied, Some(SyncError::Block { height, error }));
            }
            let round = block.commit.as_ref().map_or(0, |c| c.round);
            self.commit_block(block, round, out);
            applied += 1;
            if self.halted.is_some() {
                break;
            }
        }
        (applied, None)
    }
}
