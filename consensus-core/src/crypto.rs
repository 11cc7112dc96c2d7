//! Ed25519 signatures over fixed binary signing bytes, SHA-256, and the Merkle tx root.
//!
//! Nothing here signs JSON: every signed thing has a [`SigningBytes`] encoding that starts
//! with the domain tag `tinyweb/v1/<type>` and (for everything but block headers) the chain
//! id, so a signature can be replayed neither across message types nor across chains.
//!
//! The byte-level rules are specified in `docs/PROTOCOL.md`: the encoding in §2, the
//! Merkle root in §3.2, the Ed25519 verification rules in §1.1; `docs/vectors/encoding.json`
//! and `hashes.json` hold worked examples the test suite checks.

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::error::CryptoError;
use crate::types::{Hash32, PublicKey, Signature};

/// Protocol version carried in block headers and bound into every domain tag.
pub const PROTOCOL_VERSION: u16 = 1;

/// Builder for the canonical bytes a signature or hash covers (docs/PROTOCOL.md §2). Fields are appended in a fixed
/// order with fixed widths (big-endian integers, length-prefixed byte strings).
pub struct SigningBytes(Vec<u8>);

impl SigningBytes {
    /// Starts with the domain tag `tinyweb/v<PROTOCOL_VERSION>/<domain>`, length-prefixed
    /// (written in place: this runs for every signature and hash).
    pub fn new(domain: &str) -> Self {
        const PREFIX: &[u8] = b"tinyweb/v";
        // PROTOCOL_VERSION in decimal, without allocating.
        let mut digits = [0u8; 5];
        let mut start = digits.len();
        let mut v = PROTOCOL_VERSION;
        loop {
            start -= 1;
            digits[start] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        let version = &digits[start..];
        let mut b = Self(Vec::with_capacity(160));
        b.u32((PREFIX.len() + version.len() + 1 + domain.len()) as u32);
        b.0.extend_from_slice(PREFIX);
        b.0.extend_from_slice(version);
        b.0.push(b'/');
        b.0.extend_from_slice(domain.as_bytes());
        b
    }
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn hash(&mut self, h: &Hash32) -> &mut Self {
        self.0.extend_from_slice(&h.0);
        self
    }
    pub fn opt_hash(&mut self, h: &Option<Hash32>) -> &mut Self {
        match h {
            None => self.u8(0),
            Some(h) => self.u8(1).hash(h),
        }
    }
    pub fn opt_u32(&mut self, v: Option<u32>) -> &mut Self {
        match v {
            None => self.u8(0),
            Some(v) => self.u8(1).u32(v),
        }
    }
    pub fn key(&mut self, k: &PublicKey) -> &mut Self {
        self.0.extend_from_slice(&k.0);
        self
    }
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
        self
    }
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }
    pub fn digest(&self) -> Hash32 {
        sha256(&self.0)
    }
}

pub fn sha256(data: &[u8]) -> Hash32 {
    Hash32(Sha256::digest(data).into())
}

/// Merkle root over transaction hashes (docs/PROTOCOL.md §3.2): leaves and inner nodes are domain-separated
/// (0x00 / 0x01 prefixes) so a leaf can never pass for an inner node; an odd node is
/// promoted unchanged. The empty tree's root is the hash of the empty string.
pub fn merkle_root(leaves: &[Hash32]) -> Hash32 {
    if leaves.is_empty() {
        return sha256(&[]);
    }
    let mut level: Vec<Hash32> = leaves
        .iter()
        .map(|l| {
            let mut h = Sha256::new();
            h.update([0u8]);
            h.update(l.0);
            Hash32(h.finalize().into())
        })
        .collect();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [a, b] => {
                    let mut h = Sha256::new();
                    h.update([1u8]);
                    h.update(a.0);
                    h.update(b.0);
                    Hash32(h.finalize().into())
                }
                [a] => *a,
                _ => unreachable!("chunks(2) yields one or two"),
            })
            .collect();
    }
    level[0]
}

/// A validator's or client's Ed25519 key pair.
#[derive(Clone)]
pub struct Keypair {
    signing: SigningKey,
}

impl Keypair {
    /// Builds a key from 32 secret bytes (from a key file, or from the simulator's seeded RNG).
    pub fn from_secret(secret: [u8; 32]) -> Self {
        Self {
            signing: SigningKey::from_bytes(&secret),
        }
    }
    /// Draws a fresh key from a caller-supplied RNG (the core owns no randomness).
    pub fn generate(rng: &mut impl rand_core::RngCore) -> Self {
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut secret);
        Self::from_secret(secret)
    }
    pub fn secret(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }
    pub fn public(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key().to_bytes())
    }
    pub fn sign(&self, bytes: &SigningBytes) -> Signature {
        Signature(self.signing.sign(bytes.as_slice()).to_bytes())
    }
}

impl std::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keypair({:?})", self.public())
    }
}

/// Verifies `sig` by `key` over `bytes` (docs/PROTOCOL.md §1.1; strict: rejects small-order keys and malleable
/// signatures, so a signature is a unique witness).
pub fn verify(key: &PublicKey, bytes: &SigningBytes, sig: &Signature) -> Result<(), CryptoError> {
    verify_with_key(&verifying_key(key)?, bytes, sig)
}

/// `key` decompressed, the first half of [`verify`] (kept apart so a cache can reuse it).
pub(crate) fn verifying_key(key: &PublicKey) -> Result<VerifyingKey, CryptoError> {
    VerifyingKey::from_bytes(&key.0).map_err(|_| CryptoError::BadPublicKey)
}

/// The second half of [`verify`]: the strict check of `sig` by a decompressed key.
pub(crate) fn verify_with_key(
    vk: &VerifyingKey,
    bytes: &SigningBytes,
    sig: &Signature,
) -> Result<(), CryptoError> {
    let sig = ed25519_dalek::Signature::from_bytes(&sig.0);
    vk.verify_strict(bytes.as_slice(), &sig)
        .map_err(|_| CryptoError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_binds_domain_and_fields() {
        let k = Keypair::from_secret([7; 32]);
        let mut a = SigningBytes::new("commit_vote");
        a.u64(5).u32(0);
        let sig = k.sign(&a);
        assert!(verify(&k.public(), &a, &sig).is_ok());
        let mut other_domain = SigningBytes::new("verification_vote");
        other_domain.u64(5).u32(0);
        assert_eq!(
            verify(&k.public(), &other_domain, &sig),
            Err(CryptoError::BadSignature)
        );
        let mut other_field = SigningBytes::new("commit_vote");
        other_field.u64(6).u32(0);
        assert!(verify(&k.public(), &other_field, &sig).is_err());
    }

    #[test]
    fn the_domain_tag_is_the_length_prefixed_version_and_domain() {
        for domain in ["", "vote", "transaction_batch"] {
            let mut expected = SigningBytes(Vec::new());
            expected.bytes(format!("tinyweb/v{PROTOCOL_VERSION}/{domain}").as_bytes());
            assert_eq!(SigningBytes::new(domain).as_slice(), expected.as_slice());
        }
    }

    #[test]
    fn merkle_root_depends_on_order_and_count() {
        let a = sha256(b"a");
        let b = sha256(b"b");
        assert_ne!(merkle_root(&[a, b]), merkle_root(&[b, a]));
        assert_ne!(merkle_root(&[a]), merkle_root(&[a, a]));
        assert_ne!(merkle_root(&[a]), a, "a leaf is domain separated");
        assert_eq!(merkle_root(&[]), sha256(&[]));
    }
}
