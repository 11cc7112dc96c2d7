//! The storage contract (issue 3, item 3), against both stores where it applies, and the
//! LMDB-only properties: reopening, a full map, and restoring a real replica.

use consensus_core::chain::ChainState;
use consensus_core::crypto::{Keypair, PROTOCOL_VERSION};
use consensus_core::effect::{LockRecord, SignedStep, VoteTarget};
use consensus_core::message::CommitSig;
use consensus_core::sync::serve;
use consensus_core::{
    Block, BlockHeader, Certificate, Genesis, Hash32, NodeId, Proposal, Replica, ReplicaConfig,
    SignState, SyncRequest, SyncResponse, Transaction, TxKind, Vote, VoteKind,
};
use tinyweb_node::store::{LmdbOptions, LmdbStore, MemoryStore, Store, StoreError};

const N: usize = 4;

fn key(i: usize) -> Keypair {
    Keypair::from_secret([i as u8 + 1; 32])
}

fn genesis() -> Genesis {
    Genesis::new(
        "store-test",
        0,
        (0..N).map(|i| (key(i).public(), format!("127.0.0.1:{}", 9000 + i))),
    )
}

/// The next block after `state` with `txs`, uncertified (a proposal).
fn proposal_block(state: &ChainState, txs: Vec<Transaction>) -> Block {
    Block {
        header: BlockHeader {
            version: PROTOCOL_VERSION,
            height: state.height() + 1,
            round: 0,
            prev_hash: state.last_hash(),
            proposer: state.proposer(0),
            timestamp_ms: state.last_timestamp_ms() + 1000,
            tx_root: Block::compute_tx_root(&txs),
            validator_set_hash: state.validator_set_hash(),
        },
        txs,
        commit: None,
    }
}

/// The next block, certified by validators 0, 1 and 2 (a quorum of 4), applied to `state`.
fn certify_next(state: &mut ChainState, txs: Vec<Transaction>) -> Block {
    let mut block = proposal_block(state, txs);
    let hash = block.hash();
    let signatures = (0..3)
        .map(|i| {
            let vote = Vote::new_signed(
                &state.chain_id(),
                &key(i),
                VoteKind::Commit,
                block.height(),
                0,
                Some(hash),
                NodeId(i as u16),
            );
            CommitSig {
                voter: vote.voter,
                signature: vote.signature,
            }
        })
        .collect();
    block.commit = Some(Certificate {
        round: 0,
        signatures,
    });
    state
        .verify_certified_block(&block)
        .expect("the test builds valid certified blocks");
    state.apply(&block);
    block
}

/// `len` certified blocks after genesis, and the chain state after them.
fn chain(len: usize) -> (ChainState, Vec<Block>) {
    let mut state = ChainState::genesis(&genesis());
    let blocks = (0..len).map(|_| certify_next(&mut state, vec![])).collect();
    (state, blocks)
}

fn message_tx(i: u64, payload_len: usize) -> Transaction {
    let chain_id = genesis().chain_id();
    Transaction::new_signed(
        &chain_id,
        &key(0),
        TxKind::Message,
        vec![7; payload_len],
        i,
        1000 + i,
    )
}

fn lmdb(dir: &std::path::Path) -> LmdbStore {
    LmdbStore::open(dir, &LmdbOptions::default(), &genesis().block()).expect("open LMDB store")
}

