//! Adding a validator (DESIGN §3, §9; Req 2.10, 12.2, 12.4).
//!
//! 1. The new machine makes its key (`tinyweb init --dir D --join URL` prints it).
//! 2. A member runs `tinyweb invite --joiner KEY`: an [`Invitation`] for that key it signs
//!    (chain id, joiner, expiry, nonce), bundled with the genesis file and its URL into an
//!    [`InvitationFile`]; f more members add their signatures (`tinyweb invite --cosign`),
//!    so f + 1 vouch for the joiner.
//! 3. The new node (`tinyweb init --join URL --invitation FILE`) posts a [`NewNodeRequest`]
//!    to `/NewNode`: the invitation, its key and address, signed with its own key (proof
//!    that it holds the key the invitation names).
//! 4. Every validator that checks the request (invitation for this key, inviter in good
//!    standing, invitation valid, joiner reachable at `/health`, no other joiner seen with
//!    this invitation) signs its own `approve_node` transaction and forwards the request,
//!    unmodified, to its peers; the new validator is registered once a quorum of the
//!    registered validators' approvals are committed and the chain still finds the
//!    invitation valid: f + 1 vouchers, one join per invitation, at most one join per
//!    inviter per `JOIN_COOLDOWN_MS` (the core's membership rule, `ChainState::check_join`).
//!    The node's own checks only save work; the chain's decide.
//! 5. On that commit every member adds the peer, and pushes it its chain length
//!    (`/SendNewBlockChain`); the new node pulls and validates the blocks through sync.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use consensus_core::crypto::{self, Keypair, SigningBytes};
pub use consensus_core::message::{Invitation, JoinRequest};
use consensus_core::{
    Genesis, Hash32, NodeSet, PublicKey, Signature, Transaction, TxKind, Validator,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

use super::transport::base_url;
use super::{now_ms, Shared, TxSubmission};
use crate::routes;
use crate::wire::WireError;

/// Most invitations `/NewNode` remembers (the oldest is forgotten first). Forgetting one
/// costs at most a redundant approval: the chain itself admits one validator per invitation.
pub const JOINS_SEEN_MAX: usize = 256;
/// How long a member waits for the joining node's `/health` before refusing it.
const JOINER_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What `tinyweb invite` prints and `tinyweb init --join` reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitationFile {
    /// A member to send the join request to.
    pub url: String,
    pub genesis: Genesis,
    pub invitation: Invitation,
}

/// The `/NewNode` body. `join` (with its invitation) is exactly the payload every member's
/// `approve_node` carries, so all approvals count toward the same pending join.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewNodeRequest {
    pub join: JoinRequest,
    pub ts: u64,
    /// By `join.public_key`.
    pub signature: Signature,
}

impl NewNodeRequest {
    /// What the joiner signs (docs/PROTOCOL.md §6).
    pub fn signing_bytes(join: &JoinRequest, ts: u64) -> SigningBytes {
        let mut b = SigningBytes::new("new_node");
        b.hash(&join.invitation.chain_id)
            .bytes(&join.invitation.signature.0)
            .key(&join.public_key)
            .bytes(join.address.as_bytes())
            .u64(ts);
        b
    }

    pub fn new(invitation: Invitation, key: &Keypair, address: String, ts: u64) -> Self {
        let join = JoinRequest {
            public_key: key.public(),
            address,
            invitation,
        };
        let signature = key.sign(&Self::signing_bytes(&join, ts));
        Self {
            join,
            ts,
            signature,
        }
    }

    pub fn invitation(&self) -> &Invitation {
        &self.join.invitation
    }

