//! Adding a validator (DESIGN §3, §9; Req 2.10, 12.2, 12.4).
//!
//! 1. A member runs `tinyweb invite`: an [`Invitation`] it signs (chain id, expiry, nonce),
//!    bundled with the genesis file and its URL into an [`InvitationFile`].
//! 2. The new node (`tinyweb init --join URL --invitation FILE`) posts a [`NewNodeRequest`]
//!    to `/NewNode`: the invitation, its key and address, signed with its own key (proof
//!    that it holds the key it asks to register).
//! 3. Every validator that checks the request signs its own `approve_node` transaction and
//!    forwards the request, unmodified, to its peers; the new validator is registered once a
//!    quorum of the active validators' approvals are committed (the core's membership rule).
//! 4. On that commit every member adds the peer, and pushes it its chain length
//!    (`/SendNewBlockChain`); the new node pulls and validates the blocks through sync.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use consensus_core::crypto::{self, Keypair, SigningBytes};
use consensus_core::message::JoinRequest;
use consensus_core::{Genesis, Hash32, PublicKey, Signature, Transaction, TxKind};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::transport::base_url;
use super::{now_ms, Shared, TxSubmission};
use crate::wire::WireError;

/// A member's signed promise that whoever holds this may ask to join (once, until expiry).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Invitation {
    pub chain_id: Hash32,
    pub inviter: PublicKey,
    pub expires_ms: u64,
    pub nonce: u64,
    pub signature: Signature,
}

impl Invitation {
    fn signing_bytes(
        chain_id: &Hash32,
        inviter: &PublicKey,
        expires_ms: u64,
        nonce: u64,
    ) -> SigningBytes {
        let mut b = SigningBytes::new("invitation");
        b.hash(chain_id).key(inviter).u64(expires_ms).u64(nonce);
        b
    }

    pub fn new(chain_id: Hash32, key: &Keypair, expires_ms: u64, nonce: u64) -> Self {
        let inviter = key.public();
        let signature = key.sign(&Self::signing_bytes(&chain_id, &inviter, expires_ms, nonce));
        Self {
            chain_id,
            inviter,
            expires_ms,
            nonce,
            signature,
        }
    }

    pub fn verify(&self) -> Result<(), WireError> {
        let bytes = Self::signing_bytes(&self.chain_id, &self.inviter, self.expires_ms, self.nonce);
        crypto::verify(&self.inviter, &bytes, &self.signature).map_err(|_| WireError::BadSignature)
    }
}

/// What `tinyweb invite` prints and `tinyweb init --join` reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitationFile {
    /// A member to send the join request to.
    pub url: String,
    pub genesis: Genesis,
    pub invitation: Invitation,
}

/// The `/NewNode` body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewNodeRequest {
    pub invitation: Invitation,
    pub join: JoinRequest,
    pub ts: u64,
    /// By `join.public_key`.
    pub signature: Signature,
}

impl NewNodeRequest {
    fn signing_bytes(invitation: &Invitation, join: &JoinRequest, ts: u64) -> SigningBytes {
        let mut b = SigningBytes::new("new_node");
        b.hash(&invitation.chain_id)
            .bytes(&invitation.signature.0)
            .key(&join.public_key)
            .bytes(join.address.as_bytes())
            .u64(ts);
        b
    }

    pub fn new(invitation: Invitation, key: &Keypair, address: String, ts: u64) -> Self {
        let join = JoinRequest {
            public_key: key.public(),
            address,
        };
        let signature = key.sign(&Self::signing_bytes(&invitation, &join, ts));
        Self {
            invitation,
            join,
            ts,
            signature,
        }
    }

