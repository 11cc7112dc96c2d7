//! The simulated network: a virtual-time event queue and a link model.
//!
//! Time is a plain `u64` of milliseconds that only moves when the queue pops an event.
//! Events are ordered by `(time, sequence)`, the sequence being the order of insertion, so
//! two events due at the same millisecond always run in the same order and a seed replays
//! bit for bit. Reordering is not a separate knob: every copy of a message draws its own
//! latency from the link's range, so later sends often overtake earlier ones.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;

use rand_core::RngCore;

use crate::input::{SyncRequest, SyncResponse};
use crate::message::{ConsensusMessage, Transaction};
use crate::types::{NodeId, VoteKind};
use serde::Serialize;

use super::{below, between, chance};

/// What travels over a simulated link.
#[derive(Clone, Debug)]
pub enum Payload {
    /// A consensus message, shared between the copies of one broadcast.
    Message(Arc<ConsensusMessage>),
    /// Raw bytes the receiving host pushes through its wire decoder (Byzantine garbage).
    Bytes(Vec<u8>),
    /// A transaction rebroadcast by a peer.
    Tx(Arc<Transaction>),
    SyncRequest(SyncRequest),
    SyncResponse(SyncResponse),
}

impl Payload {
    pub fn message(m: ConsensusMessage) -> Self {
        Payload::Message(Arc::new(m))
    }

    /// What the visualizer draws it as.
    pub fn kind(&self) -> MessageKind {
        match self {
            Payload::Message(m) => match &**m {
                ConsensusMessage::Proposal(_) => MessageKind::Proposal,
                ConsensusMessage::Vote(v) => match v.kind {
                    VoteKind::Verification => MessageKind::VerificationVote,
                    VoteKind::Commit => MessageKind::CommitVote,
                },
                ConsensusMessage::NewRound(_) => MessageKind::NewRound,
            },
            Payload::Bytes(_) => MessageKind::Garbage,
            Payload::Tx(_) => MessageKind::Transaction,
            Payload::SyncRequest(_) => MessageKind::SyncRequest,
            Payload::SyncResponse(_) => MessageKind::SyncResponse,
        }
    }

    /// The consensus message it carries, if it is one.
    pub fn consensus_message(&self) -> Option<&ConsensusMessage> {
        match self {
            Payload::Message(m) => Some(m),
            _ => None,
        }
    }
}

/// The kinds of message a simulated link carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    Proposal,
    VerificationVote,
    CommitVote,
    /// A view-change vote (`/MissingProposer`).
    NewRound,
    Transaction,
    SyncRequest,
    SyncResponse,
    /// Bytes no decoder accepts (a Byzantine strategy).
    Garbage,
}

struct Entry<T> {
    at_ms: u64,
    seq: u64,
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.at_ms, self.seq) == (other.at_ms, other.seq)
    }
}
impl<T> Eq for Entry<T> {}
impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Entry<T> {
    // Reversed: `BinaryHeap` is a max-heap and we pop the earliest (time, seq) first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at_ms, other.seq).cmp(&(self.at_ms, self.seq))
    }
}

/// A bounded priority queue of future events ordered by `(time, insertion sequence)`.
pub struct EventQueue<T> {
    heap: BinaryHeap<Entry<T>>,
    next_seq: u64,
    capacity: usize,
    overflowed: u64,
}

impl<T> EventQueue<T> {
    pub fn new(capacity: usize) -> Self {
        Self {
            heap: BinaryHeap::new(),
            next_seq: 0,
            capacity,
            overflowed: 0,
        }
    }

    /// Queues a droppable item (a network message). Returns false, and counts an overflow,
    /// when the queue is full: a flood of messages then behaves like a congested link
    /// instead of exhausting memory.
    pub fn push(&mut self, at_ms: u64, item: T) -> bool {
        if self.heap.len() >= self.capacity {
            self.overflowed += 1;
            return false;
        }
        self.push_control(at_ms, item);
        true
    }

    /// Queues an item that must not be lost (timers, the fault schedule). Their number is
    /// bounded by the replicas' timer discipline and the schedule, not by peers.
    pub fn push_control(&mut self, at_ms: u64, item: T) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Entry { at_ms, seq, item });
    }

    /// Removes and returns the earliest event.
    pub fn pop(&mut self) -> Option<(u64, T)> {
        self.heap.pop().map(|e| (e.at_ms, e.item))
    }

    pub fn peek_time(&self) -> Option<u64> {
        self.heap.peek().map(|e| e.at_ms)
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Every queued item with its time, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &T)> {
        self.heap.iter().map(|e| (e.at_ms, &e.item))
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Messages refused because the queue was full.
    pub fn overflowed(&self) -> u64 {
        self.overflowed
    }
}

/// What happens to one message handed to the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// The link is cut by a partition: the sender's transport notices.
    Blocked,
    /// Lost at random: nobody notices.
    Lost,
    /// Arrives after `latency_ms`; `duplicate_ms` is a second copy's latency.
    Delivered {
        latency_ms: u64,
        duplicate_ms: Option<u64>,
    },
}

