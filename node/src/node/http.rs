//! The HTTP API (DESIGN §5). Handlers parse, authenticate and enqueue; they never touch the
//! replica. Every refusal is a JSON body `{ "error": <code>, "message": <text> }` with the
//! status DESIGN §5 gives (400 / 401 / 404 / 409 / 413 / 503 + Retry-After).
//!
//! The server is hyper's HTTP/1 connection builder with a header-read timeout, behind a
//! connection cap (a semaphore taken before `accept`): `axum::serve` sets neither, and a
//! slow or idle client could otherwise hold the node's sockets and starve consensus.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use consensus_core::{
    sync, ConsensusMessage, Hash32, NewRound, NodeId, Proposal, SyncRequest, SyncResponse,
    Transaction, Vote, VoteKind,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch, Semaphore};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt;

use super::{join, now_ms, ui, Control, Query, Shared, TxSubmission};
use crate::routes::{self, BodyLimit, Route, SMALL_BODY_LIMIT};
use crate::wire::{
    self, kind, ChainNotice, Empty, Envelope, FromHeight, LastHash, PendingTransactions, WireBody,
    WireError,
};

/// How long a client waits for the replica's verdict on its transaction.
const TX_VERDICT_TIMEOUT: Duration = Duration::from_secs(5);

impl IntoResponse for WireError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status()).unwrap_or(StatusCode::BAD_REQUEST);
        let body = Json(crate::api::ErrorBody {
            error: self.code().to_owned(),
            message: self.to_string(),
        });
        let mut response = (status, body).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

type Shr = State<Arc<Shared>>;

/// Each route of [`routes::ALL`] with its handler.
fn endpoints() -> Vec<(Route, MethodRouter<Arc<Shared>>)> {
    vec![
        (routes::PROPOSE_BLOCK, post(propose_block)),
        (routes::VERIFICATION_VOTE, post(verification_vote)),
        (routes::COMMIT_VOTE, post(commit_vote)),
        (routes::MISSING_PROPOSER, post(missing_proposer)),
        (routes::TRANSACTION, post(transaction)),
        (routes::MISSING_BLOCK_REQUEST, post(missing_blocks)),
        (routes::REQUEST_ENTIRE_BLOCKCHAIN, post(entire_chain)),
        (routes::SEND_NEW_BLOCKCHAIN, post(new_blockchain)),
        (routes::NEW_NODE, post(new_node)),
        (routes::GET_BLOCKCHAIN_LENGTH, get(chain_length)),
        (routes::BLOCKCHAIN_LAST_HASH, get(last_hash)),
        (
            routes::GET_PENDING_TRANSACTIONS,
            get(pending_plain).post(pending_signed),
        ),
        (routes::BLOCK, get(block)),
        (routes::TRANSACTION_STATUS, get(tx_status)),
        (routes::STATUS, get(status)),
        (routes::GENESIS, get(genesis)),
        (routes::METRICS, get(metrics)),
        (routes::EVENTS, get(events)),
        (routes::HEALTH, get(health)),
        (routes::UI, get(ui::asset)),
    ]
}

pub fn router(shared: Arc<Shared>) -> Router {
    let mut router = Router::new();
    for (route, handler) in endpoints() {
        for path in std::iter::once(route.path).chain(route.aliases.iter().copied()) {
            router = router.route(path, handler.clone());
        }
    }
    router
        .fallback(|| async { WireError::NotFound })
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            ui::allow_cluster_origins,
        ))
        .with_state(shared)
}

/// Connections served beyond `network.max_connections`, one request each.
pub const BRIEF_CONNECTIONS_MAX: usize = 64;