    /// Everything a member checks before approving: chain, inviter is a validator, not
    /// expired, the joiner holds its key, fresh timestamp, a plausible address.
    pub fn check(
        &self,
        chain_id: &Hash32,
        is_validator: impl Fn(&PublicKey) -> bool,
        now: u64,
        window_ms: u64,
    ) -> Result<(), WireError> {
        let inv = &self.invitation;
        if inv.chain_id != *chain_id {
            return Err(WireError::Rejected(format!(
                "the invitation is for chain {}, this is chain {chain_id}",
                inv.chain_id
            )));
        }
        if !is_validator(&inv.inviter) {
            return Err(WireError::UnknownSender {
                from: crate::wire::NO_ID,
                sender: inv.inviter,
            });
        }
        inv.verify()?;
        if now > inv.expires_ms {
            return Err(WireError::Rejected("the invitation has expired".into()));
        }
        if self.ts.abs_diff(now) > window_ms {
            return Err(WireError::Stale {
                ts: self.ts,
                now,
                window_ms,
            });
        }
        let bytes = Self::signing_bytes(inv, &self.join, self.ts);
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
        if is_validator(&self.join.public_key) {
            return Err(WireError::Rejected(
                "this key is already a validator".into(),
            ));
        }
        Ok(())
    }
}

/// `POST /NewNode`.
pub async fn new_node(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Body) -> Response {
    let limit = s.config.network.body_limit_bytes;
    let _ = headers;
    let result = async {
        let raw = axum::body::to_bytes(body, limit)
            .await
            .map_err(|_| WireError::TooLarge { limit })?;
        let request: NewNodeRequest =
            serde_json::from_slice(&raw).map_err(|e| WireError::WrongShape(e.to_string()))?;
        let validators = s.validators.read().map(|v| v.clone()).unwrap_or_default();
        request.check(
            &s.chain_id,
            |k| validators.iter().any(|v| v.public_key == *k),
            now_ms(),
            s.config.network.replay_window_ms,
        )?;
        let first_time = s
            .joins_seen
            .lock()
            .map(|mut seen| seen.insert(request.join.public_key))
            .unwrap_or(false);
        if first_time {
            approve_and_forward(&s, &request);
        }
        Ok::<_, WireError>(Json(serde_json::json!({ "accepted": true })).into_response())
    }
    .await;
    result.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "join request refused");
        e.into_response()
    })
}

fn approve_and_forward(s: &Arc<Shared>, request: &NewNodeRequest) {
    tracing::info!(key = %request.join.public_key, address = %request.join.address, "approving a join request");
    if let Ok(payload) = serde_json::to_vec(&request.join) {
        let now = now_ms();
        let tx = Transaction::new_signed(&s.key, TxKind::ApproveNode, payload, now, now);
        let _ = s.tx_in.try_send(TxSubmission {
            tx,
            origin: None,
            reply: None,
        });
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
                .post(format!("{}/NewNode", base_url(&address)))
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

    #[test]
    fn a_join_request_is_checked_against_chain_inviter_expiry_and_key() {
        let chain = Hash32([3; 32]);
        let member = Keypair::from_secret([1; 32]);
        let joiner = Keypair::from_secret([2; 32]);
        let inv = Invitation::new(chain, &member, 10_000, 7);
        let req = NewNodeRequest::new(inv.clone(), &joiner, "127.0.0.1:8704".into(), 1_000);
        let members = |k: &PublicKey| *k == member.public();
        assert_eq!(req.check(&chain, members, 1_000, 60_000), Ok(()));

        assert!(
            req.check(&Hash32([4; 32]), members, 1_000, 60_000).is_err(),
            "other chain"
        );
        assert!(matches!(
            req.check(&chain, |_| false, 1_000, 60_000),
            Err(WireError::UnknownSender { .. })
        ));
        assert!(
            req.check(&chain, members, 20_000, 60_000).is_err(),
            "expired"
        );
        let mut forged = req.clone();
        forged.join.address = "10.0.0.1:1".into();
        assert_eq!(
            forged.check(&chain, members, 1_000, 60_000),
            Err(WireError::BadSignature),
            "the joiner's signature covers its address"
        );
        let mut bad_inv = req.clone();
        bad_inv.invitation.expires_ms += 1;
        assert_eq!(
            bad_inv.check(&chain, members, 1_000, 60_000),
            Err(WireError::BadSignature)
        );
    }
}