/// The link model shared by all pairs of nodes.
#[derive(Clone, Debug)]
pub struct Network {
    latency_ms_min: u64,
    latency_ms_max: u64,
    drop: f64,
    duplicate: f64,
    /// Loss and duplication apply only while faults are on (the fault phase).
    faults: bool,
    /// Partition group per node; nodes in different groups cannot talk. All zero = healed.
    groups: Vec<u8>,
}

impl Network {
    pub fn new(
        nodes: usize,
        latency_ms_min: u64,
        latency_ms_max: u64,
        drop: f64,
        duplicate: f64,
    ) -> Self {
        Self {
            latency_ms_min: latency_ms_min.min(latency_ms_max),
            latency_ms_max: latency_ms_max.max(latency_ms_min),
            drop,
            duplicate,
            faults: true,
            groups: vec![0; nodes],
        }
    }

    pub fn set_faults(&mut self, on: bool) {
        self.faults = on;
    }

    pub fn faults(&self) -> bool {
        self.faults
    }

    pub fn partition(&mut self, groups: Vec<u8>) {
        if groups.len() == self.groups.len() {
            self.groups = groups;
        }
    }

    pub fn heal(&mut self) {
        self.groups.iter_mut().for_each(|g| *g = 0);
    }

    pub fn is_partitioned(&self) -> bool {
        self.groups.iter().any(|g| *g != 0)
    }

    pub fn groups(&self) -> &[u8] {
        &self.groups
    }

    pub fn group_of(&self, node: NodeId) -> u8 {
        self.groups.get(node.index()).copied().unwrap_or(0)
    }

    /// Whether a partition separates `a` from `b`.
    pub fn blocked(&self, a: NodeId, b: NodeId) -> bool {
        self.group_of(a) != self.group_of(b)
    }

    pub fn latency_ms_max(&self) -> u64 {
        self.latency_ms_max
    }

    /// One latency draw from the link's range.
    pub fn latency(&self, rng: &mut impl RngCore) -> u64 {
        between(rng, self.latency_ms_min, self.latency_ms_max)
    }

    /// Decides the fate of one message from `from` to `to`. Always draws the same number of
    /// random values for an unblocked link, so changing `drop` does not shift later draws.
    pub fn route(&self, rng: &mut impl RngCore, from: NodeId, to: NodeId) -> Fate {
        if self.blocked(from, to) {
            return Fate::Blocked;
        }
        let lost = chance(rng, self.drop);
        let dup = chance(rng, self.duplicate);
        let latency_ms = self.latency(rng);
        let dup_latency = self.latency(rng);
        if self.faults && lost {
            return Fate::Lost;
        }
        Fate::Delivered {
            latency_ms,
            duplicate_ms: (self.faults && dup).then_some(dup_latency),
        }
    }
}

/// A random partition of `n` nodes into two non-empty groups (0 and 1): half the time an
/// even split (the case where an unsafe quorum rule lets both sides commit), otherwise a
/// minority of 1..=max(1, f) nodes cut off from the rest.
pub fn random_partition(rng: &mut impl RngCore, n: usize) -> Vec<u8> {
    let mut ids: Vec<usize> = (0..n).collect();
    // Fisher-Yates with our own draws (no `rand` crate in the core).
    for i in (1..n).rev() {
        let j = below(rng, i as u64 + 1) as usize;
        ids.swap(i, j);
    }
    let f = crate::quorum::max_faulty(n).max(1);
    let cut = if n < 2 {
        0
    } else if chance(rng, 0.5) {
        n / 2
    } else {
        (between(rng, 1, f as u64) as usize).min(n - 1)
    };
    let mut groups = vec![0u8; n];
    for id in ids.iter().take(cut) {
        groups[*id] = 1;
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn queue_pops_by_time_then_insertion_order() {
        let mut q = EventQueue::new(10);
        q.push(5, "b");
        q.push(3, "a");
        q.push(5, "c");
        q.push_control(3, "a2");
        let order: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(order, vec![(3, "a"), (3, "a2"), (5, "b"), (5, "c")]);
    }

    #[test]
    fn full_queue_drops_messages_but_not_control_events() {
        let mut q = EventQueue::new(1);
        assert!(q.push(1, 1));
        assert!(!q.push(1, 2));
        q.push_control(1, 3);
        assert_eq!(q.len(), 2);
        assert_eq!(q.overflowed(), 1);
    }

    #[test]
    fn partitions_block_both_directions_and_heal() {
        let mut net = Network::new(4, 10, 20, 0.0, 0.0);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        net.partition(vec![0, 0, 1, 1]);
        assert_eq!(net.route(&mut rng, NodeId(0), NodeId(2)), Fate::Blocked);
        assert_eq!(net.route(&mut rng, NodeId(3), NodeId(1)), Fate::Blocked);
        assert!(matches!(
            net.route(&mut rng, NodeId(0), NodeId(1)),
            Fate::Delivered { .. }
        ));
        net.heal();
        assert!(matches!(
            net.route(&mut rng, NodeId(0), NodeId(2)),
            Fate::Delivered { .. }
        ));
    }

    #[test]
    fn random_partitions_have_two_non_empty_sides() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for n in 2..=10 {
            for _ in 0..50 {
                let g = random_partition(&mut rng, n);
                let ones = g.iter().filter(|x| **x == 1).count();
                assert!(ones >= 1 && ones < n, "n = {n}: {g:?}");
            }
        }
    }
}