/// Serves until `stop` flips. Up to `max_connections` connections are kept alive between
/// requests; [`BRIEF_CONNECTIONS_MAX`] more are served one request each and closed, so a
/// client's burst of keep-alive connections, idle until the header-read timeout cuts them,
/// cannot make a `/status` poll wait seconds for a slot (under a 5,000 tx/s load it waited
/// up to 5 s). Beyond both, connections wait in the kernel's accept queue rather than being
/// accepted and starved.
pub async fn serve(shared: Arc<Shared>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    let network = &shared.config.network;
    let permits = Arc::new(Semaphore::new(network.max_connections));
    let brief = Arc::new(Semaphore::new(BRIEF_CONNECTIONS_MAX));
    let header_timeout = Duration::from_millis(network.header_read_timeout_ms);
    let app = router(shared.clone());
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (permit, keep_alive) = tokio::select! {
            biased;
            _ = stop.changed() => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => (p, true),
                Err(_) => break,
            },
            permit = brief.clone().acquire_owned() => match permit {
                Ok(p) => (p, false),
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, _) = match accepted {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        connections.spawn(async move {
            let _permit = permit;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .keep_alive(keep_alive);
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        while connections.try_join_next().is_some() {}
    }
    connections.abort_all();
}

/// Reads the body up to `limit` (413 beyond it, before reading when the client declared its
/// length) within the header-read timeout again (408): a client trickling its body cannot
/// hold a connection slot for longer than one that sends nothing.
pub(super) async fn read_body(
    shared: &Shared,
    headers: &HeaderMap,
    body: Body,
    route: &Route,
) -> Result<Bytes, WireError> {
    let configured = shared.config.network.body_limit_bytes;
    let limit = match route.body_limit {
        BodyLimit::None => 0,
        BodyLimit::Small => SMALL_BODY_LIMIT.min(configured),
        BodyLimit::Configured => configured,
        BodyLimit::Bytes(n) => n.min(configured),
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(WireError::TooLarge { limit });
    }
    let ms = shared.config.network.header_read_timeout_ms;
    match tokio::time::timeout(Duration::from_millis(ms), axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(WireError::TooLarge { limit }),
        Err(_) => Err(WireError::SlowBody { ms }),
    }
}

/// A refusal worth a log line and a metric; security events at warn (Req 8.3, 9.5).
fn refused(shared: &Shared, route: &Route, error: WireError) -> WireError {
    let endpoint = route.path;
    shared.metrics.inc(&format!(
        "tinyweb_http_rejected_total{{code=\"{}\"}}",
        error.code()
    ));
    if error.is_security_event() {
        shared.metrics.inc(&format!(
            "tinyweb_security_events_total{{kind=\"{}\"}}",
            error.code()
        ));
        tracing::warn!(security = true, endpoint, %error, "request refused");
    } else {
        tracing::debug!(endpoint, %error, "request refused");
    }
    error
}

/// How an envelope's sender is matched against the validator set.
#[derive(Clone, Copy)]
enum Sender {
    /// By `from`: consensus messages and anything that changes state.
    ById,
    /// By key alone: read-only requests from a validator that joined recently and does not
    /// know its own id yet.
    ByKey,
}

/// Parse, authenticate against the validator set, and check for replays.
fn open<B: WireBody>(
    shared: &Shared,
    raw: &[u8],
    kinds: &[&str],
    sender: Sender,
) -> Result<(Envelope<B>, Hash32), WireError> {
    let envelope: Envelope<B> = wire::parse_envelope(raw, kinds)?;
    let claimed = envelope.sender;
    let key_of = |from| match sender {
        Sender::ById => shared.validator(from).map(|v| v.public_key),
        Sender::ByKey => shared
            .validators
            .read()
            .ok()?
            .iter()
            .any(|v| v.public_key == claimed)
            .then_some(claimed),
    };
    let now = now_ms();
    let window_ms = shared.config.network.replay_window_ms;
    let id = wire::authenticate(&envelope, &shared.chain_id, key_of, now, window_ms).inspect_err(
        |e| {
            if let (WireError::Stale { .. }, Some(key)) = (e, key_of(envelope.from)) {
                // By key: a request matched by key alone may carry any `from`.
                let Some(id) = shared.validator_id_of(&key) else {
                    return;
                };
                shared.transport.clock_skew().stale_from_validator(
                    id,
                    &envelope,
                    &shared.chain_id,
                    &key,
                    now,
                    window_ms,
                );
            }
        },
    )?;
    check_replay(shared, id, envelope.ts)?;
    Ok((envelope, id))
}

fn open_envelope<B: WireBody>(
    shared: &Shared,
    raw: &[u8],
    kinds: &[&str],
) -> Result<(Envelope<B>, Hash32), WireError> {
    open(shared, raw, kinds, Sender::ById)
}

fn open_request<B: WireBody>(
    shared: &Shared,
    raw: &[u8],
    kinds: &[&str],
) -> Result<(Envelope<B>, Hash32), WireError> {
    open(shared, raw, kinds, Sender::ByKey)
}

/// A message refused after its id was recorded (full queue) may be sent again as is.
fn forget(shared: &Shared, id: &Hash32) {
    if let Ok(mut guard) = shared.replay.lock() {
        guard.forget(id);
    }
}

fn check_replay(shared: &Shared, id: Hash32, ts: u64) -> Result<(), WireError> {
    let fresh = shared
        .replay
        .lock()
        .map(|mut g| g.check_and_insert(id, ts, now_ms()))
        .unwrap_or(false);
    if fresh {
        Ok(())
    } else {
        Err(WireError::Replayed)
    }
}

fn accepted() -> Response {
    Json(serde_json::json!({ "accepted": true })).into_response()
}

fn enqueue(
    shared: &Shared,
    from: NodeId,
    message: ConsensusMessage,
) -> Result<Response, WireError> {
    if shared.fatal.read().map(|f| f.is_some()).unwrap_or(true) {
        return Err(WireError::Unavailable("consensus stopped".into()));
    }
    shared
        .consensus_in
        .try_send((from, message))
        .map_err(|_| WireError::Busy)?;
    Ok(accepted())
}

async fn consensus_message<B: WireBody>(
    shared: &Shared,
    route: &Route,
    headers: &HeaderMap,
    body: Body,
    into_message: impl FnOnce(B) -> Result<ConsensusMessage, WireError>,
) -> Response {
    let result = async {
        let raw = read_body(shared, headers, body, route).await?;
        let (envelope, id): (Envelope<B>, _) = open_envelope(shared, &raw, route.envelopes)?;
        let message = into_message(envelope.body)?;
        enqueue(shared, envelope.from, message).inspect_err(|_| forget(shared, &id))
    }
    .await;
    result.unwrap_or_else(|e| refused(shared, route, e).into_response())
}

async fn propose_block(State(s): Shr, headers: HeaderMap, body: Body) -> Response {
    consensus_message::<Proposal>(&s, &routes::PROPOSE_BLOCK, &headers, body, |p| {
        Ok(ConsensusMessage::Proposal(p))
    })
    .await
}

fn vote_of(kind: VoteKind) -> impl FnOnce(Vote) -> Result<ConsensusMessage, WireError> {
    move |vote: Vote| {
        if vote.kind != kind {
            return Err(WireError::WrongShape(format!(
                "a {:?} vote posted to the {kind:?} endpoint",
                vote.kind
            )));
        }
        Ok(ConsensusMessage::Vote(vote))
    }
}

async fn verification_vote(State(s): Shr, headers: HeaderMap, body: Body) -> Response {
    let route = &routes::VERIFICATION_VOTE;
    consensus_message(&s, route, &headers, body, vote_of(VoteKind::Verification)).await
}

async fn commit_vote(State(s): Shr, headers: HeaderMap, body: Body) -> Response {
    let route = &routes::COMMIT_VOTE;
    consensus_message(&s, route, &headers, body, vote_of(VoteKind::Commit)).await
}

async fn missing_proposer(State(s): Shr, headers: HeaderMap, body: Body) -> Response {
    consensus_message::<NewRound>(&s, &routes::MISSING_PROPOSER, &headers, body, |v| {
        Ok(ConsensusMessage::NewRound(v))
    })
    .await
}

/// A client posts the signed transaction itself. A peer relays transactions unmodified,
/// their own signatures intact, in a signed `transaction_batch` envelope (or, from an older
/// node, one `transaction` envelope each), so the origin is known and not sent them back
/// (Req 10.2, 10.6).
async fn transaction(State(s): Shr, headers: HeaderMap, body: Body) -> Response {
    let route = &routes::TRANSACTION;
    let result = async {
        let raw = read_body(&s, &headers, body, route).await?;
        let probe: wire::VersionProbe =
            serde_json::from_slice(&raw).map_err(|e| WireError::BadJson(e.to_string()))?;
        if probe.v.is_none() {
            return client_transaction(&s, &raw).await;
        }
        let (from, txs, id) = match probe.kind.as_ref().and_then(|k| k.as_str()) {
            Some(kind::TRANSACTION) => {
                let (e, id): (Envelope<Transaction>, _) = open_envelope(&s, &raw, route.envelopes)?;
                (e.from, vec![e.body], id)
            }
            _ => {
                let (e, id): (Envelope<wire::TransactionBatch>, _) =
                    open_envelope(&s, &raw, route.envelopes)?;
                (e.from, e.body.transactions, id)
            }
        };
        // Checking up to 256 signatures takes milliseconds: off the async workers, which
        // carry the consensus messages.
        let shared = s.clone();
        tokio::task::spawn_blocking(move || relayed_transactions(&shared, from, txs))
            .await
            .unwrap_or(Err(WireError::Busy))
            .inspect_err(|_| forget(&s, &id))
    }
    .await;
    result.unwrap_or_else(|e| refused(&s, route, e).into_response())
}

/// The client waits for the replica's admission verdict. The signature is checked here, on
/// an HTTP worker in parallel, not on the driver's thread.
async fn client_transaction(s: &Shared, raw: &[u8]) -> Result<Response, WireError> {
    let tx: Transaction =
        serde_json::from_slice(raw).map_err(|e| WireError::WrongShape(e.to_string()))?;
    if s.mempool_full.load(Ordering::Relaxed) {
        return Err(WireError::TxRefused(consensus_core::TxError::MempoolFull));
    }
    // A resubmission is answered from the node's signature cache, not checked again.
    tx.verify_with(&s.verifier, &s.chain_id)
        .map_err(|_| WireError::TxRefused(consensus_core::TxError::BadSignature))?;
    let (reply, verdict) = oneshot::channel();
    s.tx_in
        .try_send(TxSubmission {
            tx,
            origin: None,
            reply: Some(reply),
            signature_checked: true,
        })
        .map_err(|_| WireError::Busy)?;
    match tokio::time::timeout(TX_VERDICT_TIMEOUT, verdict).await {
        Ok(Ok(Ok(tx_hash))) => Ok(Json(crate::api::TxAccepted {
            tx_hash,
            accepted: true,
        })
        .into_response()),
        Ok(Ok(Err(reason))) => Err(WireError::TxRefused(reason)),
        _ => Err(WireError::Busy),
    }
}

/// A transaction normally arrives once, from the validator a client gave it to; a retried
/// envelope (after a 503) or an older node's relays bring copies. Copies already checked
/// here are dropped before they cost the driver anything, and the rest are verified here. One with a
/// bad signature goes to the replica unchecked, which refuses it and records the peer that
/// relayed it. With the mempool full none is queued, but their checks are remembered for
/// the proposals that will carry them. If the queue fills, the ones not queued are
/// forgotten so the peer's retry of the same envelope (answered 503) brings them again.
fn relayed_transactions(
    s: &Shared,
    from: NodeId,
    txs: Vec<Transaction>,
) -> Result<Response, WireError> {
    let fresh: Vec<Transaction> = match s.txs_checked.lock() {
        Ok(checked) => txs.into_iter().filter(|tx| !checked.contains(tx)).collect(),
        Err(_) => txs,
    };
    let verdicts: Vec<bool> = fresh
        .iter()
        .map(|tx| tx.verify_with(&s.verifier, &s.chain_id).is_ok())
        .collect();
    if s.mempool_full.load(Ordering::Relaxed) {
        // The replica would refuse them all. They reach us in proposals, whose validation
        // then finds their signatures checked (here, in parallel, not on the driver).
        s.metrics
            .add("tinyweb_relayed_txs_shed_total", fresh.len() as f64);
        return Ok(accepted());
    }
    if let Ok(mut checked) = s.txs_checked.lock() {
        for (tx, _) in fresh.iter().zip(&verdicts).filter(|(_, ok)| **ok) {
            checked.insert(tx);
        }
    }
    let mut queue = fresh.into_iter().zip(verdicts);
    while let Some((tx, signature_checked)) = queue.next() {
        let submission = TxSubmission {
            tx,
            origin: Some(from),
            reply: None,
            signature_checked,
        };
        if let Err(refused) = s.tx_in.try_send(submission) {
            if let Ok(mut checked) = s.txs_checked.lock() {
                checked.remove(&refused.into_inner().tx);
                for (tx, _) in queue {
                    checked.remove(&tx);
                }
            }
            return Err(WireError::Busy);
        }
    }
    Ok(accepted())
}

/// Room kept in a sync answer for the envelope around its blocks and the JSON between them.
const SYNC_ENVELOPE_OVERHEAD: usize = 16 * 1024;

/// Answers a sync request with a signed envelope. A page holds whole blocks up to the body
/// limit (Req 5.6; one block always fits, the config guarantees it), read and serialised
/// once each. Runs on a blocking thread: LMDB reads and serialising megabytes must not
/// stall the async workers that carry consensus messages.
async fn sync_answer(shared: Arc<Shared>, request: SyncRequest) -> Result<Response, WireError> {
    let permit = shared
        .sync_serving
        .clone()
        .try_acquire_owned()
        .map_err(|_| WireError::Busy)?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let budget = shared
            .config
            .network
            .body_limit_bytes
            .saturating_sub(SYNC_ENVELOPE_OVERHEAD);
        let mut used = 0usize;
        let fits = |block: &consensus_core::Block| {
            used += serde_json::to_vec(block).map_or(usize::MAX, |b| b.len() + 1);
            used <= budget
        };
        let store: &dyn crate::store::Store = shared.store.as_ref();
        let response = sync::serve_within(&store, &request, fits);
        #[cfg(feature = "misbehave")]
        let response = match shared.config.misbehaviour {
            Some(super::misbehave::Misbehaviour::ForgeSync) => {
                super::misbehave::forge_sync(response)
            }
            _ => response,
        };
        let answer_kind = match &response {
            SyncResponse::ChainPage { .. } => kind::CHAIN_PAGE,
            _ => kind::MISSING_BLOCKS,
        };
        let me = shared.my_id().unwrap_or(wire::NO_ID);
        let envelope = Envelope::seal(
            &shared.chain_id,
            &shared.key,
            me,
            answer_kind,
            now_ms(),
            response,
        );
        let bytes =
            serde_json::to_vec(&envelope).map_err(|e| WireError::Unavailable(e.to_string()))?;
        Ok(([(header::CONTENT_TYPE, "application/json")], bytes).into_response())
    })
    .await
    .map_err(|e| WireError::Unavailable(e.to_string()))?
}