    /// Everything a member checks on its own before approving: chain, the invitation is for
    /// this joiner's key, the inviter is a validator the chain trusts to vouch (registered,
    /// neither suspended nor convicted), the invitation is signed and unexpired, the joiner
    /// holds its key,
    /// fresh timestamp, a plausible address, not a validator already. (The chain checks the
    /// invitation again, with one join per invitation and the inviter's rate limit.)
    pub fn check(
        &self,
        chain_id: &Hash32,
        validators: &[Validator],
        vouchers: NodeSet,
        now: u64,
        window_ms: u64,
    ) -> Result<(), WireError> {
        let inv = self.invitation();
        if inv.chain_id != *chain_id {
            return Err(WireError::Rejected(format!(
                "the invitation is for chain {}, this is chain {chain_id}",
                inv.chain_id
            )));
        }
        if inv.joiner != self.join.public_key {
            return Err(WireError::Rejected(format!(
                "the invitation is for the key {}, not this joiner's {}",
                inv.joiner, self.join.public_key
            )));
        }
        let Some(inviter) = validators.iter().find(|v| v.public_key == inv.inviter) else {
            return Err(WireError::UnknownSender {
                from: crate::wire::NO_ID,
                sender: inv.inviter,
            });
        };
        if !vouchers.contains(inviter.id) {
            return Err(WireError::Rejected(format!(
                "the inviter (validator {}) is suspended or convicted: ask another member for an invitation",
                inviter.id
            )));
        }
        inv.verify().map_err(|_| WireError::BadSignature)?;
        if now > inv.expires_ms {
            return Err(WireError::Rejected("the invitation has expired".into()));
        }
        if inv.nonce > consensus_core::limits::JSON_INTEGER_MAX {
            return Err(WireError::Rejected(
                "the invitation nonce is above 2^53 - 1: make a new invitation".into(),
            ));
        }
        if self.ts.abs_diff(now) > window_ms {
            return Err(WireError::Stale {
                ts: self.ts,
                now,
                window_ms,
            });
        }
        let bytes = Self::signing_bytes(&self.join, self.ts);
        crypto::verify(&self.join.public_key, &bytes, &self.signature)
            .map_err(|_| WireError::BadSignature)?;
        let address = &self.join.address;
        if address.is_empty()
            || address.len() > consensus_core::limits::ADDRESS_BYTES_MAX
            || address.parse::<std::net::SocketAddr>().is_err() && !address.contains(':')
        {
            return Err(WireError::Rejected(format!(
                "{address:?} is not a host:port address"
            )));
        }
        if validators
            .iter()
            .any(|v| v.public_key == self.join.public_key)
        {
            return Err(WireError::Rejected(
                "this key is already a validator".into(),
            ));
        }
        Ok(())
    }
}

/// What this member already did with an invitation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// Never presented here.
    New,
    /// Presented by this joiner before: approved and forwarded already.
    SameJoiner,
    /// Presented by another key: an invitation admits one validator, refuse.
    OtherJoiner,
}

/// Invitations presented at `/NewNode`, keyed by (inviter, nonce), with the joiner that
/// presented each first; bounded by [`JOINS_SEEN_MAX`], oldest dropped.
#[derive(Debug, Default)]
pub struct SeenInvitations {
    joiner: BTreeMap<(PublicKey, u64), PublicKey>,
    order: VecDeque<(PublicKey, u64)>,
}

impl SeenInvitations {
    pub fn lookup(&self, join: &JoinRequest) -> Seen {
        let id = (join.invitation.inviter, join.invitation.nonce);
        match self.joiner.get(&id) {
            None => Seen::New,
            Some(k) if *k == join.public_key => Seen::SameJoiner,
            Some(_) => Seen::OtherJoiner,
        }
    }

