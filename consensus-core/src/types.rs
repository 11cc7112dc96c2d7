//! Newtypes shared by the whole crate.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

use crate::limits::VALIDATORS_MAX;

/// A block height; the genesis block is height 0.
pub type Height = u64;
/// A round within a height (the requirements' "proposer offset").
pub type Round = u32;

/// A validator's stable index in the chain's validator registry (genesis order, then joins).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct NodeId(pub u16);

impl NodeId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

macro_rules! hex_bytes {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            pub const ZERO: Self = Self([0u8; $len]);
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }
            pub fn to_hex(&self) -> String {
                self.write_hex(&mut [0u8; 2 * $len]).to_owned()
            }
            /// Lowercase hex into `buf`, without allocating (every hash and signature in
            /// JSON goes through here).
            fn write_hex<'b>(&self, buf: &'b mut [u8; 2 * $len]) -> &'b str {
                const DIGITS: &[u8; 16] = b"0123456789abcdef";
                for (pair, byte) in buf.chunks_exact_mut(2).zip(self.0) {
                    pair[0] = DIGITS[(byte >> 4) as usize];
                    pair[1] = DIGITS[(byte & 0x0f) as usize];
                }
                // Hex digits are ASCII: always UTF-8.
                std::str::from_utf8(buf).unwrap_or_default()
            }
            pub fn from_hex(s: &str) -> Result<Self, hex::FromHexError> {
                let mut out = [0u8; $len];
                hex::decode_to_slice(s, &mut out)?;
                Ok(Self(out))
            }
        }

        /// All zeros: a placeholder, never a real key, hash or signature.
        impl Default for $name {
            fn default() -> Self {
                Self::ZERO
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", &self.to_hex()[..8])
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.write_hex(&mut [0u8; 2 * $len]))
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::from_hex(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

hex_bytes!(
    /// A SHA-256 digest: block hashes, transaction hashes, the chain id.
    Hash32,
    32
);
hex_bytes!(
    /// An Ed25519 public key.
    PublicKey,
    32
);
hex_bytes!(
    /// An Ed25519 signature.
    Signature,
    64
);

pub type BlockHash = Hash32;
pub type TxHash = Hash32;

/// A set of validators as a bitset over [`NodeId`] (fixed capacity, no allocation).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeSet(pub u64);

impl NodeSet {
    pub const EMPTY: Self = Self(0);

    pub fn first_n(n: usize) -> Self {
        assert!(n <= VALIDATORS_MAX);
        if n == 64 {
            Self(u64::MAX)
        } else {
            Self((1u64 << n) - 1)
        }
    }
    pub fn contains(self, id: NodeId) -> bool {
        id.index() < VALIDATORS_MAX && self.0 & (1u64 << id.index()) != 0
    }
    /// Adds `id`; returns whether it was new. Ids out of range are refused (returns false).
    pub fn insert(&mut self, id: NodeId) -> bool {
        if id.index() >= VALIDATORS_MAX {
            return false;
        }
        let was = self.contains(id);
        self.0 |= 1u64 << id.index();
        !was
    }
    pub fn remove(&mut self, id: NodeId) -> bool {
        let was = self.contains(id);
        if was {
            self.0 &= !(1u64 << id.index());
        }
        was
    }
    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn iter(self) -> impl Iterator<Item = NodeId> {
        (0..VALIDATORS_MAX as u16)
            .map(NodeId)
            .filter(move |id| self.contains(*id))
    }
    pub fn intersection(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }
}

impl fmt::Debug for NodeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter().map(|i| i.0)).finish()
    }
}

impl FromIterator<NodeId> for NodeSet {
    fn from_iter<T: IntoIterator<Item = NodeId>>(iter: T) -> Self {
        let mut s = Self::EMPTY;
        for id in iter {
            s.insert(id);
        }
        s
    }
}

/// Hex serde for byte payloads (transaction payloads).
pub mod hex_vec {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        hex::decode(s.as_ref()).map_err(serde::de::Error::custom)
    }
}

/// The two voting phases of a round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VoteKind {
    /// Phase 2 ("prepare", Tendermint's prevote): endpoint `/VerificationVote`.
    Verification,
    /// Phase 3 ("commit", Tendermint's precommit): endpoint `/CommitVote`.
    Commit,
}

impl VoteKind {
    pub fn domain(self) -> &'static str {
        match self {
            VoteKind::Verification => "verification_vote",
            VoteKind::Commit => "commit_vote",
        }
    }
}

/// What a transaction asks for. The membership kinds are per-validator signed requests that
/// take effect once a quorum of distinct registered validators' requests are committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxKind {
    /// An opaque family payload.
    Message,
    /// Add a new validator (payload: [`crate::message::JoinRequest`] as JSON).
    ApproveNode,
    /// Take a validator out of the proposer rotation (payload: its 32-byte public key).
    SuspendNode,
    /// Bring a suspended validator back (payload: its 32-byte public key).
    ReadmitNode,
    /// Proof of equivocation (payload: [`crate::message::EquivocationEvidence`] as JSON).
    Evidence,
    /// Remove a validator for good: it no longer counts toward n and q (payload: its 32-byte
    /// public key). An operator's act (`tinyweb remove`), never automatic.
    RemoveNode,
}

impl TxKind {
    pub const ALL: [TxKind; 6] = [
        TxKind::Message,
        TxKind::ApproveNode,
        TxKind::SuspendNode,
        TxKind::ReadmitNode,
        TxKind::Evidence,
        TxKind::RemoveNode,
    ];
    pub fn code(self) -> u8 {
        match self {
            TxKind::Message => 0,
            TxKind::ApproveNode => 1,
            TxKind::SuspendNode => 2,
            TxKind::ReadmitNode => 3,
            TxKind::Evidence => 4,
            TxKind::RemoveNode => 5,
        }
    }
    pub fn is_membership(self) -> bool {
        !matches!(self, TxKind::Message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lowercase_and_round_trips_through_json() {
        let mut bytes = [0u8; 64];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (i * 37 + 11) as u8;
        }
        let sig = Signature(bytes);
        assert_eq!(sig.to_hex(), hex::encode(bytes));
        let json = serde_json::to_string(&sig).expect("serialises");
        assert_eq!(json, format!("\"{}\"", hex::encode(bytes)));
        assert_eq!(serde_json::from_str::<Signature>(&json).ok(), Some(sig));
        let hash = Hash32([0xa5; 32]);
        assert_eq!(hash.to_hex(), "a5".repeat(32));
        assert_eq!(format!("{hash:?}"), "a5a5a5a5");
    }
}
