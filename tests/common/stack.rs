//! Control of the local stack's processes, for tests that break it on purpose: each such test is
//! its own test binary (cargo runs binaries one after another), so it never runs beside others.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tokio::time::Instant;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `stack/stack.sh up` (it returns once everything is healthy and the connector runs).
pub fn stack_up() -> bool {
    match Command::new("stack/stack.sh").arg("up").current_dir(repo()).status() {
        Ok(status) => status.success(),
        Err(e) => {
            eprintln!("could not run stack/stack.sh up: {e}");
            false
        }
    }
}

/// Restarts the stack when dropped while armed, so a failing test never leaves it broken.
pub struct RestartStackOnDrop {
    pub armed: bool,
}

impl Drop for RestartStackOnDrop {
    fn drop(&mut self) {
        if self.armed {
            eprintln!("restarting the stack (stack/stack.sh up)");
            if !stack_up() {
                eprintln!("stack/stack.sh up failed; run `make stack` by hand");
            }
        }
    }
}

/// A process of the stack, as its pid file in `.stack/run/` names it.
#[derive(Debug, Clone, Copy)]
pub enum Service {
    Kafka,
    Connect,
}

impl Service {
    fn pid_file(self) -> &'static str {
        match self {
            Service::Kafka => ".stack/run/kafka.pid",
            Service::Connect => ".stack/run/connect.pid",
        }
    }

    /// What its command line must contain, so a stale pid file never names someone else.
    fn marker(self) -> &'static str {
        match self {
            Service::Kafka => "kafka.Kafka",
            Service::Connect => "ConnectStandalone",
        }
    }

    /// The running process's pid; panics unless the stack is up.
    pub fn pid(self) -> u32 {
        let pid_file = repo().join(self.pid_file());
        let pid: u32 = std::fs::read_to_string(&pid_file)
            .unwrap_or_else(|e| panic!("{}: {e}; is the stack up (`make stack`)?", pid_file.display()))
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{} holds a pid: {e}", pid_file.display()));
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        assert!(
            cmdline.contains(self.marker()),
            "pid {pid} from {} is not the stack's {self:?} (cmdline {cmdline:?}); run `make stack`",
            pid_file.display()
        );
        pid
    }
}

/// True while `pid` runs (a zombie waiting for its parent no longer serves).
pub fn is_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

pub fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(
        status.success() || !Path::new(&format!("/proc/{pid}")).exists(),
        "kill {sig} {pid} failed"
    );
}

/// Sends `sig` and waits until the process is gone; SIGKILL after `patience`.
pub async fn stop(pid: u32, sig: &str, patience: Duration) {
    signal(pid, sig);
    let started = Instant::now();
    let mut killed = sig == "-KILL";
    while is_running(pid) {
        if !killed && started.elapsed() > patience {
            eprintln!("pid {pid} ignored {sig} for {patience:?}: SIGKILL");
            signal(pid, "-KILL");
            killed = true;
        }
        assert!(
            started.elapsed() < patience + Duration::from_secs(30),
            "pid {pid} does not stop"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
