//! Steady load and its latency: the cluster's load generator (`tinyweb_node::cluster::load`)
//! submits round-robin over the nodes marked up; each accepted transaction is then watched
//! until every node marked up has it committed. Latency is submit to "committed on all".

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tinyweb_node::cluster::load::{self, LoadPlan, LoadStats};
use tokio::task::JoinHandle;

use super::bed::Bed;

/// A transaction not committed everywhere within this long counts as stuck.
const WATCH_DEADLINE: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
struct Seen {
    /// Every accepted transaction's hash.
    accepted: Vec<String>,
    /// Submit-to-committed-on-all, ms, one per accepted transaction; one that never got
    /// there within `WATCH_DEADLINE` counts as the deadline (the tail is never left out).
    latencies_ms: Vec<u64>,
}

pub struct Load {
    up: Arc<Vec<AtomicBool>>,
    seen: Arc<Mutex<Seen>>,
    stats: Arc<LoadStats>,
    generator: JoinHandle<()>,
    watcher: Option<JoinHandle<()>>,
}

impl Load {
    /// Starts `rate` transactions per second to the nodes in `targets`.
    pub fn start(bed: &Bed, rate: f64, targets: &[usize]) -> Self {
        let urls = bed.urls();
        let up: Arc<Vec<AtomicBool>> = Arc::new(
            (0..urls.len())
                .map(|i| AtomicBool::new(targets.contains(&i)))
                .collect(),
        );
        let stats = Arc::new(LoadStats::default());
        let (accepted_tx, mut accepted_rx) = tokio::sync::mpsc::unbounded_channel();
        let generator = tokio::spawn(load::generate(
            LoadPlan {
                rate,
                chain_id: bed.chain_id,
                key: bed.client_key.clone(),
                urls: urls.clone(),
                up: up.clone(),
                accepted: Some(accepted_tx),
            },
            stats.clone(),
        ));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (client, watch_up, watch_seen) = (bed.client.clone(), up.clone(), seen.clone());
        // Ends when the generator is gone (the channel closes) and every transaction it
        // handed over is settled; dropping it (an abort) aborts them all.
        let watcher = tokio::spawn(async move {
            let mut watches = tokio::task::JoinSet::new();
            while let Some((hash, submitted)) = accepted_rx.recv().await {
                if let Ok(mut s) = watch_seen.lock() {
                    s.accepted.push(hash.clone());
                }
                let (client, urls, up, seen) = (
                    client.clone(),
                    urls.clone(),
                    watch_up.clone(),
                    watch_seen.clone(),
                );
                watches.spawn(async move {
                    let ms = watch(&client, &urls, &up, &hash, submitted).await;
                    if let Ok(mut s) = seen.lock() {
                        s.latencies_ms.push(ms);
                    }
                });
            }
            while watches.join_next().await.is_some() {}
        });
        Self {
            up,
            seen,
            stats,
            generator,
            watcher: Some(watcher),
        }
    }

    /// From now on, submit to and wait for exactly `targets`.
    pub fn target(&self, targets: &[usize]) {
        for (i, flag) in self.up.iter().enumerate() {
            flag.store(targets.contains(&i), Ordering::Relaxed);
        }
    }

    /// What the generator saw: accepted, rejected (503: mempool full), unreachable.
    pub fn summary(&self) -> (u64, u64, u64) {
        (
            self.stats.accepted.load(Ordering::Relaxed),
            self.stats.rejected.load(Ordering::Relaxed),
            self.stats.unreachable.load(Ordering::Relaxed),
        )
    }

    /// Stops submitting, waits until every accepted transaction is committed on every node
    /// marked up (or its watch ran out), and returns (accepted hashes, latencies).
    pub async fn stop(mut self) -> (Vec<String>, Vec<u64>) {
        self.generator.abort();
        if let Some(watcher) = self.watcher.take() {
            let _ = watcher.await;
        }
        let s = self
            .seen
            .lock()
            .map(|s| (s.accepted.clone(), s.latencies_ms.clone()));
        s.unwrap_or_default()
    }
}

impl Drop for Load {
    /// A scenario that ends early (an error, Ctrl-C) must not leave load running through the
    /// post-mortem and the shutdown.
    fn drop(&mut self) {
        self.generator.abort();
        if let Some(watcher) = &self.watcher {
            watcher.abort();
        }
    }
}

/// How long to wait between looks at a transaction: often at first (latency resolution),
/// then less (a stalled cluster must not be flooded with questions by its own observer).
fn poll_after(waited: Duration) -> Duration {
    match waited.as_millis() {
        0..=999 => Duration::from_millis(25),
        1_000..=4_999 => Duration::from_millis(100),
        _ => Duration::from_millis(250),
    }
}

/// Polls until `hash` is committed on every node marked up; the latency in ms, or
/// `WATCH_DEADLINE` when it is not by then.
async fn watch(
    client: &reqwest::Client,
    urls: &[String],
    up: &[AtomicBool],
    hash: &str,
    submitted: Instant,
) -> u64 {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let mut done = vec![false; urls.len()];
    while submitted.elapsed() < WATCH_DEADLINE {
        for (i, url) in urls.iter().enumerate() {
            if done[i] || !up[i].load(Ordering::Relaxed) {
                continue;
            }
            let committed = match client.get(format!("{url}/Transaction/{hash}")).send().await {
                Ok(r) => r
                    .json::<serde_json::Value>()
                    .await
                    .is_ok_and(|v| v["status"] == "committed"),
                Err(_) => false,
            };
            done[i] = committed;
        }
        let all = done
            .iter()
            .zip(up)
            .all(|(d, u)| *d || !u.load(Ordering::Relaxed));
        if all {
            return ms(submitted.elapsed());
        }
        tokio::time::sleep(poll_after(submitted.elapsed())).await;
    }
    ms(WATCH_DEADLINE)
}

/// Waits (up to `within`) until every hash is committed on every node in `ids`; the ones
/// that are not, as "hash on node i" (at most a few, for the detail), with how many were.
pub async fn all_committed(
    bed: &Bed,
    hashes: &[String],
    ids: &[usize],
    within: Duration,
) -> Result<usize, (usize, String)> {
    let deadline = Instant::now() + within;
    let mut missing: Vec<(usize, String)> = ids
        .iter()
        .flat_map(|&i| hashes.iter().map(move |h| (i, h.clone())))
        .collect();
    loop {
        let mut still = Vec::new();
        for (i, h) in missing {
            if !bed.committed_on(i, &h).await {
                still.push((i, h));
            }
        }
        missing = still;
        if missing.is_empty() {
            return Ok(hashes.len());
        }
        if Instant::now() >= deadline {
            let shown: Vec<String> = missing
                .iter()
                .take(3)
                .map(|(i, h)| format!("{} on node {i}", &h[..h.len().min(16)]))
                .collect();
            let unsettled: std::collections::HashSet<&String> =
                missing.iter().map(|(_, h)| h).collect();
            return Err((
                hashes.len() - unsettled.len(),
                format!(
                    "{} (transaction, node) pairs not committed after {} s, e.g. {}",
                    missing.len(),
                    within.as_secs(),
                    shown.join(", ")
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
