//! Clock skew between this node and a peer, found from either end: a peer refuses our
//! messages as stale (HTTP 409 `stale`), or a validator's genuine message arrives outside
//! the replay window. Nothing either side sends gets through until a clock is fixed, which
//! only an operator can do, so it becomes an alert (`/status`, the log, the
//! `clock_skew` security-event count) rather than a log line among thousands.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use consensus_core::{Hash32, NodeId, PublicKey};
use tokio::sync::mpsc;

use super::{AlertKind, Control};
use crate::wire::{Envelope, WireBody};

/// Alerts at most this often from each side: every message to and from the peer would
/// raise one.
const ALERT_EVERY: Duration = Duration::from_secs(60);
/// A stale envelope's signature is checked (to tell a validator's clock from a stranger's
/// forgery in its name) at most this often per validator: stale envelopes are otherwise
/// refused unverified, and a forger filling one validator's slot cannot hide another's.
const VERIFY_EVERY: Duration = Duration::from_secs(1);
/// How much of a peer's refusal message goes into the alert.
const SAID_MAX_CHARS: usize = 200;

pub struct ClockSkewAlarm {
    control: mpsc::Sender<Control>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The last alert from our messages being refused, and from theirs arriving stale: a
    /// Byzantine peer answering "stale" must not mute the other side's alert.
    refused_alerted: Option<Instant>,
    stale_alerted: Option<Instant>,
    /// Per validator (at most the validator set): when its stale envelope was last verified.
    verified: HashMap<NodeId, Instant>,
}

fn recently(at: Option<Instant>, now: Instant, every: Duration) -> bool {
    at.is_some_and(|at| now.duration_since(at) < every)
}

impl ClockSkewAlarm {
    pub fn new(control: mpsc::Sender<Control>) -> Self {
        Self {
            control,
            state: Mutex::new(State::default()),
        }
    }

    /// The peer at `url` answered one of our messages with 409 `stale`; `said` is its
    /// error message (our timestamp, its clock, its window).
    pub fn refused_by_peer(&self, url: &str, said: &str) {
        let now = Instant::now();
        {
            let Ok(mut state) = self.state.lock() else {
                return;
            };
            if recently(state.refused_alerted, now, ALERT_EVERY) {
                return;
            }
            state.refused_alerted = Some(now);
        }
        let peer = url.split('/').take(3).collect::<Vec<_>>().join("/");
        let said: String = said.chars().take(SAID_MAX_CHARS).collect();
        self.raise(format!(
            "clock: {peer} refuses our messages as stale ({said}); this node's clock and the \
             peer's disagree by more than the replay window: check both clocks (NTP)"
        ));
    }

    /// Validator `id`'s envelope (`key` is its registered key) came `ts - now_ms` off our
    /// clock, outside `window_ms`. Alerts only if the signature is the validator's: anyone
    /// can send a stale envelope in a validator's name.
    pub fn stale_from_validator<B: WireBody>(
        &self,
        id: NodeId,
        envelope: &Envelope<B>,
        chain_id: &Hash32,
        key: &PublicKey,
        now_ms: u64,
        window_ms: u64,
    ) {
        let now = Instant::now();
        {
            let Ok(mut state) = self.state.lock() else {
                return;
            };
            if recently(state.stale_alerted, now, ALERT_EVERY)
                || recently(state.verified.get(&id).copied(), now, VERIFY_EVERY)
            {
                return;
            }
            state.verified.insert(id, now);
        }
        if envelope.sender != *key || envelope.verify_signature(chain_id).is_err() {
            return;
        }
        {
            let Ok(mut state) = self.state.lock() else {
                return;
            };
            if recently(state.stale_alerted, now, ALERT_EVERY) {
                return;
            }
            state.stale_alerted = Some(now);
        }
        let (direction, by) = if envelope.ts > now_ms {
            ("ahead of", envelope.ts - now_ms)
        } else {
            ("behind", now_ms - envelope.ts)
        };
        self.raise(format!(
            "clock: validator {}'s messages are {} s {direction} this node's clock (the \
             replay window is {} s), so both refuse each other's: check both clocks (NTP)",
            id,
            by / 1000,
            window_ms / 1000
        ));
    }

    fn raise(&self, message: String) {
        let _ = self.control.try_send(Control::Alert {
            kind: AlertKind::ClockSkew,
            message,
        });
    }
}
