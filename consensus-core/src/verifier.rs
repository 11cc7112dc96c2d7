//! How a [`crate::chain::ChainState`] (and so a [`crate::Replica`]) checks signatures.
//!
//! [`Verifier::plain`], the default, runs [`crypto::verify`] every time.
//! [`Verifier::shared_cache`] is one bounded cache of verification results shared by every
//! holder of the handle: all replicas (and the checker) of **one** simulation run, where
//! each vote, proposal and transaction reaches n - 1 peers, sits in a block every replica
//! validates, and again in the certificate the checker and a restarted replica re-validate;
//! or one node's replica and its HTTP handlers, where a transaction checked by the handler
//! that received it is not checked again when a proposal carries it.
//!
//! Ed25519 verification is a pure function of (public key, message bytes, signature), so a
//! remembered result is the result, failures included: the cache cannot change what any
//! replica decides, and the simulator's trace hashes are the same with and without it (test
//! `sim::cluster::tests::the_shared_verification_cache_changes_no_result`). It is keyed by
//! the exact triple (the message by its SHA-256), so a forged signature, or good bytes under
//! another key, never rides on an earlier check. Bounded: the oldest results are forgotten
//! first (a forgotten one costs a repeated check, nothing more).
//!
//! No global state: a cache lives as long as the handles the simulator gave out. The handle
//! is an `Arc<Mutex<..>>` only so that [`crate::Replica`] stays `Send` for the node's
//! runtime; the simulator is single-threaded (and builds for `wasm32-unknown-unknown`), so
//! the lock is never contended.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use ed25519_dalek::VerifyingKey;

use crate::crypto::{self, SigningBytes};
use crate::error::CryptoError;
use crate::types::{Hash32, PublicKey, Signature};

/// Most results a simulation's shared cache keeps (a few MB at most): several times what a
/// default run checks, so a restarted replica's re-validation of its whole chain hits.
pub const SIM_VERIFY_CACHE_MAX: usize = 1 << 15;

/// Most decompressed public keys a cache keeps (validators and clients of one run).
const KEYS_MAX: usize = 1024;

/// Checks signatures: plainly, or through a cache shared by one simulation's replicas.
#[derive(Clone, Default)]
pub struct Verifier {
    cache: Option<Arc<Mutex<VerifyCache>>>,
}

impl Verifier {
    /// Every check runs Ed25519 (the default).
    pub fn plain() -> Self {
        Self::default()
    }

    /// A new, empty cache of at most `capacity` results, shared by every clone of the
    /// returned handle: one per simulation run, or one per node process.
    pub fn shared_cache(capacity: usize) -> Self {
        Self {
            cache: Some(Arc::new(Mutex::new(VerifyCache::new(capacity)))),
        }
    }

    pub fn is_cached(&self) -> bool {
        self.cache.is_some()
    }

    /// Exactly [`crypto::verify`]`(key, bytes, sig)`.
    pub fn verify(
        &self,
        key: &PublicKey,
        bytes: &SigningBytes,
        sig: &Signature,
    ) -> Result<(), CryptoError> {
        let Some(cache) = &self.cache else {
            return crypto::verify(key, bytes, sig);
        };
        let lock = || cache.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = (*key, bytes.digest(), *sig);
        // The lock is not held while verifying: a node's HTTP workers and its driver check
        // signatures in parallel through one cache.
        let decompressed = match lock().lookup(&entry) {
            Lookup::Known(result) => return result,
            Lookup::Unknown(decompressed) => decompressed,
        };
        let vk = decompressed.unwrap_or_else(|| crypto::verifying_key(key));
        let result = vk.and_then(|vk| crypto::verify_with_key(&vk, bytes, sig));
        lock().remember(entry, vk, result);
        result
    }

    /// (hits, misses) of the cache so far; `None` for a plain verifier.
    pub fn stats(&self) -> Option<(u64, u64)> {
        self.cache.as_ref().map(|c| {
            let c = c.lock().unwrap_or_else(PoisonError::into_inner);
            (c.hits, c.misses)
        })
    }
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.stats() {
            None => write!(f, "Verifier(plain)"),
            Some((hits, misses)) => {
                write!(f, "Verifier(shared cache: {hits} hits, {misses} misses)")
            }
        }
    }
}

