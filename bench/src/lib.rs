//! Fixtures for the benches: keys, a genesis of n validators, signed client transactions and
//! certified blocks, built the way nodes build them (real Ed25519 signatures throughout).

use consensus_core::chain::ChainState;
use consensus_core::crypto::Keypair;
use consensus_core::quorum::quorum;
use consensus_core::{Block, Certificate, Genesis, Hash32, NodeId, Transaction, TxKind};

/// Validator `i`'s key.
pub fn validator_key(i: usize) -> Keypair {
    Keypair::from_secret([i as u8 + 1; 32])
}

pub fn genesis(n: usize) -> Genesis {
    Genesis::new(
        "bench",
        1_700_000_000_000,
        (0..n).map(|i| (validator_key(i).public(), format!("127.0.0.1:{}", 8700 + i))),
    )
}

/// `count` signed `message` transactions of `payload_bytes` each, from one client.
pub fn message_txs(
    chain_id: &Hash32,
    count: usize,
    payload_bytes: usize,
    ts: u64,
) -> Vec<Transaction> {
    let client = Keypair::from_secret([0xc1; 32]);
    (0..count)
        .map(|k| {
            Transaction::new_signed(
                chain_id,
                &client,
                TxKind::Message,
                vec![b'x'; payload_bytes],
                k as u64,
                ts,
            )
        })
        .collect()
}

/// A chain from the bench genesis that grows one certified block at a time.
pub struct ChainBuilder {
    pub genesis: Genesis,
    pub chain: ChainState,
    keys: Vec<Keypair>,
}

impl ChainBuilder {
    pub fn new(n: usize) -> Self {
        let genesis = genesis(n);
        Self {
            chain: ChainState::genesis(&genesis),
            keys: (0..n).map(validator_key).collect(),
            genesis,
        }
    }

    /// The next block with `txs`, proposed in round 0 and certified by the first q
    /// validators, not yet applied.
    pub fn certified(&self, txs: Vec<Transaction>) -> Block {
        let chain = &self.chain;
        let ts = chain.last_timestamp_ms() + 1_000;
        let mut block = chain.next_block(0, chain.proposer(0), ts, txs);
        let signers = (0..quorum(self.keys.len()) as u16)
            .map(NodeId)
            .zip(&self.keys);
        block.commit = Some(Certificate::signed_by(
            &chain.chain_id(),
            block.height(),
            0,
            block.hash(),
            signers,
        ));
        block
    }

    /// Builds, applies and returns the next block.
    pub fn push(&mut self, txs: Vec<Transaction>) -> Block {
        let block = self.certified(txs);
        self.chain.apply(&block);
        block
    }

    /// Transactions valid for the next block (timestamps within its window).
    pub fn txs(&self, count: usize, payload_bytes: usize) -> Vec<Transaction> {
        let ts = self.chain.last_timestamp_ms() + 1_000;
        message_txs(&self.chain.chain_id(), count, payload_bytes, ts)
    }
}
