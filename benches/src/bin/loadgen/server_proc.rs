//! A server under test as a child process: started with `--port 0`, its
//! address read from the `listening on http://ADDR` line it prints first,
//! pinned to a core when `taskset` is there, killed when dropped.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

use crate::client::{Error, Target};

/// A running server.
pub(crate) struct Running {
    pub(crate) child: Child,
    /// What it printed: `http://ADDR`.
    pub(crate) url: String,
    pub(crate) target: Target,
    pub(crate) pid: Option<u32>,
}

/// Starts `program` (`--port 0` must be among its arguments or implied),
/// pinned to `core` when given. Its standard error is inherited.
pub(crate) async fn spawn(program: &[String], core: Option<usize>) -> Result<Running, Error> {
    let name = program.first().ok_or("no server command")?;
    let mut cmd = match core {
        Some(core) if has_taskset() => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(core.to_string()).args(program);
            c
        }
        _ => {
            let mut c = Command::new(name);
            c.args(&program[1..]);
            c
        }
    };
    let mut child = cmd.stdout(Stdio::piped()).stdin(Stdio::null()).kill_on_drop(true).spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .map_err(|_| format!("{name} did not start within 30 s"))??
        .ok_or_else(|| format!("{name} exited before listening"))?;
    // `listening on URL`, after the program's name or not.
    let url = line
        .split_once("listening on ")
        .map(|(_, url)| url.trim())
        .ok_or_else(|| format!("unexpected first line {line:?}"))?;
    // The rest of its output (an admin address, ...) is not read: drain it
    // so that the server never blocks on a full pipe.
    tokio::task::spawn_local(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let pid = child.id();
    Ok(Running { child, url: url.to_owned(), target: Target::parse(url)?, pid })
}

pub(crate) fn has_taskset() -> bool {
    std::process::Command::new("taskset")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Sends `signal` (`INT`, `TERM`, ...) to `child`; false if it is gone.
pub(crate) async fn signal(child: &Child, signal: &str) -> bool {
    match child.id() {
        Some(pid) => Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .await
            .is_ok_and(|s| s.success()),
        None => false,
    }
}

/// Stops a server with SIGINT (a clustered Tidewire server prints its
/// cluster counters on its way out), or kills it after 2 s.
pub(crate) async fn stop(child: &mut Child) {
    if signal(child, "INT").await && tokio::time::timeout(Duration::from_secs(2), child.wait()).await.is_ok() {
        return;
    }
    let _ = child.kill().await;
}