/// The whole contract on one store: append, read back, index, refusals, sign state,
/// evidence, peers, sync serving.
fn contract(store: &dyn Store) {
    let g = genesis().block();
    assert_eq!(store.tip_height(), 0);
    assert_eq!(store.tip_hash(), g.hash());
    assert_eq!(store.block(0).expect("read genesis"), Some(g.clone()));

    let (_, blocks) = chain(5);
    for block in &blocks {
        store.append_block(block).expect("append the next block");
    }
    assert_eq!(store.tip_height(), 5);
    assert_eq!(store.tip_hash(), blocks[4].hash());
    for block in &blocks {
        assert_eq!(
            store.block(block.height()).expect("read"),
            Some(block.clone())
        );
        assert_eq!(
            store.height_of(&block.hash()).expect("index"),
            Some(block.height())
        );
    }
    assert_eq!(store.height_of(&g.hash()).expect("index"), Some(0));
    assert_eq!(store.height_of(&Hash32([9; 32])).expect("index"), None);
    assert_eq!(store.block(6).expect("read past the tip"), None);
    assert_eq!(store.committed_blocks().expect("all"), blocks);
    assert_eq!(
        store.blocks_from(2, 2).expect("page"),
        blocks[1..3].to_vec()
    );
    assert_eq!(
        store.blocks_from(4, 10).expect("page"),
        blocks[3..].to_vec()
    );
    assert!(store.blocks_from(9, 10).expect("past the tip").is_empty());
    assert_eq!(store.blocks_from(0, 1).expect("genesis"), vec![g.clone()]);

    // Refusals: each leaves the store as it was.
    assert!(matches!(
        store.append_block(&blocks[2]),
        Err(StoreError::NotNext {
            expected: 6,
            got: 3
        })
    ));
    let (mut other_state, _) = chain(5);
    let mut stray = certify_next(&mut other_state, vec![message_tx(1, 8)]);
    stray.header.prev_hash = Hash32([1; 32]);
    assert!(matches!(
        store.append_block(&stray),
        Err(StoreError::DoesNotLink { height: 6, .. })
    ));
    let (state, _) = chain(5);
    let uncertified = proposal_block(&state, vec![]);
    assert!(matches!(
        store.append_block(&uncertified),
        Err(StoreError::MissingCertificate { height: 6 })
    ));
    assert_eq!(store.tip_height(), 5);
    assert_eq!(store.height_of(&stray.hash()).expect("index"), None);

    // Sync serving through the core's BlockStore view.
    match serve(
        &store,
        &SyncRequest::MissingBlocks {
            last_hash: blocks[1].hash(),
        },
    ) {
        SyncResponse::MissingBlocks { blocks: served } => {
            let heights: Vec<u64> = served.iter().map(Block::height).collect();
            assert_eq!(heights, vec![5, 4, 3]);
        }
        other => panic!("unexpected sync answer {other:?}"),
    }

    // Sign state: saved, read back, never moved backwards.
    assert_eq!(store.sign_state().expect("read"), None);
    let signed = SignState {
        height: 6,
        round: 1,
        step: Some(SignedStep::Verification),
        block_hash: Some(Hash32([3; 32])),
        ..SignState::default()
    };
    store.save_sign_state(&signed).expect("save sign state");
    store
        .save_sign_state(&signed)
        .expect("the same state again is fine (a re-sent vote)");
    assert_eq!(store.sign_state().expect("read"), Some(signed.clone()));
    let older = SignState {
        step: Some(SignedStep::Proposal),
        ..signed.clone()
    };
    assert!(matches!(
        store.save_sign_state(&older),
        Err(StoreError::SignStateRegression { .. })
    ));
    let conflicting = SignState {
        block_hash: Some(Hash32([4; 32])),
        ..signed.clone()
    };
    assert!(matches!(
        store.save_sign_state(&conflicting),
        Err(StoreError::SignStateRegression { .. })
    ));
    assert_eq!(store.sign_state().expect("read"), Some(signed));

    // Evidence: deduplicated, in order.
    let e1 = serde_json::json!({"offender": 2, "height": 3});
    let e2 = serde_json::json!({"offender": 1, "height": 4});
    assert!(store.put_evidence(&e1).expect("put"));
    assert!(store.put_evidence(&e2).expect("put"));
    assert!(!store.put_evidence(&e1).expect("put again"));
    assert_eq!(store.evidence().expect("read"), vec![e1, e2]);
}

#[test]
fn memory_store_keeps_the_contract() {
    contract(&MemoryStore::new(&genesis().block()));
}

