//! The module's command line: its flags and environment variables (clap), checked into a
//! [`Config`] by [`Args::config`], and [`main`]: the process around one run (the healthcheck,
//! tracing, the module identity, the stop signal).

mod workload_args;

use crate::config::{Config, Freeze};
use crate::kind::Kind;
use crate::schedule::Schedule;
use crate::sweep;
use anyhow::{bail, Result};
use clap::{Parser, Subcommand, ValueEnum};
use edge::ModuleIdentity;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Above this the schedule's period would drop below 10 µs: not a canary any more.
pub const MAX_RATE: f64 = 100_000.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SummaryFormat {
    /// The seed's plain-text table.
    Table,
    /// One JSON object per interval.
    Json,
    /// The table, then the JSON line.
    Both,
}

fn seed_flag(s: &str) -> Result<bool, String> {
    Ok(edge::seed::parse_flag(Some(s)))
}

fn kind(s: &str) -> Result<Kind, String> {
    Kind::ALL
        .into_iter()
        .find(|k| k.label() == s)
        .ok_or_else(|| format!("{s:?} is not method or message"))
}

/// IoT Edge module that measures a direct method against a message round trip to the producer.
///
/// Identity comes from the IoT Edge runtime (IOTEDGE_* variables and the workload API) or, for
/// local development, from EdgeHubConnectionString and EdgeModuleCACertificateFile.
#[derive(Debug, Clone, Parser)]
#[command(name = "consumer", version, about, long_about = None)]
pub struct Args {
    /// Run the direct-method loop (y|yes|true|on|1, any case, is true; anything else false).
    #[arg(long, env = "EnableMethod", default_value = "true", value_parser = seed_flag, action = clap::ArgAction::Set)]
    pub enable_method: bool,
    /// Run the message loop (same parsing).
    #[arg(long, env = "EnableMessage", default_value = "true", value_parser = seed_flag, action = clap::ArgAction::Set)]
    pub enable_message: bool,
    /// How often to print the table (the seed: every minute).
    #[arg(long, env = "SUMMARY_INTERVAL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub summary_interval: Duration,
    /// Output of each interval.
    #[arg(long, env = "SUMMARY_FORMAT", value_enum, default_value_t = SummaryFormat::Table)]
    pub summary_format: SummaryFormat,
    /// Deadline of one exchange; a reply later than this counts as a timeout (edgeHub's default is 30s).
    #[arg(long, env = "EXCHANGE_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub exchange_timeout: Duration,
    /// Module id of the producer.
    #[arg(long, env = "PRODUCER_MODULE_ID", default_value = edge::seed::PRODUCER_MODULE)]
    pub producer: String,
    /// Where /metrics is served.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:9600")]
    pub metrics_addr: SocketAddr,
    /// Write the bound metrics address to this file (for launchers that ask for port 0).
    #[arg(long, env = "METRICS_ADDR_FILE", hide = true)]
    pub metrics_addr_file: Option<std::path::PathBuf>,
    /// Trace sampling ratio (parent-based); default: OTEL_TRACES_SAMPLER(_ARG) or always on.
    #[arg(long, env = "TRACE_SAMPLE_RATIO")]
    pub trace_sample_ratio: Option<f64>,
    /// Exchanges per second of each enabled kind, started on a fixed schedule whatever the replies
    /// and timed from their planned start (open loop: a canary); 0 keeps the seed's closed loop
    /// (the next exchange starts when the previous one ends: a benchmark).
    #[arg(long, env = "EXCHANGE_RATE", default_value_t = 0.0)]
    pub rate: f64,
    /// Open loop: at most this many exchanges of each kind at once; a due exchange beyond it is
    /// counted as skipped.
    #[arg(long, env = "MAX_IN_FLIGHT", default_value_t = 100)]
    pub max_in_flight: usize,
    /// Bytes of padding in every request (the message body and the method payload), in a
    /// `padding` field the seed's producer ignores: 0, 512, 16KiB, 120KiB… (B, KiB, MiB).
    /// Refused over a kind's limit: 127 KiB for a direct method (its 128 KiB payload less 1 KiB
    /// for framing and trace context), 255 KiB for a message (256 KiB with its properties).
    #[arg(long, env = "PAYLOAD_BYTES", default_value = "0", value_parser = workload_args::size)]
    pub payload_bytes: usize,
    /// A sweep, instead of one workload until stopped: `rate=50,100,200,400` (the open loop at
    /// each rate) or `payload=0,1KiB,16KiB,120KiB` (each request size, at EXCHANGE_RATE). Each
    /// step runs WARMUP, then STEP measured; one summary per step, a final table with each
    /// kind's capacity and the crossover, and the module exits.
    #[arg(long, env = "SWEEP", value_parser = sweep::Sweep::parse)]
    pub sweep: Option<sweep::Sweep>,
    /// How long each sweep step is measured (after its warm-up).
    #[arg(long, env = "STEP", default_value = "30s", value_parser = humantime::parse_duration)]
    pub step: Duration,
    /// Before each sweep step is measured, this long at its workload, not counted (queues from
    /// the previous step drain, connections settle). At most STEP.
    #[arg(long, env = "WARMUP", default_value = "5s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// A rate-sweep step is sustained when Total's p99 is under this bound (and no exchange was
    /// skipped, timed out or failed); a kind's capacity is the highest rate sustained.
    #[arg(long, env = "CAPACITY_P99", default_value = sweep::DEFAULT_P99_BOUND, value_parser = humantime::parse_duration)]
    pub capacity_p99: Duration,
    /// When the run ends, write its HTML report to this file (the page GET /report serves live).
    #[arg(long, env = "REPORT_FILE")]
    pub report: Option<std::path::PathBuf>,
    /// Watchdog: when an exchange loop concludes no exchange (a timeout or a failure counts), the
    /// MQTT session stops turning or the metrics server stops, for this long, log what stopped
    /// and exit with status 3, so that the runtime (restartPolicy: always) restarts the module.
    /// Must be longer than EXCHANGE_TIMEOUT; 0 turns it off.
    #[arg(long, env = "WATCHDOG_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub watchdog_timeout: Duration,
    /// TEST ONLY (tests/watchdog.rs): after this long, every exchange that starts blocks for good,
    /// to show the watchdog acting. Never set it in a deployment.
    #[arg(long, env = "TEST_FREEZE_AFTER", hide = true, value_parser = humantime::parse_duration)]
    pub test_freeze_after: Option<Duration>,
    /// TEST ONLY: freeze only this kind's exchanges (method or message); default both.
    #[arg(long, env = "TEST_FREEZE_KIND", hide = true, value_parser = kind)]
    pub test_freeze_kind: Option<Kind>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Besides running the module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Ask this module's GET /healthz (127.0.0.1, METRICS_ADDR's port) and exit 0 if it answers
    /// 200, 1 otherwise with the reason on stderr (the images' HEALTHCHECK). Starts nothing.
    Healthcheck,
}