/// `/MissingBlockRequeset`: the blocks after the requester's last hash, newest first.
async fn missing_blocks(State(s): Shr, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        let raw = read_body(&s, &headers, body, &routes::MISSING_BLOCK_REQUEST).await?;
        let (envelope, _): (Envelope<LastHash>, _) =
            open_request(&s, &raw, routes::MISSING_BLOCK_REQUEST.envelopes)?;
        let last_hash = envelope.body.last_hash;
        sync_answer(s.clone(), SyncRequest::MissingBlocks { last_hash }).await
    }
    .await;
    result.unwrap_or_else(|e| refused(&s, &routes::MISSING_BLOCK_REQUEST, e).into_response())
}

/// `/RequestEntireBlockchain`: one page of the chain from `fromHeight`, oldest first.
async fn entire_chain(State(s): Shr, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        let raw = read_body(&s, &headers, body, &routes::REQUEST_ENTIRE_BLOCKCHAIN).await?;
        let (envelope, _): (Envelope<FromHeight>, _) =
            open_request(&s, &raw, routes::REQUEST_ENTIRE_BLOCKCHAIN.envelopes)?;
        let from_height = envelope.body.from_height;
        sync_answer(s.clone(), SyncRequest::EntireChain { from_height }).await
    }
    .await;
    result.unwrap_or_else(|e| refused(&s, &routes::REQUEST_ENTIRE_BLOCKCHAIN, e).into_response())
}