/// A sign state at (height, round) locked on `next`, with the three verification votes
/// behind the lock; `committed` says whether the commit vote was signed too (step 3, else 2).
fn locked_sign_state(
    state: &ChainState,
    next: &Block,
    height: u64,
    round: u32,
    committed: bool,
) -> SignState {
    let target = Some(VoteTarget {
        block_hash: Some(next.hash()),
    });
    let polka: Vec<Vote> = (0..3)
        .map(|i| {
            Vote::new_signed(
                &state.chain_id(),
                &key(i),
                VoteKind::Verification,
                height,
                round,
                Some(next.hash()),
                NodeId(i as u16),
            )
        })
        .collect();
    SignState {
        height,
        round,
        step: Some(if committed {
            SignedStep::Commit
        } else {
            SignedStep::Verification
        }),
        block_hash: Some(next.hash()),
        verification: target,
        commit: if committed { target } else { None },
        new_round: false,
        locked: Some(LockRecord {
            round,
            block_hash: next.hash(),
            polka,
        }),
    }
}

/// The signed proposal of `next` in `round`: what the node keeps for its lock.
fn proposal_of(state: &ChainState, next: &Block, round: u32) -> Proposal {
    let proposer = state.proposer(round);
    Proposal::new_signed(
        &state.chain_id(),
        &key(proposer.index()),
        round,
        next.clone(),
        None,
        proposer,
    )
}

#[test]
fn lmdb_store_keeps_the_contract() {
    let dir = tempfile::tempdir().expect("temp dir");
    contract(&lmdb(dir.path()));
}

#[test]
fn lmdb_store_finds_everything_after_reopening() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut state, blocks) = chain(4);
    let next = proposal_block(&state, vec![]);
    let signed = locked_sign_state(&state, &next, 5, 0, true);
    let locked = proposal_of(&state, &next, 0);
    let evidence = serde_json::json!({"kind": "equivocation", "voter": 3});
    {
        let store = lmdb(dir.path());
        for block in &blocks {
            store.append_block(block).expect("append");
        }
        assert!(store.locked_proposals().expect("read").is_empty());
        store
            .save_locked_proposal(&proposal_of(&state, &next, 3))
            .expect("an older lock");
        store
            .save_locked_proposal(&locked)
            .expect("save locked proposal");
        store.save_sign_state(&signed).expect("save sign state");
        store.put_evidence(&evidence).expect("put evidence");
    }
    let store = lmdb(dir.path());
    assert_eq!(store.tip_height(), 4);
    assert_eq!(store.tip_hash(), blocks[3].hash());
    assert_eq!(store.committed_blocks().expect("blocks"), blocks);
    for block in &blocks {
        assert_eq!(
            store.height_of(&block.hash()).expect("index"),
            Some(block.height())
        );
    }
    let restored = store.sign_state().expect("read").expect("a sign state");
    assert_eq!(restored, signed);
    assert_eq!(
        restored.locked.map(|lock| lock.block_hash),
        Some(next.hash())
    );
    assert_eq!(
        store.locked_proposals().expect("read"),
        vec![locked.clone(), proposal_of(&state, &next, 3)],
        "the newest and the one before"
    );
    store
        .save_locked_proposal(&proposal_of(&state, &next, 4))
        .expect("save");
    assert_eq!(
        store.locked_proposals().expect("read").len(),
        2,
        "two are kept"
    );
    assert_eq!(store.evidence().expect("evidence"), vec![evidence]);
    // And the chain goes on from where it was.
    store
        .append_block(&certify_next(&mut state, vec![]))
        .expect("append after reopening");
    assert_eq!(store.tip_height(), 5);
}

#[test]
fn lmdb_store_refuses_another_chains_data_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    drop(lmdb(dir.path()));
    let other = Genesis::new("another-chain", 0, [(key(0).public(), "x:1".to_string())]);
    assert!(matches!(
        LmdbStore::open(dir.path(), &LmdbOptions::default(), &other.block()),
        Err(StoreError::GenesisMismatch { .. })
    ));
}

