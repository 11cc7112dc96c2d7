//! Every HTTP endpoint in one table (docs/PROTOCOL.md §7): its path and aliases, method,
//! the envelope types it accepts and its body limit. The router, the refusal metrics, the
//! transport and the clients all name endpoints through these constants, so a path is
//! written once.

use crate::wire::kind;

/// How an endpoint is called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    /// GET for anyone, POST with a signed envelope (as the original TinyWeb did).
    GetOrSignedPost,
}

/// Most bytes of a request body an endpoint reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyLimit {
    /// No body.
    None,
    /// [`SMALL_BODY_LIMIT`]: votes, new-round votes, transactions, sync and join requests.
    Small,
    /// The configured `network.body_limit_bytes` (proposals carry whole blocks).
    Configured,
    /// A fixed size below the small limit.
    Bytes(usize),
}

/// Most bytes of any request that is not a proposal: unauthenticated senders cannot make
/// the node buffer and parse megabytes on the endpoints most traffic goes to.
pub const SMALL_BODY_LIMIT: usize = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    pub path: &'static str,
    /// Other paths served the same way (a corrected spelling, a clearer name).
    pub aliases: &'static [&'static str],
    pub method: Method,
    /// The envelope `type`s a POST accepts; empty when the body is not an envelope.
    pub envelopes: &'static [&'static str],
    pub body_limit: BodyLimit,
}

const fn post(path: &'static str, envelopes: &'static [&'static str], limit: BodyLimit) -> Route {
    Route {
        path,
        aliases: &[],
        method: Method::Post,
        envelopes,
        body_limit: limit,
    }
}

const fn get(path: &'static str) -> Route {
    Route {
        path,
        aliases: &[],
        method: Method::Get,
        envelopes: &[],
        body_limit: BodyLimit::None,
    }
}

pub const PROPOSE_BLOCK: Route = post("/ProposeBlock", &["proposal"], BodyLimit::Configured);
pub const VERIFICATION_VOTE: Route = post(
    "/VerificationVote",
    &["verification_vote"],
    BodyLimit::Small,
);
pub const COMMIT_VOTE: Route = post("/CommitVote", &["commit_vote"], BodyLimit::Small);
/// The view-change vote; `/NewRound` says what it is.
pub const MISSING_PROPOSER: Route = Route {
    aliases: &["/NewRound"],
    ..post("/MissingProposer", &["new_round"], BodyLimit::Small)
};
/// A client's bare transaction, or a peer's rebroadcast in a `transaction_batch` envelope
/// (or, from older nodes, one `transaction` envelope per transaction).
pub const TRANSACTION: Route = post(
    "/Transaction",
    &[kind::TRANSACTION_BATCH, kind::TRANSACTION],
    BodyLimit::Small,
);
/// The original's spelling first; the corrected one is an alias.
pub const MISSING_BLOCK_REQUEST: Route = Route {
    aliases: &["/MissingBlockRequest"],
    ..post(
        "/MissingBlockRequeset",
        &[kind::MISSING_BLOCKS_REQUEST],
        BodyLimit::Small,
    )
};
pub const REQUEST_ENTIRE_BLOCKCHAIN: Route = post(
    "/RequestEntireBlockchain",
    &[kind::ENTIRE_CHAIN_REQUEST],
    BodyLimit::Small,
);
pub const SEND_NEW_BLOCKCHAIN: Route = post(
    "/SendNewBlockChain",
    &[kind::NEW_BLOCKCHAIN],
    BodyLimit::Small,
);
/// A join request: signed by the joiner's own key, not an envelope; well under 1 KiB.
pub const NEW_NODE: Route = post("/NewNode", &[], BodyLimit::Bytes(16 * 1024));
pub const GET_BLOCKCHAIN_LENGTH: Route = get("/GetBlockChainLength");
pub const BLOCKCHAIN_LAST_HASH: Route = get("/BlockChainLastHash");
pub const GET_PENDING_TRANSACTIONS: Route = Route {
    method: Method::GetOrSignedPost,
    ..post(
        "/GetPendingTransactions",
        &[kind::PENDING_REQUEST],
        BodyLimit::Small,
    )
};
pub const BLOCK: Route = get("/Block/{height}");
pub const TRANSACTION_STATUS: Route = get("/Transaction/{hash}");
pub const STATUS: Route = get("/status");
pub const GENESIS: Route = get("/genesis");
pub const METRICS: Route = get("/metrics");
pub const EVENTS: Route = get("/events");
pub const HEALTH: Route = get("/health");
/// The visualizer's page and its assets, when the node has them (`node.ui_dir`); `/ui`
/// redirects to `/ui/`.
pub const UI: Route = Route {
    aliases: &["/ui/", "/ui"],
    ..get("/ui/{*path}")
};

/// Every endpoint the node serves.
pub const ALL: [Route; 20] = [
    PROPOSE_BLOCK,
    VERIFICATION_VOTE,
    COMMIT_VOTE,
    MISSING_PROPOSER,
    TRANSACTION,
    MISSING_BLOCK_REQUEST,
    REQUEST_ENTIRE_BLOCKCHAIN,
    SEND_NEW_BLOCKCHAIN,
    NEW_NODE,
    GET_BLOCKCHAIN_LENGTH,
    BLOCKCHAIN_LAST_HASH,
    GET_PENDING_TRANSACTIONS,
    BLOCK,
    TRANSACTION_STATUS,
    STATUS,
    GENESIS,
    METRICS,
    EVENTS,
    HEALTH,
    UI,
];

impl Route {
    /// The path with `{name}` filled in, for a client.
    pub fn with(&self, value: impl std::fmt::Display) -> String {
        match self.path.find('{') {
            Some(start) => format!("{}{value}", &self.path[..start]),
            None => self.path.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_and_alias_is_served_once() {
        let mut paths: Vec<&str> = ALL
            .iter()
            .flat_map(|r| std::iter::once(r.path).chain(r.aliases.iter().copied()))
            .collect();
        let count = paths.len();
        paths.sort_unstable();
        paths.dedup();
        assert_eq!(paths.len(), count, "a path is in the table twice");
        // Every POST that takes an envelope names its type; GETs take none.
        for route in ALL {
            match route.method {
                Method::Get => assert!(route.envelopes.is_empty(), "{}", route.path),
                Method::Post | Method::GetOrSignedPost => {
                    assert!(route.body_limit != BodyLimit::None, "{}", route.path)
                }
            }
        }
    }

    #[test]
    fn vote_endpoints_take_the_envelope_type_of_their_vote() {
        use consensus_core::VoteKind;
        assert_eq!(
            VERIFICATION_VOTE.envelopes,
            [VoteKind::Verification.domain()]
        );
        assert_eq!(COMMIT_VOTE.envelopes, [VoteKind::Commit.domain()]);
    }

    #[test]
    fn a_path_parameter_is_filled_in() {
        assert_eq!(BLOCK.with(7), "/Block/7");
        assert_eq!(STATUS.with(7), "/status");
    }
}
