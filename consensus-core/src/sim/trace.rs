//! The trace hash: a running SHA-256 over a compact record of every event, input and
//! output of a run. Two runs of one seed must produce the same hash, natively and in wasm;
//! the hash is what the determinism test compares.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::input::{Input, SyncResponse};
use crate::message::ConsensusMessage;
use crate::types::{Hash32, NodeId};
use crate::Output;

/// The tag that starts each simulator record in the hash (replica inputs and outputs have
/// their own, [`Trace::input`] and [`Trace::output`]). The values are part of every
/// recorded trace hash: never renumber one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Tag {
    Boot = 1,
    ByzantineTimer = 2,
    Partition = 3,
    Heal = 4,
    UndecodableBytes = 5,
    SyncServed = 6,
    Crash = 7,
    Restart = 8,
    FaultsEnd = 9,
    ViewerCrash = 11,
    ViewerRestart = 12,
    ViewerTurnByzantine = 13,
}

/// The running trace hash: a compact binary record of everything that happens. The
/// buffer is reused for JSON records: serde_json writes a value in many small pieces, and
/// one hash update per record is cheaper than one per piece (the hashed bytes are the same).
pub(super) struct Trace(Sha256, Vec<u8>);

impl Trace {
    pub(super) fn new() -> Self {
        Self(Sha256::new(), Vec::new())
    }
    pub(super) fn u8(&mut self, v: u8) {
        self.0.update([v]);
    }
    pub(super) fn tag(&mut self, tag: Tag) {
        self.u8(tag as u8);
    }
    pub(super) fn u64(&mut self, v: u64) {
        self.0.update(v.to_be_bytes());
    }
    pub(super) fn hash(&mut self, h: &Hash32) {
        self.0.update(h.0);
    }
    pub(super) fn json<T: Serialize>(&mut self, v: &T) {
        // Serializing these types cannot fail (no maps with non-string keys, no I/O error).
        self.1.clear();
        let _ = serde_json::to_writer(&mut self.1, v);
        self.0.update(&self.1);
    }
    /// A message is identified by its kind, coordinates, signer and signature (Ed25519 is
    /// deterministic, so equal signatures mean equal signed content).
    pub(super) fn msg(&mut self, m: &ConsensusMessage) {
        let (tag, sig) = match m {
            ConsensusMessage::Proposal(p) => (1, &p.signature),
            ConsensusMessage::Vote(v) => (2, &v.signature),
            ConsensusMessage::NewRound(v) => (3, &v.signature),
        };
        self.u8(tag);
        self.u64(m.height());
        self.u64(m.round() as u64);
        self.u64(m.signer().0 as u64);
        self.0.update(sig.0);
        if let ConsensusMessage::Proposal(p) = m {
            self.hash(&p.block.hash());
        }
    }
    pub(super) fn sync_response(&mut self, r: &SyncResponse) {
        match r {
            SyncResponse::NoCommonHash => self.u8(0),
            SyncResponse::MissingBlocks { blocks } => {
                self.u8(1);
                blocks.iter().for_each(|b| self.hash(&b.hash()));
            }
            SyncResponse::ChainPage {
                blocks,
                chain_length,
            } => {
                self.u8(2);
                self.u64(*chain_length);
                blocks.iter().for_each(|b| self.hash(&b.hash()));
            }
        }
    }
    pub(super) fn hex(&self) -> String {
        hex::encode(self.0.clone().finalize())
    }

    /// Records an input delivered to honest node `id`.
    pub(super) fn input(&mut self, id: NodeId, input: &Input) {
        let t = self;
        t.u8(0x10);
        t.u64(id.0 as u64);
        match input {
            Input::Start => t.u8(0),
            Input::Message { from, message } => {
                t.u8(1);
                t.u64(from.0 as u64);
                t.msg(message);
            }
            Input::Timeout(timer) => {
                t.u8(2);
                t.json(timer);
            }
            Input::Transaction { tx, origin } => {
                t.u8(3);
                t.u64(origin.map_or(u64::MAX, |o| o.0 as u64));
                t.hash(&tx.hash());
            }
            Input::SyncResponse { from, response } => {
                t.u8(4);
                t.u64(from.0 as u64);
                t.sync_response(response);
            }
            Input::PeerReport { peer, ok, rtt_ms } => {
                t.u8(5);
                t.u64(peer.0 as u64);
                t.u8(*ok as u8);
                t.u64(rtt_ms.unwrap_or(u64::MAX));
            }
            Input::PeerTip { peer, height } => {
                t.u8(6);
                t.u64(peer.0 as u64);
                t.u64(*height);
            }
            Input::ForkProof(proof) => {
                t.u8(7);
                t.json(proof);
            }
        }
    }

    /// Records an output of honest node `id`.
    pub(super) fn output(&mut self, id: NodeId, out: &Output) {
        let t = self;
        t.u8(0x20);
        t.u64(id.0 as u64);
        match out {
            Output::PersistSignState(s) => {
                t.u8(0);
                t.json(s);
            }
            Output::Broadcast(m) => {
                t.u8(1);
                t.msg(m);
            }
            Output::Send { to, message } => {
                t.u8(2);
                t.u64(to.0 as u64);
                t.msg(message);
            }
            Output::BroadcastTx { tx, except } => {
                t.u8(3);
                t.hash(&tx.hash());
                t.u64(except.map_or(u64::MAX, |o| o.0 as u64));
            }
            Output::ScheduleTimer(timer) => {
                t.u8(4);
                t.json(timer);
            }
            Output::Commit(b) => {
                t.u8(5);
                t.hash(&b.hash());
            }
            Output::RequestSync { peer, request } => {
                t.u8(6);
                t.u64(peer.0 as u64);
                t.json(request);
            }
            Output::Event(e) => {
                t.u8(7);
                t.json(e);
            }
            Output::ForkProof(proof) => {
                t.u8(8);
                t.json(proof);
            }
            Output::CompareWithStored(block) => {
                t.u8(10);
                t.hash(&block.hash());
            }
            Output::PersistLockedProposal(p) => {
                t.u8(9);
                t.msg(&ConsensusMessage::Proposal(p.clone()));
            }
        }
    }
}