#[test]
fn lmdb_store_cannot_be_opened_twice_in_one_process() {
    let dir = tempfile::tempdir().expect("temp dir");
    let _first = lmdb(dir.path());
    assert!(LmdbStore::open(dir.path(), &LmdbOptions::default(), &genesis().block()).is_err());
}

#[test]
fn a_full_map_is_a_typed_error_and_the_store_stays_readable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tiny = LmdbOptions {
        map_size: 256 * 1024,
    };
    let g = genesis().block();
    let store = LmdbStore::open(dir.path(), &tiny, &g).expect("open a tiny store");
    assert_eq!(store.map_size(), 256 * 1024);
    let mut state = ChainState::genesis(&genesis());
    let mut stored = Vec::new();
    let full = loop {
        assert!(stored.len() < 200, "a 256 KiB map never filled up");
        // ~16 KiB of payload (32 KiB as hex JSON) per block.
        let mut attempt = state.clone();
        let block = certify_next(
            &mut attempt,
            vec![message_tx(stored.len() as u64, 16 * 1024)],
        );
        match store.append_block(&block) {
            Ok(()) => {
                state = attempt;
                stored.push(block);
            }
            Err(error) => break error,
        }
    };
    assert!(matches!(full, StoreError::MapFull), "got {full:?}");
    assert!(full.to_string().contains("map is full"));
    assert!(!stored.is_empty());
    // Nothing of the refused block is stored; everything before it still reads.
    let tip = stored.len() as u64;
    assert_eq!(store.tip_height(), tip);
    assert_eq!(
        store.committed_blocks().expect("read after MapFull"),
        stored
    );
    assert_eq!(store.block(tip + 1).expect("read"), None);

    // Raising the map size keeps the data and lets the chain go on.
    drop(store);
    let bigger = LmdbOptions {
        map_size: 4 * 1024 * 1024,
    };
    let store = LmdbStore::open(dir.path(), &bigger, &g).expect("reopen with a bigger map");
    assert_eq!(store.committed_blocks().expect("read"), stored);
    store
        .append_block(&certify_next(&mut state, vec![message_tx(999, 16 * 1024)]))
        .expect("append with room again");
}

#[test]
fn a_replica_restores_from_the_stored_chain_and_sign_state() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (state, blocks) = chain(6);
    let next = proposal_block(&state, vec![]);
    let signed = locked_sign_state(&state, &next, 7, 1, false);
    {
        let store = lmdb(dir.path());
        for block in &blocks {
            store.append_block(block).expect("append");
        }
        store
            .save_locked_proposal(&proposal_of(&state, &next, 1))
            .expect("save locked proposal");
        store.save_sign_state(&signed).expect("save sign state");
        // A crash right after the next lock's proposal was stored, before its sign state:
        // the state still names the lock of round 1, whose proposal is the one kept before.
        let mut other = proposal_block(&state, vec![]);
        other.header.timestamp_ms += 1;
        store
            .save_locked_proposal(&proposal_of(&state, &other, 2))
            .expect("save the next locked proposal");
    }

    // What the node does on restart.
    let store = lmdb(dir.path());
    let mut replica = Replica::new(ReplicaConfig::default(), &genesis(), key(1), 7);
    replica
        .restore(
            &store.committed_blocks().expect("blocks"),
            store
                .sign_state()
                .expect("read sign state")
                .unwrap_or_default(),
            &store.locked_proposals().expect("read locked proposals"),
        )
        .expect("the stored chain re-validates");
    assert_eq!(replica.height(), 6);
    assert_eq!(replica.last_hash(), store.tip_hash());
    assert_eq!(replica.id(), Some(NodeId(1)));
    assert_eq!(replica.round(), 1, "resumes in the round it last signed in");
    assert_eq!(replica.sign_state(), signed);
    assert_eq!(
        replica.status().locked,
        Some((1, next.hash())),
        "the lock is back, by hash, with its block"
    );
}
