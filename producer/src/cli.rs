//! The producer's command line and environment (`Args`), and the process around [`crate::run`]:
//! tracing, identity and the stop signal.

use crate::config::Config;
use anyhow::Result;
use clap::{Parser, Subcommand};
use edge::ModuleIdentity;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// IoT Edge module that answers GetTimeMethod and GetTimeMessage with the current UTC time.
///
/// Identity comes from the IoT Edge runtime (IOTEDGE_* variables and the workload API) or, for
/// local development, from EdgeHubConnectionString and EdgeModuleCACertificateFile.
#[derive(Debug, Clone, Parser)]
#[command(name = "producer", version, about, long_about = None)]
pub struct Args {
    /// Where /metrics is served.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:9600")]
    pub metrics_addr: SocketAddr,
    /// Write the bound metrics address to this file (for launchers that ask for port 0).
    #[arg(long, env = "METRICS_ADDR_FILE", hide = true)]
    pub metrics_addr_file: Option<std::path::PathBuf>,
    /// How often to print the count line.
    #[arg(long, env = "SUMMARY_INTERVAL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub summary_interval: Duration,
    /// Trace sampling ratio (parent-based); default: OTEL_TRACES_SAMPLER(_ARG) or always on.
    #[arg(long, env = "TRACE_SAMPLE_RATIO")]
    pub trace_sample_ratio: Option<f64>,
    /// Watchdog: when the MQTT session (connected or retrying), the request handler or the
    /// metrics server makes no progress for this long, log what stopped and exit with status 3,
    /// so that the runtime (restartPolicy: always) restarts the module. 0 turns it off.
    #[arg(long, env = "WATCHDOG_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub watchdog_timeout: Duration,
    /// Bytes of padding in every reply (both kinds), in a `padding` field beside `UtcTime` that
    /// the seed's consumer ignores: 0, 512, 16KiB, 120KiB… At most 127 KiB (a direct method's
    /// 128 KiB response limit, less 1 KiB for the JSON framing and trace context).
    #[arg(long, env = "REPLY_BYTES", default_value = "0", value_parser = reply_size)]
    pub reply_bytes: usize,
    /// TEST ONLY (tests/watchdog.rs): after this long, the request handler blocks for good on the
    /// next request, to show the watchdog acting. Never set it in a deployment.
    #[arg(long, env = "TEST_FREEZE_AFTER", hide = true, value_parser = humantime::parse_duration)]
    pub test_freeze_after: Option<Duration>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// `REPLY_BYTES`: a size with a binary unit, within a method response's limit.
fn reply_size(text: &str) -> Result<usize, String> {
    let size = edge::payload::parse_size(text).map_err(|e| e.to_string())?;
    edge::payload::check_method("REPLY_BYTES", size).map_err(|e| e.to_string())?;
    Ok(size)
}

/// Besides running the module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Ask this module's GET /healthz (127.0.0.1, METRICS_ADDR's port) and exit 0 if it answers
    /// 200, 1 otherwise with the reason on stderr (the images' HEALTHCHECK). Starts nothing.
    Healthcheck,
}

impl Args {
    /// The settings [`crate::run`] needs (every value was checked as it was parsed).
    pub fn config(&self) -> Config {
        Config {
            metrics_addr: self.metrics_addr,
            metrics_addr_file: self.metrics_addr_file.clone(),
            summary_interval: self.summary_interval,
            watchdog_timeout: self.watchdog_timeout,
            reply_bytes: self.reply_bytes,
            test_freeze_after: self.test_freeze_after,
        }
    }
}

/// The producer process: runs until SIGTERM/Ctrl-C; `healthcheck` asks a running one's /healthz
/// instead.
pub async fn main(args: Args) -> Result<()> {
    if let Some(Command::Healthcheck) = args.command {
        return telemetry::healthcheck(args.metrics_addr).map_err(anyhow::Error::msg);
    }
    let tracing_guard = telemetry::init_module_tracing("producer", args.trace_sample_ratio)?;
    let identity = Arc::new(ModuleIdentity::from_env()?);
    crate::run(args.config(), identity, edge::signal::shutdown()).await?;
    // A clean stop flushes the pending spans; an error drops the guard unflushed, as it always has.
    tracing_guard.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthcheck_needs_no_other_argument_and_the_freeze_switch_is_hidden() {
        let args = Args::try_parse_from(["producer", "healthcheck"]).unwrap();
        assert_eq!(args.command, Some(Command::Healthcheck));
        assert_eq!(args.watchdog_timeout, Duration::from_secs(60));
        let off = Args::try_parse_from(["producer", "--watchdog-timeout", "0"]).unwrap();
        assert!(off.watchdog_timeout.is_zero());
        let help = <Args as clap::CommandFactory>::command()
            .render_long_help()
            .to_string();
        assert!(
            help.contains("WATCHDOG_TIMEOUT") && help.contains("healthcheck"),
            "{help}"
        );
        assert!(!help.contains("freeze"), "{help}");
    }

    #[test]
    fn reply_sizes_are_checked_as_they_are_parsed() {
        let args = Args::try_parse_from(["producer", "--reply-bytes", "16KiB"]).unwrap();
        assert_eq!(args.config().reply_bytes, 16 * 1024);
        for (bad, why) in [("129KiB", "128 KiB payload limit"), ("1KB", "unknown unit")] {
            let e = Args::try_parse_from(["producer", "--reply-bytes", bad])
                .unwrap_err()
                .to_string();
            assert!(e.contains(why), "{e}");
        }
    }
}
