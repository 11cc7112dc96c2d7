//! # consensus-core: the TinyWeb PBFT replica, sans IO
//!
//! A PBFT replica with Tendermint-style locking, written as a pure state machine: the host
//! feeds `(now_ms, Input)` to [`Replica::handle`] and applies the returned [`Output`]s in
//! order. Nothing in this crate reads a clock, sleeps, spawns, opens a socket or draws OS
//! randomness, so it builds for `wasm32-unknown-unknown` and replays bit for bit in the
//! simulator ([`sim`]).
//!
//! ## Protocol
//! Heights h = 1, 2, …; rounds r = 0, 1, … within a height. A quorum is `floor(2n/3) + 1` =
//! `n - f` of the **registered** validators of the height ([`quorum`]), suspended ones
//! included. The proposer of (h, r) walks the proposer rotation (registered, not suspended,
//! not benched) after the last proposer, then, past one pass, every registered validator
//! ([`proposer`]). Each round has three phases: the proposer's **proposal**, everyone's
//! **verification vote** (prevote) and **commit vote** (precommit). The rules are Algorithm 1
//! of Buchman, Kwon & Milosevic, "The latest gossip on BFT consensus" (2018); each upon-rule
//! cites its line ([`replica::rules`]):
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
//! - **NewRound** (`/MissingProposer`): a validator whose propose timeout finds its round
//!   undecided broadcasts `NewRound(h, r)`; f+1 of them make others join, a quorum moves
//!   everyone to r+1 at once. The q signed votes are a **round-change certificate**: kept,
//!   relayed while stuck, and handed to any validator seen still in that round, which
//!   verifies it and moves on. A validator past a round endorses leaving it. The entered
//!   round and a sent NewRound are durable. This only changes *when* rounds advance, never
//!   the lock rules, so safety is Algorithm 1's.
//! - **Registered set on chain**: the quorum is never computed over peers that *this* node
//!   sees alive (two sides of a partition would each reach "2/3 of active" and fork), nor
//!   over the validators not suspended (the remaining Byzantine ones would get a veto).
//!   Local delinquency steers networking only; suspension (committed requests), benching
//!   (failed proposer turns, read from committed headers) and removal (committed requests)
//!   change the rotation or the registered set from the next height, so every honest node
//!   uses the same ones. See [`chain`] and [`turns`].
//! - **Certificates in blocks** replace PBFT's checkpoints: sync validates each block's
//!   certificate against its height's registered set. Two valid certificates for different
//!   blocks at one height are a **fork proof**: committing stops (Req 8.7).
//! - **Messages for the next height are buffered** (bounded per peer) so a validator that
//!   commits a little late does not miss the next proposal.
//! - **Gossip, paid only when stuck.** Algorithm 1 assumes that what one honest validator
//!   receives, all eventually do. Here a round still undecided after half a propose timeout
//!   re-sends its own messages and relays the proposals behind its lock and valid value
//!   (with their verification quorum), the current and previous round's proposal, votes and
//!   NewRound votes; a peer one height behind is handed the last certificate's votes; a
//!   verification quorum learned late raises validValue (only what an honest proposer
//!   re-proposes changes; receivers re-check the quorum, line 28).
//! - **An equivocator's vote counts toward each value it signed** (once per value, at most
//!   two extra values per voter and step, counted by value, not signature), and both votes
//!   become evidence. Two values still need two quorums, which share more than f voters; but
//!   a proof of lock containing the equivocator's vote stays checkable by validators that
//!   saw its other vote first (else one equivocator can stall a height).
//! - **Durable sign state** carries the last signed step, the round entered, the votes of
//!   that round and the lock by hash with its quorum (what Tendermint keeps in its WAL; the
//!   locked proposal is stored once beside it), so a restart never signs a conflicting vote,
//!   never forgets a lock, never goes back a round, and re-sends what it signed.
//! - **Block time** of a fresh proposal must move on from its parent's and stay within 30 s
//!   of the voter's clock to get a vote (a voting rule; sync does not use the clock).
//!
//! ## Safety argument (sketch)
//! Two quorums of one registered set intersect in more than f validators, so in at least one
//! honest one. An honest validator commit-votes X in round r only after a verification quorum
//! for X in r, and then stays locked on X unless a later verification quorum shows another
//! block; so once X commits in r, no other block can gather a verification quorum in any
//! round ≥ r, and none can commit. The registered set of height h is a function of the
//! committed chain up to h-1, identical at every honest node; suspension and benching do not
//! change it. The last-signed state is made durable before any vote leaves, so a restart
//! never signs a conflicting vote.

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
pub mod recent_hashes;
pub mod replica;
pub mod sim;
pub mod sync;
pub mod timer;
pub mod turns;
pub mod types;
pub mod verified;
pub mod verifier;
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
pub use replica::{QuorumRule, Replica, ReplicaConfig, ReplicaStatus, Step};
pub use types::{BlockHash, Hash32, Height, NodeId, NodeSet, PublicKey, Round, Signature};