/// `/SendNewBlockChain`: a member tells us (a validator that just joined) its chain length;
/// the replica fetches and validates the blocks from it.
async fn new_blockchain(State(s): Shr, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        let raw = read_body(&s, &headers, body, &routes::SEND_NEW_BLOCKCHAIN).await?;
        let (envelope, id): (Envelope<ChainNotice>, _) =
            open_envelope(&s, &raw, routes::SEND_NEW_BLOCKCHAIN.envelopes)?;
        let tip = Control::PeerTip {
            peer: envelope.from,
            height: envelope.body.chain_length.saturating_sub(1),
        };
        if s.control.try_send(tip).is_err() {
            forget(&s, &id);
            return Err(WireError::Busy);
        }
        Ok(accepted())
    }
    .await;
    result.unwrap_or_else(|e| refused(&s, &routes::SEND_NEW_BLOCKCHAIN, e).into_response())
}

async fn chain_length(State(s): Shr) -> Response {
    let tip = s.store.tip_height();
    Json(serde_json::json!({ "chainLength": wire::chain_length(tip) })).into_response()
}

async fn last_hash(State(s): Shr) -> Response {
    Json(serde_json::json!({
        "height": s.store.tip_height(),
        "lastHash": s.store.tip_hash(),
    }))
    .into_response()
}