    /// Records `join`'s joiner for its invitation unless one is recorded already; returns
    /// what was there before (so check and record are one step under the lock).
    pub fn record(&mut self, join: &JoinRequest) -> Seen {
        let seen = self.lookup(join);
        if seen == Seen::New {
            let id = (join.invitation.inviter, join.invitation.nonce);
            while self.order.len() >= JOINS_SEEN_MAX {
                if let Some(old) = self.order.pop_front() {
                    self.joiner.remove(&old);
                }
            }
            self.joiner.insert(id, join.public_key);
            self.order.push_back(id);
        }
        seen
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

fn invitation_taken() -> WireError {
    WireError::Rejected(
        "this invitation was already presented by another node: an invitation admits one validator"
            .into(),
    )
}

/// A joiner nobody can reach would count toward n and never vote: enough of them halt the
/// chain. So each member checks that it answers before approving it.
async fn probe_joiner(address: &str) -> Result<(), WireError> {
    let url = format!("{}{}", base_url(address), routes::HEALTH.path);
    let result = reqwest::Client::new()
        .get(&url)
        .timeout(JOINER_PROBE_TIMEOUT)
        .send()
        .await;
    let problem = match result {
        Ok(resp) if resp.status().is_success() => return Ok(()),
        Ok(resp) => format!("it answered {}", resp.status()),
        Err(e) => e.to_string(),
    };
    Err(WireError::Rejected(format!(
        "the joining node is not reachable at {url} ({problem}): a validator the others cannot \
         reach would never vote, and enough of them halt the chain; start the node (and open its \
         port) before asking to join"
    )))
}

/// Admits a join request on this member's side (`POST /NewNode`): checks it, asks the
/// chain whether it would accept it now, probes the joiner, then approves it once and
/// forwards it to the other members. A joiner that retries after our approval is told yes
/// again.
pub async fn admit(s: &Arc<Shared>, request: NewNodeRequest) -> Result<(), WireError> {
    let validators = s.validators.read().map(|v| v.clone()).unwrap_or_default();
    let vouchers = s.vouchers.read().map(|a| *a).unwrap_or(NodeSet::EMPTY);
    request.check(
        &s.chain_id,
        &validators,
        vouchers,
        now_ms(),
        s.config.network.replay_window_ms,
    )?;
    // The chain's own rules (invitation unused, inviter not rate-limited, room left), so a
    // joiner that cannot get in is told why instead of waiting forever.
    let join = Box::new(request.join.clone());
    s.ask(|reply| super::Query::CheckJoin(join, reply))
        .await?
        .map_err(WireError::Rejected)?;
    // A poisoned lock only means another handler panicked mid-update; the map is still a
    // valid map.
    let lookup = s
        .joins_seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .lookup(&request.join);
    match lookup {
        Seen::OtherJoiner => return Err(invitation_taken()),
        // The joiner retries until it is registered; we approved it already.
        Seen::SameJoiner => return Ok(()),
        Seen::New => {}
    }
    probe_joiner(&request.join.address).await?;
    let recorded = s
        .joins_seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .record(&request.join);
    match recorded {
        Seen::New => approve_and_forward(s, &request),
        Seen::SameJoiner => {}
        // Another joiner with this invitation got in while we probed.
        Seen::OtherJoiner => return Err(invitation_taken()),
    }
    Ok(())
}

/// Queues our `approve_node` for the driver, waiting for room rather than dropping it when
/// the queue is full (a lost approval can leave a join one vote short until it expires),
/// and logs the verdict (the chain may refuse it: invitation spent, inviter rate-limited).
fn submit_approval(tx_in: &mpsc::Sender<TxSubmission>, tx: Transaction) {
    let (reply, verdict) = oneshot::channel();
    let submission = TxSubmission {
        tx,
        origin: None,
        reply: Some(reply),
        signature_checked: false,
    };
    let tx_in = tx_in.clone();
    tokio::spawn(async move {
        if tx_in.send(submission).await.is_err() {
            tracing::warn!("node is stopping: approval not submitted");
            return;
        }
        match verdict.await {
            Ok(Ok(hash)) => tracing::info!(tx = %hash, "approval submitted"),
            Ok(Err(reason)) => tracing::warn!(%reason, "approval refused by the chain rules"),
            Err(_) => {}
        }
    });
}

fn approve_and_forward(s: &Arc<Shared>, request: &NewNodeRequest) {
    tracing::info!(key = %request.join.public_key, address = %request.join.address, "approving a join request");
    if let Ok(payload) = serde_json::to_vec(&request.join) {
        let now = now_ms();
        let tx =
            Transaction::new_signed(&s.chain_id, &s.key, TxKind::ApproveNode, payload, now, now);
        submit_approval(&s.tx_in, tx);
    }
    let Ok(body) = serde_json::to_vec(request) else {
        return;
    };
    let me = s.key.public();
    let peers: Vec<String> = s
        .validators
        .read()
        .map(|v| {
            v.iter()
                .filter(|v| v.public_key != me)
                .map(|v| v.address.clone())
                .collect()
        })
        .unwrap_or_default();
    let client = reqwest::Client::new();
    for address in peers {
        let client = client.clone();
        let body = body.clone();
        tokio::spawn(async move {
            let _ = client
                .post(format!("{}{}", base_url(&address), routes::NEW_NODE.path))
                .header("content-type", "application/json")
                .body(body)
                .timeout(Duration::from_secs(5))
                .send()
                .await;
        });
    }
}

/// For a node set up with `--join`: ask to join until this node is a validator.
pub fn start(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let Some(join) = shared.config.join.clone() else {
        return;
    };
    tokio::spawn(async move {
        let file: InvitationFile = match std::fs::read_to_string(&join.invitation_file)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
        {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(file = %join.invitation_file.display(), error = %e, "cannot read the invitation");
                return;
            }
        };
        let client = reqwest::Client::new();
        while shared.my_id().is_none() && !*stop.borrow() {
            let request = NewNodeRequest::new(
                file.invitation.clone(),
                &shared.key,
                shared.config.node.advertise.clone(),
                now_ms(),
            );
            let url = format!("{}/NewNode", base_url(&join.url));
            match client
                .post(&url)
                .json(&request)
                .timeout(Duration::from_secs(5))
                .send()
                .await
            {
                Ok(resp) if resp.status().is_success() => {
                    tracing::info!(%url, "join request accepted; waiting for the validators' approval")
                }
                Ok(resp) => {
                    let status = resp.status();
                    let text = resp.text().await.unwrap_or_default();
                    tracing::warn!(%url, %status, %text, "join request refused");
                }
                Err(e) => tracing::warn!(%url, error = %e, "cannot reach the member to join"),
            }
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use consensus_core::NodeId;

    fn validators(keys: &[&Keypair]) -> Vec<Validator> {
        keys.iter()
            .enumerate()
            .map(|(i, k)| Validator {
                id: NodeId(i as u16),
                public_key: k.public(),
                address: format!("127.0.0.1:{}", 9000 + i),
            })
            .collect()
    }

    #[test]
    fn a_join_request_is_checked_against_chain_inviter_expiry_and_key() {
        let chain = Hash32([3; 32]);
        let member = Keypair::from_secret([1; 32]);
        let joiner = Keypair::from_secret([2; 32]);
        let inv = Invitation::new(chain, &member, joiner.public(), 10_000, 7);
        let req = NewNodeRequest::new(inv.clone(), &joiner, "127.0.0.1:8704".into(), 1_000);
        let members = validators(&[&member]);
        let vouchers = NodeSet::first_n(1);
        assert_eq!(req.check(&chain, &members, vouchers, 1_000, 60_000), Ok(()));

        assert!(
            req.check(&Hash32([4; 32]), &members, vouchers, 1_000, 60_000)
                .is_err(),
            "other chain"
        );
        assert!(matches!(
            req.check(&chain, &[], NodeSet::EMPTY, 1_000, 60_000),
            Err(WireError::UnknownSender { .. })
        ));
        assert!(
            matches!(
                req.check(&chain, &members, NodeSet::EMPTY, 1_000, 60_000),
                Err(WireError::Rejected(m)) if m.contains("suspended")
            ),
            "a suspended inviter cannot invite"
        );
        assert!(
            req.check(&chain, &members, vouchers, 20_000, 60_000)
                .is_err(),
            "expired"
        );
        let mut forged = req.clone();
        forged.join.address = "10.0.0.1:1".into();
        assert_eq!(
            forged.check(&chain, &members, vouchers, 1_000, 60_000),
            Err(WireError::BadSignature),
            "the joiner's signature covers its address"
        );
        let mut bad_inv = req.clone();
        bad_inv.join.invitation.expires_ms += 1;
        assert_eq!(
            bad_inv.check(&chain, &members, vouchers, 1_000, 60_000),
            Err(WireError::BadSignature)
        );
        let already = NewNodeRequest::new(inv.clone(), &member, "127.0.0.1:8704".into(), 1_000);
        assert!(already
            .check(&chain, &members, vouchers, 1_000, 60_000)
            .is_err());
        let someone_else = Keypair::from_secret([5; 32]);
        let taken = NewNodeRequest::new(inv, &someone_else, "127.0.0.1:8704".into(), 1_000);
        assert!(
            matches!(
                taken.check(&chain, &members, vouchers, 1_000, 60_000),
                Err(WireError::Rejected(m)) if m.contains("not this joiner")
            ),
            "an invitation is for the key it names"
        );
    }

    #[test]
    fn an_invitation_is_remembered_for_its_first_joiner_only_and_the_memory_is_bounded() {
        let chain = Hash32([3; 32]);
        let member = Keypair::from_secret([1; 32]);
        let join = |nonce: u64, joiner: u8| {
            let joiner = Keypair::from_secret([joiner; 32]);
            NewNodeRequest::new(
                Invitation::new(chain, &member, joiner.public(), 10_000, nonce),
                &joiner,
                "127.0.0.1:8704".into(),
                1_000,
            )
            .join
        };
        let mut seen = SeenInvitations::default();
        assert_eq!(seen.record(&join(1, 2)), Seen::New);
        assert_eq!(seen.record(&join(1, 2)), Seen::SameJoiner);
        assert_eq!(seen.lookup(&join(1, 3)), Seen::OtherJoiner);
        assert_eq!(seen.record(&join(1, 3)), Seen::OtherJoiner);
        assert_eq!(seen.lookup(&join(2, 3)), Seen::New, "another nonce");

        for nonce in 100..100 + JOINS_SEEN_MAX as u64 {
            seen.record(&join(nonce, 4));
        }
        assert_eq!(seen.len(), JOINS_SEEN_MAX);
        assert_eq!(
            seen.lookup(&join(1, 3)),
            Seen::New,
            "the oldest was dropped"
        );
    }
}
