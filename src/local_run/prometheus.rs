//! `--with-prometheus`: a Prometheus scraping this run's three `/metrics` endpoints.

use super::child::Proc;
use super::{MetricsAddrs, RunArgs};
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::Stdio;
use tokio::process::Command;

/// Starts Prometheus with prometheus.yml's scrape jobs pointed at this run's ports.
pub fn start_prometheus(args: &RunArgs, metrics: &MetricsAddrs) -> Result<Option<Proc>> {
    let Some(binary) = find_in_path("prometheus") else {
        eprintln!("--with-prometheus: no `prometheus` in PATH (Debian: apt install prometheus); running without it");
        return Ok(None);
    };
    let dir = args.state_dir.join("prometheus");
    let config_path = write_config(&dir, metrics)?;
    let mut cmd = Command::new(binary);
    cmd.arg(format!("--config.file={}", config_path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!(
            "--web.listen-address=127.0.0.1:{}",
            args.prometheus_port
        ))
        .arg("--enable-feature=exemplar-storage")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let child = cmd.spawn().context("starting prometheus")?;
    eprintln!(
        "prometheus: http://127.0.0.1:{} (config {})",
        args.prometheus_port,
        config_path.display()
    );
    Ok(Some(Proc {
        name: "prometheus",
        child,
    }))
}

/// The first `name` file in a directory of `PATH`.
fn find_in_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// Writes prometheus.yml, its targets replaced by `metrics`, and the rules it names into `dir`.
fn write_config(dir: &std::path::Path, metrics: &MetricsAddrs) -> Result<PathBuf> {
    let template = std::fs::read_to_string("prometheus.yml")
        .context("reading prometheus.yml (run from the repository root)")?;
    let config = template
        .replace("hub:9600", &metrics.hub)
        .replace("producer:9601", &metrics.producer)
        .replace("consumer:9602", &metrics.consumer);
    std::fs::create_dir_all(dir)?;
    let config_path = dir.join("prometheus.yml");
    std::fs::write(&config_path, config)?;
    // `rule_files` resolves next to the config: the alert and recording rules go there too.
    std::fs::copy("prometheus-rules.yml", dir.join("prometheus-rules.yml"))
        .context("copying prometheus-rules.yml (run from the repository root)")?;
    Ok(config_path)
}
