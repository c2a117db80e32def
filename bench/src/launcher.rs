//! Row (d): our real producer and consumer through our hub, over TLS (message) and HTTPS + MQTT
//! (method), run by the launcher exactly as `cargo run --release` does, one kind at a time.
//! Latencies come from the consumer's JSON summary; the hub's CPU and RSS from its /proc entry.

use crate::procstat;
use anyhow::{bail, Context, Result};
use edge::contract::{Endpoints, LOCAL_RUN_FREE_PORTS};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Message,
    Method,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Message => "message",
            Kind::Method => "method",
        }
    }
}

/// One consumer interval of one kind.
#[derive(Debug, Clone)]
pub struct Interval {
    pub count: u64,
    pub seconds: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
    pub timeouts: u64,
    pub errors: u64,
    /// Hub CPU from the moment it listens to the end of the interval (the modules' connections
    /// and the interval's exchanges).
    pub hub_cpu_ns: Option<u64>,
    pub hub_rss: Option<u64>,
}

/// The deployment manifest with only `kind`'s loop enabled in the consumer's env.
fn manifest_for(deployment: &Path, kind: Kind) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(deployment)
        .with_context(|| format!("reading {}", deployment.display()))?;
    let mut manifest: serde_json::Value = serde_json::from_str(&text)?;
    let env = manifest
        .pointer_mut("/modulesContent/$edgeAgent/properties.desired/modules/consumer/env")
        .and_then(|e| e.as_object_mut())
        .with_context(|| format!("{} has no consumer env", deployment.display()))?;
    for (var, on) in [
        ("EnableMethod", kind == Kind::Method),
        ("EnableMessage", kind == Kind::Message),
    ] {
        env.insert(
            var.into(),
            serde_json::json!({ "value": if on { "true" } else { "false" } }),
        );
    }
    Ok(manifest)
}

/// Runs the launcher for one interval of `seconds` and returns that interval.
pub async fn run(
    launcher: &Path,
    deployment: &Path,
    dir: &Path,
    kind: Kind,
    seconds: u64,
) -> Result<Interval> {
    let dir = dir.join(format!("launcher-{}", kind.label()));
    std::fs::create_dir_all(&dir)?;
    let manifest = dir.join("deployment.json");
    std::fs::write(&manifest, manifest_for(deployment, kind)?.to_string())?;
    let state = dir.join("state");
    let endpoints = Endpoints::path(&state.join("hub"));
    let log_path = dir.join("launcher.log");
    let log = std::fs::File::create(&log_path)?;
    let mut child = Command::new(launcher)
        .arg("--deployment")
        .arg(&manifest)
        .args(["--summary-format", "json"])
        .args(["--summary-interval", &format!("{seconds}s")])
        // Room for the start (identities exist after the first round) and the partial last line.
        .args(["--duration", &format!("{}s", seconds + 3)])
        .args(LOCAL_RUN_FREE_PORTS)
        .arg("--state-dir")
        .arg(&state)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", launcher.display()))?;
    let _ = std::fs::remove_file(&endpoints);
    let stdout = child.stdout.take().context("launcher stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    // The hub's pid appears in its endpoints.json once it listens; CPU counts from then on.
    let mut hub_pid: Option<u32> = None;
    let mut first: Option<serde_json::Value> = None;
    let mut at_start = procstat::ProcSample::default();
    let mut at_first = procstat::ProcSample::default();
    let mut poll = tokio::time::interval(Duration::from_millis(20));
    loop {
        tokio::select! {
            line = lines.next_line() => match line? {
                Some(line) => {
                    let line = line.trim();
                    if first.is_none() && line.starts_with('{') {
                        at_first = procstat::sample(hub_pid);
                        first = Some(serde_json::from_str(line).with_context(|| format!("consumer JSON: {line}"))?);
                    }
                }
                None => break,
            },
            _ = poll.tick(), if hub_pid.is_none() => {
                hub_pid = std::fs::read_to_string(&endpoints)
                    .ok()
                    .and_then(|t| Endpoints::parse(&t).ok())
                    .map(|e| e.pid);
                at_start = procstat::sample(hub_pid);
            }
        }
    }
    let status = child.wait().await?;
    let Some(first) = first else {
        bail!(
            "the launcher ({status}) printed no JSON summary; see {}",
            log_path.display()
        );
    };
    let k = first
        .pointer(&format!("/kinds/{}", kind.label()))
        .with_context(|| format!("no {} in {first}", kind.label()))?;
    let f = |key: &str| k.get(key).and_then(|v| v.as_f64());
    let n = |key: &str| k.get(key).and_then(|v| v.as_u64()).unwrap_or(0);
    Ok(Interval {
        count: n("count"),
        seconds: first
            .get("interval_seconds")
            .and_then(|v| v.as_f64())
            .unwrap_or(seconds as f64),
        p50_ms: f("total_p50_ms"),
        p99_ms: f("total_p99_ms"),
        p999_ms: f("total_p999_ms"),
        timeouts: n("timeouts"),
        errors: n("errors"),
        hub_cpu_ns: at_first
            .cpu_ns
            .zip(at_start.cpu_ns)
            .map(|(b, a)| b.saturating_sub(a)),
        hub_rss: at_first.rss,
    })
}

/// `method-vs-message` next to this binary, or where `--launcher` says.
pub fn default_launcher() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("method-vs-message")))
        .unwrap_or_else(|| PathBuf::from("target/release/method-vs-message"))
}