impl Args {
    pub fn kinds(&self) -> Vec<Kind> {
        let mut kinds = Vec::new();
        if self.enable_message {
            kinds.push(Kind::Message);
        }
        if self.enable_method {
            kinds.push(Kind::Method);
        }
        kinds
    }

    /// The schedule `--rate` and `--max-in-flight` ask for (a rate sweep's starts at its first
    /// rate).
    pub fn schedule(&self) -> Result<Schedule> {
        let rate = match &self.sweep {
            Some(sweep::Sweep::Rate(rates)) if self.rate == 0.0 => {
                rates.first().copied().unwrap_or(0.0)
            }
            _ => self.rate,
        };
        if !(self.rate.is_finite() && (0.0..=MAX_RATE).contains(&self.rate)) {
            bail!(
                "EXCHANGE_RATE must be 0 (closed loop) or a rate up to {MAX_RATE} per second, not {}",
                self.rate
            );
        }
        if rate == 0.0 {
            return Ok(Schedule::Closed);
        }
        if self.max_in_flight == 0 || self.max_in_flight > Semaphore::MAX_PERMITS.min(1 << 20) {
            bail!(
                "MAX_IN_FLIGHT must be between 1 and {}, not {}",
                1 << 20,
                self.max_in_flight
            );
        }
        Ok(Schedule::Open {
            rate,
            max_in_flight: self.max_in_flight,
        })
    }

    /// Refuses a watchdog that would end a healthy loop: one exchange may take EXCHANGE_TIMEOUT.
    pub fn check_watchdog(&self) -> Result<()> {
        let (watchdog, exchange) = (self.watchdog_timeout, self.exchange_timeout);
        if !watchdog.is_zero() && watchdog <= exchange {
            bail!(
                "WATCHDOG_TIMEOUT ({}) must be longer than EXCHANGE_TIMEOUT ({}): an exchange that times out is the longest a healthy loop goes without progress (0 turns the watchdog off)",
                humantime::format_duration(watchdog),
                humantime::format_duration(exchange)
            );
        }
        Ok(())
    }

    /// The run these arguments ask for, once every value is checked (the first refusal wins,
    /// with what to write instead).
    pub fn config(&self) -> Result<Config> {
        let kinds = self.kinds();
        if kinds.is_empty() {
            bail!("EnableMethod and EnableMessage are both false: there is nothing to measure");
        }
        if self.summary_interval.is_zero() || self.exchange_timeout.is_zero() {
            bail!("SUMMARY_INTERVAL and EXCHANGE_TIMEOUT must be longer than zero");
        }
        let schedule = self.schedule()?;
        let plan = self.plan()?;
        self.check_watchdog()?;
        Ok(Config {
            kinds,
            schedule,
            plan,
            payload_bytes: self.payload_bytes,
            summary_interval: self.summary_interval,
            summary_format: self.summary_format,
            exchange_timeout: self.exchange_timeout,
            producer: self.producer.clone(),
            metrics_addr: self.metrics_addr,
            metrics_addr_file: self.metrics_addr_file.clone(),
            report: self.report.clone(),
            watchdog_timeout: self.watchdog_timeout,
            freeze: self.test_freeze_after.map(|after| Freeze {
                after,
                kind: self.test_freeze_kind,
            }),
        })
    }
}

/// The consumer process: `healthcheck` asks a running one's /healthz; otherwise checks the
/// arguments, sets up tracing, reads the module identity and runs until SIGTERM/Ctrl-C.
pub async fn main(args: Args) -> Result<()> {
    if let Some(Command::Healthcheck) = args.command {
        return telemetry::healthcheck(args.metrics_addr).map_err(anyhow::Error::msg);
    }
    let config = args.config()?;
    let tracing_guard = telemetry::init_module_tracing("consumer", args.trace_sample_ratio)?;
    let identity = Arc::new(ModuleIdentity::from_env()?);
    let ran = crate::run(config, identity, edge::signal::shutdown()).await;
    tracing_guard.shutdown().await;
    ran
}

#[cfg(test)]
mod tests;