async fn pending_plain(State(s): Shr) -> Response {
    match s.ask(Query::Pending).await {
        Ok(list) => Json(PendingTransactions {
            pending_transactions: list,
        })
        .into_response(),
        Err(e) => e.into_response(),
    }
}

/// `pbft_node_get_pending_transactions_from_peer`'s server side, signed both ways.
async fn pending_signed(State(s): Shr, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        let raw = read_body(&s, &headers, body, &routes::GET_PENDING_TRANSACTIONS).await?;
        let _: (Envelope<Empty>, _) =
            open_request(&s, &raw, routes::GET_PENDING_TRANSACTIONS.envelopes)?;
        let list = s.ask(Query::Pending).await?;
        let envelope = Envelope::seal(
            &s.chain_id,
            &s.key,
            s.my_id().unwrap_or(wire::NO_ID),
            kind::PENDING,
            now_ms(),
            PendingTransactions {
                pending_transactions: list,
            },
        );
        Ok(Json(envelope).into_response())
    }
    .await;
    result.unwrap_or_else(|e| refused(&s, &routes::GET_PENDING_TRANSACTIONS, e).into_response())
}

async fn block(State(s): Shr, Path(height): Path<String>) -> Response {
    let Ok(height) = height.parse::<u64>() else {
        return WireError::WrongShape(format!("{height:?} is not a block height")).into_response();
    };
    match s.store.block(height) {
        Ok(Some(block)) => {
            let mut json = serde_json::to_value(&block).unwrap_or_default();
            if let Some(map) = json.as_object_mut() {
                map.insert("hash".into(), serde_json::json!(block.hash()));
            }
            Json(json).into_response()
        }
        Ok(None) => WireError::NotFound.into_response(),
        Err(e) => WireError::Unavailable(e.to_string()).into_response(),
    }
}

