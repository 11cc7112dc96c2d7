//! Clock skew between this node and a peer, found from either end: a peer refuses our
//! messages as stale (HTTP 409 `stale`), or a validator's genuine message arrives outside
//! the replay window. Nothing either side sends gets through until a clock is fixed, which
//! only an operator can do, so it becomes an alert (`/status`, the log, the
//! `clock_skew` security-event count) rather than a log line among thousands.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use consensus_core::{Hash32, PublicKey};
use tokio::sync::mpsc;

use super::{AlertKind, Control};
use crate::wire::{Envelope, WireBody};

/// Alerts at most this often: every message to and from the peer would raise one.
const ALERT_EVERY: Duration = Duration::from_secs(60);
/// A stale envelope's signature is checked (to tell a peer's clock from a stranger's
/// forgery in its name) at most this often: stale envelopes are otherwise refused unverified.
const VERIFY_EVERY: Duration = Duration::from_secs(1);

pub struct ClockSkewAlarm {
    control: mpsc::Sender<Control>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    alerted: Option<Instant>,
    verified: Option<Instant>,
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
        if !self.may_alert(Instant::now()) {
            return;
        }
        let peer = url.split('/').take(3).collect::<Vec<_>>().join("/");
        self.raise(format!(
            "clock: {peer} refuses our messages as stale ({said}); this node's clock and the \
             peer's disagree by more than the replay window: check both clocks (NTP)"
        ));
    }

    /// A validator's envelope (`key` is its registered key) came `ts - now_ms` off our
    /// clock, outside `window_ms`. Alerts only if the signature is the validator's: anyone
    /// can send a stale envelope in a validator's name.
    pub fn stale_from_validator<B: WireBody>(
        &self,
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
            let recently = |at: Option<Instant>, every| at.is_some_and(|at| now - at < every);
            if recently(state.alerted, ALERT_EVERY) || recently(state.verified, VERIFY_EVERY) {
                return;
            }
            state.verified = Some(now);
        }
        if envelope.sender != *key || envelope.verify_signature(chain_id).is_err() {
            return;
        }
        if !self.may_alert(now) {
            return;
        }
        let (direction, by) = if envelope.ts > now_ms {
            ("ahead of", envelope.ts - now_ms)
        } else {
            ("behind", now_ms - envelope.ts)
        };
        self.raise(format!(
            "clock: validator {}'s messages are {} s {direction} this node's clock (the \
             replay window is {} s), so both refuse each other's: check both clocks (NTP)",
            envelope.from,
            by / 1000,
            window_ms / 1000
        ));
    }

    /// Marks an alert as raised now, unless one was within [`ALERT_EVERY`].
    fn may_alert(&self, now: Instant) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        if state.alerted.is_some_and(|at| now - at < ALERT_EVERY) {
            return false;
        }
        state.alerted = Some(now);
        true
    }

    fn raise(&self, message: String) {
        let _ = self.control.try_send(Control::Alert {
            kind: AlertKind::ClockSkew,
            message,
        });
    }
}
