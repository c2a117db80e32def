//! The run's child processes: this executable started as `hub`, `producer` or `consumer`, their
//! output prefixed, their start awaited through the files they write, and their stop.

use anyhow::{bail, Context, Result};
use edge::contract::vars;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A child process and its name, for logs.
pub struct Proc {
    pub name: &'static str,
    pub child: Child,
}

/// Starts this executable with `args` and `env`, without the inherited `IOTEDGE_*` variables.
pub fn spawn(name: &'static str, args: &[String], env: &BTreeMap<String, String>) -> Result<Proc> {
    let exe = std::env::current_exe().context("locating this executable")?;
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // The modules must use the local-development identity, not a stray IoT Edge environment.
    for (k, _) in std::env::vars() {
        if k.starts_with(vars::IOTEDGE_PREFIX) {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env);
    if name == "consumer" {
        cmd.stdout(Stdio::inherit());
    } else {
        cmd.stdout(Stdio::piped());
    }
    let mut child = cmd.spawn().with_context(|| format!("starting {name}"))?;
    // Prefix the children's logs so three processes stay readable on one terminal.
    if let Some(err) = child.stderr.take() {
        tokio::spawn(prefix_lines(name, err, std::io::stderr));
    }
    if let Some(out) = child.stdout.take() {
        tokio::spawn(prefix_lines(name, out, std::io::stdout));
    }
    Ok(Proc { name, child })
}

/// Copies `from`'s lines to `to`, each prefixed with `[name]`.
async fn prefix_lines<W: std::io::Write>(
    name: &'static str,
    from: impl tokio::io::AsyncRead + Unpin,
    to: fn() -> W,
) {
    let mut lines = BufReader::new(from).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        // One write per line, so lines from several processes never interleave mid-line.
        let _ = to().write_all(format!("[{name}] {line}\n").as_bytes());
    }
}

/// The text of `path` once `proc` has written it; an error if `proc` exits or `within` passes first.
pub async fn wait_for_file(path: &Path, proc: &mut Proc, within: Duration) -> Result<String> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if !text.is_empty() {
                return Ok(text);
            }
        }
        if let Ok(Some(status)) = proc.child.try_wait() {
            bail!(
                "{} exited ({status}) while starting; its log is above",
                proc.name
            );
        }
        if Instant::now() > deadline {
            bail!("{} did not start within {within:?}", proc.name);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SIGTERM, then SIGKILL if it has not exited within `grace`.
pub async fn stop(proc: &mut Proc, grace: Duration) -> bool {
    if let Some(pid) = proc.child.id() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    match tokio::time::timeout(grace, proc.child.wait()).await {
        Ok(Ok(status)) => status.success(),
        _ => {
            eprintln!("{} did not stop within {grace:?}; killing it", proc.name);
            let _ = proc.child.kill().await;
            false
        }
    }
}
