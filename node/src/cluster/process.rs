//! Node processes: `tinyweb run --config <node dir>/config.toml` as children, by default
//! each in its own process group (a terminal's Ctrl-C reaches only the supervisor, which
//! then stops its children on purpose), stdout and stderr appended to `<node dir>/node.log`.
//!
//! A [`Launcher`] may put a wrapper in front of the command: `ip netns exec NS` starts the
//! node inside a network namespace. `ip netns exec` replaces itself with the command (it
//! forks only in batch mode), so the child's pid is the node's and signals reach it.

use std::ffi::OsString;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::process::Signal;

use super::{ClusterError, ClusterNode};

/// How to start a node: the `tinyweb` binary and what goes around and after `run --config`.
#[derive(Clone, Debug)]
pub struct Launcher {
    pub exe: PathBuf,
    /// The visualizer's built page, served by every node at /ui/.
    pub ui_dir: Option<PathBuf>,
    /// Extra environment (e.g. `RUST_LOG`).
    pub env: Vec<(OsString, OsString)>,
    /// Each node in a process group of its own (true: a terminal's Ctrl-C reaches only the
    /// supervisor, which stops the nodes itself). False for test harnesses, whose nodes must
    /// get the Ctrl-C that stops `cargo test` rather than outlive it.
    pub own_process_group: bool,
}

impl Launcher {
    pub fn new(exe: impl Into<PathBuf>) -> Self {
        Self {
            exe: exe.into(),
            ui_dir: None,
            env: Vec::new(),
            own_process_group: true,
        }
    }

    /// Starts `node`: `wrapper... tinyweb run --config <dir>/config.toml [--ui-dir D] extra...`.
    /// Sets `node.pid`.
    pub fn spawn(
        &self,
        node: &mut ClusterNode,
        wrapper: &[OsString],
        extra: &[OsString],
    ) -> Result<NodeProcess, ClusterError> {
        let log_path = node.log_path();
        let io_err = |source| ClusterError::Io {
            what: "opening",
            path: log_path.clone(),
            source,
        };
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io_err)?;
        // Restarts append to the same log; a marker shows where each run begins.
        writeln!(
            log,
            "=== starting node {} at unix ms {} ===",
            node.id,
            crate::node::now_ms()
        )
        .map_err(io_err)?;
        let stderr = log.try_clone().map_err(io_err)?;
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(&self.exe);
                c
            }
            None => Command::new(&self.exe),
        };
        command.arg("run").arg("--config").arg(node.config_path());
        if let Some(dir) = &self.ui_dir {
            command.arg("--ui-dir").arg(dir);
        }
        command.args(extra);
        if self.own_process_group {
            use std::os::unix::process::CommandExt;
            command.process_group(0);
        }
        let child = command
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            // The log is a file: colour codes would only garble it.
            .env("NO_COLOR", "1")
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .map_err(|source| ClusterError::Spawn {
                id: node.id,
                exe: self.exe.clone(),
                source,
            })?;
        node.pid = child.id();
        Ok(NodeProcess {
            node: node.clone(),
            child,
            exited: None,
        })
    }
}

/// One started node. Dropping it does not stop the process: the supervisor decides (the
/// cluster stops its children on Ctrl-C; a test kills them; data and processes a user
/// restarted by hand are never touched).
#[derive(Debug)]
pub struct NodeProcess {
    pub node: ClusterNode,
    child: Child,
    exited: Option<ExitStatus>,
}

impl NodeProcess {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How the process ended, once it has (reaped, so it is no zombie).
    pub fn poll_exit(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exited = Some(status);
            }
        }
        self.exited
    }

    pub fn is_running(&mut self) -> bool {
        self.poll_exit().is_none()
    }

    /// Sends `signal` straight to the node (no `kill` helper process: a helper would sit in
    /// our process group, where a second Ctrl-C kills it before it delivers). False when the
    /// process has already exited or the signal could not be sent.
    pub fn signal(&mut self, signal: Signal) -> bool {
        if !self.is_running() {
            return false;
        }
        let Some(pid) = i32::try_from(self.child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        else {
            return false;
        };
        rustix::process::kill_process(pid, signal).is_ok()
    }

    /// SIGKILL (`kill -9`: no shutdown, whatever was not durable is lost) and reap.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        if self.is_running() {
            let _ = self.child.kill();
            if let Ok(status) = self.child.wait() {
                self.exited = Some(status);
            }
        }
        self.exited
    }

    /// The process state letter of `/proc/<pid>/stat` ("R", "S", "T" when stopped, ...).
    pub fn proc_state(&self) -> String {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // "pid (comm) S ...": the state follows the last ')'.
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .unwrap_or("?")
            .to_owned()
    }

    /// Whether the process is stopped (SIGSTOP, not yet SIGCONT): a laptop gone to sleep,
    /// its listening socket still open.
    pub fn is_frozen(&self) -> bool {
        self.proc_state() == "T"
    }

    /// SIGSTOP, then waits (up to `within`) until the kernel shows it stopped.
    pub fn freeze(&mut self, within: Duration) -> bool {
        self.signal(Signal::STOP) && wait_until(within, || self.is_frozen())
    }

    /// SIGCONT, then waits (up to `within`) until it runs again.
    pub fn thaw(&mut self, within: Duration) -> bool {
        self.signal(Signal::CONT) && wait_until(within, || !self.is_frozen())
    }
}

