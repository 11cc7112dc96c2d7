//! # consensus-core: the TinyWeb PBFT replica, sans IO
//!
//! A PBFT replica with Tendermint-style locking, written as a pure state machine: the host
//! feeds `(now_ms, Input)` to [`Replica::handle`] and applies the returned [`Output`]s in
//! order. Nothing in this crate reads a clock, sleeps, spawns, opens a socket or draws OS
//! randomness, so it builds for `wasm32-unknown-unknown` and replays bit for bit in the
//! simulator ([`sim`]).
//!
//! ## Protocol
//! Heights h = 1, 2, …; rounds r = 0, 1, … within a height. The proposer of (h, r) is
//! `(last_proposer + 1 + r) % n` over the active set ([`proposer`]). Each round has three
//! phases: the proposer's **proposal**, everyone's **verification vote** (prevote) and
//! **commit vote** (precommit). A quorum is `floor(2n/3) + 1` = `n - f` ([`quorum`]).
//! The rules are Algorithm 1 of Buchman, Kwon & Milosevic, "The latest gossip on BFT
//! consensus" (2018); each arm of the replica's step cites its line:
//!
//! - a validator **locks** on a block when it sees a verification quorum for it (line 36)
//!   and only verification-votes another block if that block carries proof (`valid_round`)
//!   of a later verification quorum (line 28);
//! - a block **commits** with a quorum of commit votes for it in any round (line 49); those
//!   votes become its certificate, so every stored block can be validated offline;
//! - timeouts (propose, verification, commit) move a stuck round on (lines 57, 61, 65); they
//!   grow by a factor per round and are capped; f+1 messages from a higher round pull a
//!   lagging validator forward (line 55).
//!
//! ## Deviations from PBFT and Algorithm 1
//! - **NewRound** (`/MissingProposer`): a validator whose propose timeout fires also
//!   broadcasts `NewRound(h, r)`; f+1 of them make others join, a quorum moves everyone to
//!   r+1 at once. This only changes *when* rounds advance, never the lock rules, so safety is
//!   Algorithm 1's.
//! - **Active set on chain**: the quorum is never computed over peers that *this* node sees
//!   alive (two sides of a partition would each reach "2/3 of active" and fork). Local
//!   delinquency only steers networking; suspension, readmission and joins are committed
//!   transactions that change the active set from the next height, so every honest node uses
//!   the same set. See [`chain`].
//! - **Certificates in blocks** replace PBFT's checkpoints: sync validates each block's
//!   certificate against its height's active set.
//! - **Messages for the next height are buffered** (bounded per peer) so a validator that
//!   commits a little late does not miss the next proposal.
//! - **Gossip, paid only when stuck.** Algorithm 1 assumes that what one honest validator
//!   receives, all eventually do. Here a round that lasts a propose timeout re-sends its own
//!   messages and relays the proposal and the votes it holds for this round and the one
//!   before; a re-proposal carries its proof of lock; a peer one height behind is handed the
//!   last certificate's votes; a verification quorum learned late raises validValue (only
//!   what an honest proposer re-proposes changes; receivers re-check the quorum, line 28).
//! - **An equivocator's second vote counts toward its own value** (once per value, bounded),
//!   and both votes become evidence. Two values still need two quorums, which share more than
//!   f voters; but a proof of lock containing the equivocator's vote stays checkable by
//!   validators that saw its other vote first (else one equivocator can stall a height).
//! - **Durable sign state** carries the last signed step, the votes of the current round
//!   and the lock with its block and quorum (what Tendermint keeps in its WAL), so a restart
//!   never signs a conflicting vote, never forgets a lock, and re-sends what it signed.
//!
//! ## Safety argument (sketch)
//! Two quorums of one active set intersect in more than f validators, so in at least one
//! honest one. An honest validator commit-votes X in round r only after a verification quorum
//! for X in r, and then stays locked on X unless a later verification quorum shows another
//! block; so once X commits in r, no other block can gather a verification quorum in any
//! round ≥ r, and none can commit. The active set of height h is a function of the committed
//! chain up to h-1, identical at every honest node. The last-signed state is made durable
//! before any vote leaves, so a restart never signs a conflicting vote.

pub mod chain;
pub mod crypto;
pub mod effect;
pub mod error;
pub mod event;
pub mod input;
pub mod limits;
pub mod mempool;
pub mod message;
pub mod peers;
pub mod proposer;
pub mod quorum;
pub mod replica;
pub mod sim;
pub mod sync;
pub mod timer;
pub mod turns;
pub mod types;
pub mod votes;

pub use effect::{Output, SignState};
pub use error::{
    BlockError, CryptoError, ForkProofError, JoinRefusal, RejectReason, SyncError, TxError,
};
pub use event::Event;
pub use input::{Input, SyncRequest, SyncResponse};
pub use message::{
    Block, BlockHeader, Certificate, CertifiedHash, ConsensusMessage, ForkProof, Genesis,
    Invitation, JoinRequest, NewRound, Proposal, Transaction, TxKind, Validator, Vote, VoteKind,
};
pub use replica::{QuorumRule, Replica, ReplicaConfig, ReplicaStatus};
pub use types::{BlockHash, Hash32, Height, NodeId, NodeSet, PublicKey, Round, Signature};
