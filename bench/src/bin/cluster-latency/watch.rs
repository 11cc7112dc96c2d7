//! What the trial observes while the load runs: when each node committed each height (from
//! its `/events` stream), which transactions each block carried (from `/Block/{h}`), how
//! long `/status` takes to answer, and the nodes' memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use consensus_core::{Hash32, Transaction};
use serde::Deserialize;

/// Per node, the instant it was first seen at or past each height (index = height - 1).
/// Heights are monotonic: a stream that skipped events (a slow reader) still fills every
/// height up to the one it reports.
#[derive(Default)]
pub struct Commits {
    reached: Vec<Vec<Instant>>,
    /// Height -> the transactions' hashes of that block (fetched from node 0).
    pub blocks: HashMap<u64, Vec<Hash32>>,
}

impl Commits {
    pub fn new(nodes: usize) -> Self {
        Self {
            reached: vec![Vec::new(); nodes],
            blocks: HashMap::new(),
        }
    }

    fn reach(&mut self, node: usize, height: u64, at: Instant) {
        let seen = &mut self.reached[node];
        while (seen.len() as u64) < height {
            seen.push(at);
        }
    }

    /// The height every node has committed.
    pub fn common_height(&self) -> u64 {
        self.reached
            .iter()
            .map(|r| r.len() as u64)
            .min()
            .unwrap_or(0)
    }

    /// When the last node committed `height`.
    pub fn on_all(&self, height: u64) -> Option<Instant> {
        let i = usize::try_from(height.checked_sub(1)?).ok()?;
        self.reached
            .iter()
            .map(|r| r.get(i).copied())
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .max()
    }
}

/// One `/events` item: `{"event": {"event": "committed", "height": h, ...}, "node": i, "timeMs": t}`.
#[derive(Deserialize)]
struct StreamItem {
    event: CommittedEvent,
}

#[derive(Deserialize)]
struct CommittedEvent {
    event: String,
    height: Option<u64>,
}

/// Follows node `index`'s `/events` until the process ends, recording committed heights.
/// `client` must not limit a request's total time: a stream cut and reopened misses the
/// commits in between and records them late (a 10 s limit once put a 200 ms stall into the
/// latency figures every 10.2 s, and the low-load p99 with it).
pub async fn follow_events(
    client: reqwest::Client,
    url: String,
    index: usize,
    commits: Arc<Mutex<Commits>>,
) {
    loop {
        let Ok(mut resp) = client.get(format!("{url}/events")).send().await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let mut buffer = Vec::new();
        while let Ok(Some(chunk)) = resp.chunk().await {
            let at = Instant::now();
            buffer.extend_from_slice(&chunk);
            while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                let Some(data) = line.strip_prefix(b"data:") else {
                    continue;
                };
                let Ok(StreamItem { event }) = serde_json::from_slice(data.trim_ascii()) else {
                    continue;
                };
                if let ("committed", Some(height)) = (event.event.as_str(), event.height) {
                    if let Ok(mut c) = commits.lock() {
                        c.reach(index, height, at);
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Fetches every block node 0 has committed, once, to learn which transactions it carried.
pub async fn fetch_blocks(client: reqwest::Client, url: String, commits: Arc<Mutex<Commits>>) {
    let mut next = 1_u64;
    loop {
        let committed = commits
            .lock()
            .map(|c| c.reached[0].len() as u64)
            .unwrap_or(0);
        if next > committed {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let block: Option<serde_json::Value> = match client
            .get(format!("{url}/Block/{next}"))
            .timeout(Duration::from_secs(10))
            .send()
            .await
        {
            Ok(resp) if resp.status().is_success() => resp.json().await.ok(),
            _ => None,
        };
        let Some(block) = block else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let hashes: Vec<Hash32> = block["txs"]
            .as_array()
            .map(|txs| {
                txs.iter()
                    .filter_map(|tx| serde_json::from_value::<Transaction>(tx.clone()).ok())
                    .map(|tx| tx.hash())
                    .collect()
            })
            .unwrap_or_default();
        if let Ok(mut c) = commits.lock() {
            c.blocks.insert(next, hashes);
        }
        next += 1;
    }
}

/// `/status` answer times in ms (a failure or timeout counts as the timeout).
#[derive(Default)]
pub struct StatusTimes {
    pub ms: Vec<f64>,
    pub failures: u64,
}

pub const STATUS_TIMEOUT: Duration = Duration::from_secs(2);

/// Asks every node for `/status` every 250 ms, the way the cluster view does.
pub async fn probe_status(
    client: reqwest::Client,
    urls: Vec<String>,
    out: Arc<Mutex<StatusTimes>>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        for url in &urls {
            let started = Instant::now();
            let ok = client
                .get(format!("{url}/status"))
                .timeout(STATUS_TIMEOUT)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            if let Ok(mut s) = out.lock() {
                s.ms.push(ms);
                s.failures += u64::from(!ok);
            }
        }
    }
}

/// Memory samples: (seconds since start, largest RSS over nodes, largest anonymous RSS).
pub async fn sample_memory(
    pids: Vec<u32>,
    started: Instant,
    out: Arc<Mutex<Vec<(f64, f64, f64)>>>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let samples: Vec<(f64, f64)> = pids
            .iter()
            .filter_map(|p| tinyweb_node::cluster::process::rss_mib(*p))
            .collect();
        let rss = samples.iter().map(|s| s.0).fold(0.0, f64::max);
        let anon = samples.iter().map(|s| s.1).fold(0.0, f64::max);
        if let Ok(mut o) = out.lock() {
            o.push((started.elapsed().as_secs_f64(), rss, anon));
        }
    }
}