async fn tx_status(State(s): Shr, Path(hash): Path<String>) -> Response {
    let Ok(hash) = Hash32::from_hex(&hash) else {
        return WireError::WrongShape("a transaction hash is 64 hex characters".into())
            .into_response();
    };
    match s.ask(|reply| Query::TxStatus(hash, reply)).await {
        Ok(status) => Json(status).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn status(State(s): Shr) -> Response {
    let snapshot = s.status.read().ok().and_then(|status| status.clone());
    if let Some(status) = snapshot {
        return Json(&*status).into_response();
    }
    match s.ask(Query::Status).await {
        Ok(status) => Json(status).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /NewNode`: a node asks to join with an invitation (docs/PROTOCOL.md §6).
async fn new_node(State(s): Shr, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        // Bounded in size and in time: the sender is not authenticated yet.
        let raw = read_body(&s, &headers, body, &routes::NEW_NODE).await?;
        let request: join::NewNodeRequest =
            serde_json::from_slice(&raw).map_err(|e| WireError::WrongShape(e.to_string()))?;
        join::admit(&s, request).await?;
        Ok::<_, WireError>(accepted())
    }
    .await;
    result.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "join request refused");
        refused(&s, &routes::NEW_NODE, e).into_response()
    })
}

/// The genesis file this chain started from: with it, anyone can verify the chain offline.
async fn genesis(State(s): Shr) -> Response {
    Json(&s.genesis).into_response()
}

async fn metrics(State(s): Shr) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

/// The core's events as server-sent events (the visualizer's live feed). A subscriber
/// that falls more than the buffer behind skips ahead rather than slowing the node.
async fn events(State(s): Shr) -> Response {
    let Ok(slot) = s.event_streams.clone().try_acquire_owned() else {
        return WireError::Busy.into_response();
    };
    let stream = BroadcastStream::new(s.events.subscribe())
        .filter_map(|item| item.ok())
        .map(move |json| {
            // The slot is released when the client goes away and the stream is dropped.
            let _held = &slot;
            Ok::<_, Infallible>(SseEvent::default().data(&*json))
        });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

async fn health(State(s): Shr) -> Response {
    match s.fatal.read().ok().and_then(|f| f.clone()) {
        Some(reason) => WireError::Unavailable(reason).into_response(),
        None => Json(serde_json::json!({
            "ok": true,
            "height": s.store.tip_height(),
            "id": s.my_id(),
        }))
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use consensus_core::TxError;

    #[test]
    fn a_full_queue_answers_503_with_retry_after_and_a_json_body() {
        let response = WireError::Busy.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    }

    #[test]
    fn the_router_serves_exactly_the_routes_of_the_table() {
        let served: Vec<Route> = endpoints().into_iter().map(|(route, _)| route).collect();
        assert_eq!(served, routes::ALL.to_vec());
    }

    #[test]
    fn every_error_has_its_documented_status() {
        let cases = [
            (WireError::BadJson(String::new()), 400),
            (WireError::UnsupportedVersion { got: "2".into() }, 400),
            (WireError::WrongShape(String::new()), 400),
            (WireError::BadSignature, 401),
            (WireError::NotFound, 404),
            (WireError::Replayed, 409),
            (WireError::TooLarge { limit: 1 }, 413),
            (WireError::Busy, 503),
            (WireError::TxRefused(TxError::AlreadyCommitted), 409),
            (WireError::TxRefused(TxError::BadSignature), 401),
            (WireError::TxRefused(TxError::MempoolFull), 503),
            (
                WireError::TxRefused(TxError::NonceTooLarge { nonce: 1 << 60 }),
                400,
            ),
        ];
        for (error, status) in cases {
            assert_eq!(error.into_response().status().as_u16(), status);
        }
    }
}