/// (signer's key, SHA-256 of the signed bytes, signature).
type Key = (PublicKey, Hash32, Signature);

struct VerifyCache {
    capacity: usize,
    results: HashMap<Key, Result<(), CryptoError>>,
    /// Insertion order, for eviction.
    order: VecDeque<Key>,
    /// Decompressed keys (the point decompression is a sixth of a verification): what
    /// `VerifyingKey::from_bytes` returned for each, a pure function as well.
    keys: HashMap<PublicKey, Result<VerifyingKey, CryptoError>>,
    hits: u64,
    misses: u64,
}

impl VerifyCache {
    fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            results: HashMap::new(),
            order: VecDeque::new(),
            keys: HashMap::new(),
            hits: 0,
            misses: 0,
        }
    }

    fn lookup(&mut self, entry: &Key) -> Lookup {
        if let Some(result) = self.results.get(entry) {
            self.hits += 1;
            return Lookup::Known(*result);
        }
        self.misses += 1;
        Lookup::Unknown(self.keys.get(&entry.0).copied())
    }

    fn remember(
        &mut self,
        entry: Key,
        vk: Result<VerifyingKey, CryptoError>,
        result: Result<(), CryptoError>,
    ) {
        if self.keys.len() >= KEYS_MAX && !self.keys.contains_key(&entry.0) {
            self.keys.clear();
        }
        self.keys.insert(entry.0, vk);
        if self.results.insert(entry, result).is_some() {
            return; // another thread checked the same triple meanwhile
        }
        self.order.push_back(entry);
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.results.remove(&old);
            }
        }
    }
}

enum Lookup {
    Known(Result<(), CryptoError>),
    /// Not checked yet; the key's decompressed point if known.
    Unknown(Option<Result<VerifyingKey, CryptoError>>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keypair;

    fn bytes(n: u64) -> SigningBytes {
        let mut b = SigningBytes::new("test");
        b.u64(n);
        b
    }

    #[test]
    fn the_cache_answers_exactly_what_verification_answers() {
        let key = Keypair::from_secret([3; 32]);
        let other = Keypair::from_secret([4; 32]);
        let good = key.sign(&bytes(1));
        let mut forged = good;
        forged.0[5] ^= 1;
        let bad_key = PublicKey([0xff; 32]);
        let cached = Verifier::shared_cache(16);
        let cases = [
            (key.public(), bytes(1), good),
            (key.public(), bytes(1), forged),
            (key.public(), bytes(2), good),
            (other.public(), bytes(1), good),
            (bad_key, bytes(1), good),
        ];
        // Twice: the second pass answers from the cache.
        for _ in 0..2 {
            for (k, b, s) in &cases {
                assert_eq!(cached.verify(k, b, s), crypto::verify(k, b, s));
                assert_eq!(Verifier::plain().verify(k, b, s), crypto::verify(k, b, s));
            }
        }
        assert_eq!(cached.stats(), Some((5, 5)));
        assert!(cached.verify(&key.public(), &bytes(1), &good).is_ok());
        assert!(cached.verify(&key.public(), &bytes(1), &forged).is_err());
        assert_eq!(Verifier::plain().stats(), None);
    }

    #[test]
    fn the_cache_is_bounded_and_shared_by_its_clones_only() {
        let key = Keypair::from_secret([3; 32]);
        let a = Verifier::shared_cache(2);
        let b = a.clone();
        let fresh = Verifier::shared_cache(2);
        for n in 0..3 {
            let s = key.sign(&bytes(n));
            assert!(a.verify(&key.public(), &bytes(n), &s).is_ok());
        }
        let s2 = key.sign(&bytes(2));
        assert!(b.verify(&key.public(), &bytes(2), &s2).is_ok());
        assert_eq!(b.stats(), Some((1, 3)), "a clone shares the cache");
        let s0 = key.sign(&bytes(0));
        assert!(b.verify(&key.public(), &bytes(0), &s0).is_ok());
        assert_eq!(b.stats(), Some((1, 4)), "the oldest result was forgotten");
        assert!(fresh.verify(&key.public(), &bytes(2), &s2).is_ok());
        assert_eq!(fresh.stats(), Some((0, 1)), "another cache shares nothing");
    }
}
