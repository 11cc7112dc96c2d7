//! Fail points: named places in the code where a test build (cargo feature `failpoints`)
//! can make the process die on the spot, as kill -9 or a power cut would, on the N-th time
//! it passes: `TINYWEB_FAIL_POINT=sign_state.after_persist:3 tinyweb run ...`. The process
//! aborts (no destructors, no flush, no graceful stop), so whatever was not durable yet is
//! gone, exactly what the durability sweep (node/tests/durability.rs) needs to hit code
//! lines a random kill rarely lands on. Without the feature [`fail_point!`] is nothing.

/// Every fail point, in the order a vote and a block pass them.
pub const ALL: [&str; 7] = [
    SIGN_STATE_BEFORE_PERSIST,
    SIGN_STATE_AFTER_PERSIST,
    LOCKED_AFTER_PERSIST,
    MESSAGE_QUEUED,
    COMMIT_MID_TRANSACTION,
    COMMIT_AFTER_STORE,
    TRANSACTION_ADMITTED,
];

/// The replica signed a vote (or NewRound); its sign state is not on disk yet.
pub const SIGN_STATE_BEFORE_PERSIST: &str = "sign_state.before_persist";
/// The sign state is durable; the vote has not been handed to the transport.
pub const SIGN_STATE_AFTER_PERSIST: &str = "sign_state.after_persist";
/// The locked proposal is durable; nothing was sent yet.
pub const LOCKED_AFTER_PERSIST: &str = "locked.after_persist";
/// A signed message was queued for its peers: some may have it, some not.
pub const MESSAGE_QUEUED: &str = "message.queued";
/// Inside the LMDB write transaction of a committed block, before it commits.
pub const COMMIT_MID_TRANSACTION: &str = "commit.mid_transaction";
/// The committed block is durable; the node has not moved on to the next height.
pub const COMMIT_AFTER_STORE: &str = "commit.after_store";
/// A client's transaction was admitted (answered 200) but not yet in a block.
pub const TRANSACTION_ADMITTED: &str = "transaction.admitted";

/// Dies here if this is the armed point and its count is reached (feature `failpoints`).
#[macro_export]
macro_rules! fail_point {
    ($point:ident) => {
        #[cfg(feature = "failpoints")]
        $crate::failpoint::pass($crate::failpoint::$point);
    };
}

#[cfg(feature = "failpoints")]
pub fn pass(name: &str) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    /// The armed point and on which pass it fires, from `TINYWEB_FAIL_POINT=name[:n]`.
    static ARMED: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static PASSES: AtomicU64 = AtomicU64::new(0);
    let armed = ARMED.get_or_init(|| {
        let spec = std::env::var("TINYWEB_FAIL_POINT").ok()?;
        let (point, n) = match spec.split_once(':') {
            Some((point, n)) => (point.to_owned(), n.parse().ok()?),
            None => (spec, 1),
        };
        Some((point, n))
    });
    let Some((point, n)) = armed else { return };
    if point != name {
        return;
    }
    if PASSES.fetch_add(1, Ordering::SeqCst) + 1 == *n {
        eprintln!("fail point {name} reached (pass {n}): aborting");
        std::process::abort();
    }
}
