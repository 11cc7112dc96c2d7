//! The replica tests' harness: N replicas on an instant, in-order network whose timers fire
//! only when a test asks, so each test states exactly which event happens. Each test file
//! uses part of it.
#![allow(dead_code)]

use consensus_core::crypto::Keypair;
use consensus_core::event::Event;
use consensus_core::message::{Block, BlockHeader, Genesis, Proposal};
use consensus_core::timer::{Timer, TimerKind};
use consensus_core::types::{Hash32, NodeId};
use consensus_core::{ConsensusMessage, Input, Output, Replica, ReplicaConfig};

pub fn key(i: usize) -> Keypair {
    Keypair::from_secret([i as u8 + 1; 32])
}

pub fn genesis(n: usize) -> Genesis {
    Genesis::new(
        "test",
        0,
        (0..n).map(|i| (key(i).public(), format!("127.0.0.1:{}", 9000 + i))),
    )
}

/// N replicas, an instant in-order network, and the timers each one scheduled.
pub struct Net {
    pub nodes: Vec<Replica>,
    /// Nodes that neither send nor receive.
    pub down: Vec<bool>,
    pub timers: Vec<Vec<Timer>>,
    pub events: Vec<Vec<Event>>,
    pub committed: Vec<Vec<Block>>,
    pub sent: Vec<Vec<ConsensusMessage>>,
    pub now: u64,
    /// Messages above this height are not delivered, so an instant network with
    /// `create_empty_blocks` does not run forever.
    pub max_height: u64,
}

impl Net {
    pub fn new(n: usize) -> Self {
        Self::with_config(n, ReplicaConfig::default())
    }

    pub fn with_config(n: usize, config: ReplicaConfig) -> Self {
        let g = genesis(n);
        Self {
            nodes: (0..n)
                .map(|i| Replica::new(config.clone(), &g, key(i), i as u64))
                .collect(),
            down: vec![false; n],
            timers: vec![Vec::new(); n],
            events: vec![Vec::new(); n],
            committed: vec![Vec::new(); n],
            sent: vec![Vec::new(); n],
            now: 1_000,
            max_height: 1,
        }
    }

    /// Starts every node and lets the first proposer's empty-block pause pass.
    pub fn start(&mut self) {
        for i in 0..self.nodes.len() {
            self.input(i, Input::Start);
        }
        self.next_block();
    }

    /// Fires the proposers' empty-block pause: the next height gets its proposal.
    pub fn next_block(&mut self) {
        for i in 0..self.nodes.len() {
            self.fire(i, TimerKind::BlockInterval);
        }
    }

    /// Feeds one input and delivers everything that follows, breadth first.
    pub fn input(&mut self, to: usize, input: Input) {
        let mut queue = std::collections::VecDeque::from([(to, input)]);
        while let Some((to, input)) = queue.pop_front() {
            if self.down[to] {
                continue;
            }
            if matches!(&input, Input::Message { message, .. } if message.height() > self.max_height)
            {
                continue;
            }
            let outputs = self.nodes[to].handle(self.now, input);
            for o in outputs {
                match o {
                    Output::Broadcast(m) => {
                        self.sent[to].push(m.clone());
                        for j in 0..self.nodes.len() {
                            if j != to {
                                queue.push_back((
                                    j,
                                    Input::Message {
                                        from: NodeId(to as u16),
                                        message: m.clone(),
                                    },
                                ));
                            }
                        }
                    }
                    Output::Send { to: peer, message } => queue.push_back((
                        peer.index(),
                        Input::Message {
                            from: NodeId(to as u16),
                            message,
                        },
                    )),
                    Output::ScheduleTimer(t) => self.timers[to].push(t),
                    Output::Commit(b) => self.committed[to].push(b),
                    Output::Event(e) => self.events[to].push(e),
                    Output::BroadcastTx { .. }
                    | Output::RequestSync { .. }
                    | Output::ForkProof(_)
                    | Output::CompareWithStored(_)
                    | Output::PersistLockedProposal(_)
                    | Output::PersistSignState(_) => {}
                }
            }
        }
    }

    /// Fires every pending timer of `kind` at node `i` (advancing the clock to it).
    pub fn fire(&mut self, i: usize, kind: TimerKind) {
        let due: Vec<Timer> = self.timers[i]
            .iter()
            .filter(|t| t.kind == kind)
            .copied()
            .collect();
        self.timers[i].retain(|t| t.kind != kind);
        for t in due {
            self.now = self.now.max(t.deadline_ms);
            self.input(i, Input::Timeout(t));
        }
    }

    pub fn heights(&self) -> Vec<u64> {
        self.nodes.iter().map(|r| r.height()).collect()
    }
}

pub fn proposal(
    g: &Genesis,
    proposer: usize,
    height: u64,
    round: u32,
    prev: Hash32,
    ts: u64,
) -> Proposal {
    let chain = consensus_core::chain::ChainState::genesis(g);
    let block = Block {
        header: BlockHeader {
            version: 1,
            height,
            round,
            prev_hash: prev,
            proposer: NodeId(proposer as u16),
            timestamp_ms: ts,
            tx_root: Block::compute_tx_root(&[]),
            validator_set_hash: chain.validator_set_hash(),
        },
        txs: vec![],
        commit: None,
    };
    Proposal::new_signed(
        &g.chain_id(),
        &key(proposer),
        round,
        block,
        None,
        NodeId(proposer as u16),
    )
}