fn wait_until(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// SIGTERM (the node's graceful shutdown) to every running process, up to `grace` for them
/// to exit, then SIGKILL. Returns the ids that had to be killed. A frozen process is thawed
/// first: a stopped process cannot act on SIGTERM.
pub async fn stop_all(procs: &mut [NodeProcess], grace: Duration) -> Vec<u16> {
    for p in procs.iter_mut() {
        if p.is_frozen() {
            p.signal(Signal::CONT);
        }
        if !p.signal(Signal::TERM) && p.is_running() {
            let _ = p.child.kill();
        }
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if procs.iter_mut().all(|p| !p.is_running()) {
            return Vec::new();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut killed = Vec::new();
    for p in procs.iter_mut().filter(|p| p.exited.is_none()) {
        if p.is_running() {
            killed.push(p.node.id);
            p.kill();
        }
    }
    killed
}

/// The last `lines` lines of a log, read from its end (a long-running node's log is large).
pub fn log_tail(path: &Path, lines: usize) -> String {
    const TAIL_BYTES: u64 = 64 * 1024;
    let read = || -> std::io::Result<String> {
        let mut f = std::fs::File::open(path)?;
        let len = f.metadata()?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(TAIL_BYTES)))?;
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    match read() {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// "exit 1", "killed", "signal 15": how a node's process ended, in a word or two.
pub fn exit_reason(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(9)) => "killed".to_owned(),
        (None, Some(sig)) => format!("signal {sig}"),
        (None, None) => "exited".to_owned(),
    }
}

/// A process's resident memory in MiB: (all, anonymous). Anonymous memory is the heap;
/// the rest is mostly LMDB's memory-mapped file, which grows with the chain by design.
pub fn rss_mib(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    };
    Some((field("VmRSS:")?, field("RssAnon:")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_tail_is_the_last_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.log");
        let text: String = (1..=100).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, text).expect("write");
        assert_eq!(log_tail(&path, 2), "line 99\nline 100");
        assert!(log_tail(&dir.path().join("missing"), 2).starts_with("(cannot read"));
    }

    /// A stand-in node: `sh -c SCRIPT` (the launcher's `/bin/sh run --config ...` become
    /// the script's ignored `$0..`).
    fn shell(id: u16, dir: &Path, script: &str) -> NodeProcess {
        let mut node = ClusterNode {
            id,
            url: "http://127.0.0.1:1".to_owned(),
            pid: 0,
            dir: dir.to_owned(),
        };
        let wrapper = ["/bin/sh", "-c", script].map(OsString::from);
        Launcher::new("/bin/sh")
            .spawn(&mut node, &wrapper, &[])
            .expect("spawn")
    }

    #[tokio::test]
    async fn a_frozen_child_is_thawed_and_stopped_and_one_ignoring_sigterm_is_killed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut frozen = shell(0, dir.path(), "exec sleep 30");
        assert!(frozen.pid() > 0);
        assert!(
            frozen.freeze(Duration::from_secs(5)),
            "state {}",
            frozen.proc_state()
        );
        let ready = dir.path().join("trap-set");
        let mut stubborn = shell(
            1,
            dir.path(),
            &format!("trap '' TERM; touch {}; exec sleep 30", ready.display()),
        );
        // SIGTERM must come after the shell ignores it, or it would simply die of it.
        assert!(wait_until(Duration::from_secs(5), || ready.exists()));
        let mut procs = vec![frozen, stubborn];
        let killed = stop_all(&mut procs, Duration::from_millis(600)).await;
        assert_eq!(killed, vec![1], "only the one ignoring SIGTERM is killed");
        stubborn = procs.pop().expect("stubborn");
        frozen = procs.pop().expect("frozen");
        assert_eq!(exit_reason(stubborn.poll_exit().expect("exited")), "killed");
        assert_eq!(
            exit_reason(frozen.poll_exit().expect("exited")),
            "signal 15"
        );
        assert!(
            !frozen.signal(Signal::TERM),
            "no signal to a process that has exited"
        );
    }
}
