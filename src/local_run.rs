//! `method-vs-message run`, the default: the local run. Like a tiny IoT Edge runtime it reads the
//! deployment manifest, starts the hub, then the producer and the consumer with the identities
//! and `env` the manifest gives them, and stops all three when the run ends.

mod child;
mod prometheus;

use anyhow::{bail, Context, Result};
use child::{spawn, stop, wait_for_file, Proc};
use clap::Parser;
use edge::contract::{vars, Endpoints, IdentitiesFile, ModuleEnv};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Deployment manifest or its template: routes for the hub, modules and their env (the
    /// images are not used locally).
    #[arg(long, default_value = "deployment.template.json")]
    deployment: PathBuf,
    /// How often the consumer prints its table.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    summary_interval: Duration,
    /// Stop after this long (default: run until Ctrl-C).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Consumer output: table, json or both.
    #[arg(long, default_value = "table")]
    summary_format: String,
    /// Open loop: exchanges per second of each kind on a fixed schedule (the consumer's
    /// EXCHANGE_RATE; default: the manifest's, else 0 = the seed's closed loop).
    #[arg(long)]
    rate: Option<f64>,
    /// Open loop: at most this many exchanges of each kind in flight (the consumer's MAX_IN_FLIGHT;
    /// default: the manifest's, else 100).
    #[arg(long)]
    max_in_flight: Option<usize>,
    /// Hub MQTT/TLS port (0: any free port).
    #[arg(long, default_value_t = 8883)]
    mqtt_port: u16,
    /// Hub HTTPS port for direct methods (443 needs root; 0: any free port).
    #[arg(long, default_value_t = 8443)]
    https_port: u16,
    /// Hub /metrics port (0: any free port).
    #[arg(long, default_value_t = 9600)]
    hub_metrics_port: u16,
    /// Producer /metrics port (0: any free port).
    #[arg(long, default_value_t = 9601)]
    producer_metrics_port: u16,
    /// Consumer /metrics port (0: any free port).
    #[arg(long, default_value_t = 9602)]
    consumer_metrics_port: u16,
    /// Also start Prometheus (if installed) scraping all three, with a config made from prometheus.yml.
    #[arg(long)]
    with_prometheus: bool,
    /// Port for that Prometheus.
    #[arg(long, default_value_t = 9090)]
    prometheus_port: u16,
    /// Bytes of padding in each request, message and method (the consumer's PAYLOAD_BYTES):
    /// 0, 1KiB, 16KiB, 120KiB…
    #[arg(long)]
    payload_bytes: Option<String>,
    /// Bytes of padding in each reply (the producer's REPLY_BYTES).
    #[arg(long)]
    reply_bytes: Option<String>,
    /// A sweep (the consumer's SWEEP): rate=50,100,200,400 or payload=0,1KiB,16KiB with --rate;
    /// the run ends after the last step.
    #[arg(long)]
    sweep: Option<String>,
    /// How long each sweep step is measured (the consumer's STEP; default 30s).
    #[arg(long)]
    step: Option<String>,
    /// Warm-up before each sweep step (the consumer's WARMUP; default 5s).
    #[arg(long)]
    warmup: Option<String>,
    /// A rate is sustained with Total p99 under this (the consumer's CAPACITY_P99; default 50ms).
    #[arg(long)]
    capacity_p99: Option<String>,
    /// When the run ends, write the consumer's HTML report to this file (its REPORT_FILE; the
    /// consumer also serves it live at /report on its metrics port).
    #[arg(long)]
    report: Option<PathBuf>,
    /// Where the hub's CA, identities and run files go.
    #[arg(long, default_value = ".state/local-run")]
    state_dir: PathBuf,
}

/// How long a child may take to write the file that says it is up.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a child may take to exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Runs the hub, the producer and the consumer until Ctrl-C, `--duration`, a sweep's end or a
/// child's early exit; then stops them, consumer first.
pub async fn run(args: RunArgs) -> Result<()> {
    let _tracing = telemetry::init_tracing(&telemetry::TraceOptions::disabled("method-vs-message"));
    let deployment = read_deployment(&args.deployment)?;
    let sweep_length = check_workload(&args, &deployment)?;
    check_modules(&args.deployment, &deployment)?;
    let hub_state = prepare_state(&args.state_dir)?;

    let mut hub = spawn("hub", &hub_args(&args, &hub_state), &BTreeMap::new())?;
    let endpoints = wait_for_endpoints(&hub_state, &mut hub).await?;
    let identities = IdentitiesFile::read(&endpoints.identities)?;
    let envs = ModuleEnvs {
        args: &args,
        deployment: &deployment,
        endpoints: &endpoints,
        identities: &identities,
    };
    let (producer, producer_metrics) = start_module("producer", envs.producer()?, &args).await?;
    let consumer_env = envs.consumer()?;
    let report_file = consumer_env.get("REPORT_FILE").cloned();
    let (consumer, consumer_metrics) = start_module("consumer", consumer_env, &args).await?;
    let mut running = Running {
        hub,
        producer,
        consumer,
    };

    let metrics = MetricsAddrs {
        hub: format!("127.0.0.1:{}", endpoints.metrics),
        producer: producer_metrics,
        consumer: consumer_metrics,
    };
    announce_run(&endpoints, &metrics, report_file.as_deref());
    let mut prometheus = if args.with_prometheus {
        prometheus::start_prometheus(&args, &metrics)?
    } else {
        None
    };
    announce_length(args.duration, sweep_length);

    let early_exit = running
        .wait_for_end(args.duration, args.sweep.is_some())
        .await;
    let stopped = running.stop().await;
    if let Some(p) = prometheus.as_mut() {
        stop(p, STOP_GRACE).await;
    }
    exit_report(early_exit, stopped)
}

/// The manifest, read once. A file that is not there is most often a run outside the repository
/// root: say so.
fn read_deployment(path: &Path) -> Result<edge::Deployment> {
    edge::Deployment::read(path).map_err(|e| match e {
        edge::DeploymentError::Read { .. } => {
            anyhow::anyhow!("{e} (run from the repository root, or pass --deployment)")
        }
        e => anyhow::anyhow!("{e}"),
    })
}

/// The manifest at `path` deploys both modules.
fn check_modules(path: &Path, deployment: &edge::Deployment) -> Result<()> {
    let modules = deployment.modules();
    for needed in ["producer", "consumer"] {
        if !modules.iter().any(|m| m == needed) {
            bail!(
                "{} does not deploy a module named {needed:?}",
                path.display()
            );
        }
    }
    Ok(())
}

/// Creates the state directory and removes the files by which a previous run's processes said
/// they were up; returns the hub's state directory.
fn prepare_state(state: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(state).with_context(|| format!("creating {}", state.display()))?;
    let hub_state = state.join("hub");
    for stale in [
        Endpoints::path(&hub_state),
        state.join("producer.metrics"),
        state.join("consumer.metrics"),
    ] {
        let _ = std::fs::remove_file(stale);
    }
    Ok(hub_state)
}

/// The hub's command line: loopback only, `localhost` in its certificate, the run's ports.
fn hub_args(args: &RunArgs, hub_state: &Path) -> Vec<String> {
    vec![
        "hub".into(),
        "--deployment".into(),
        args.deployment.display().to_string(),
        "--bind".into(),
        "127.0.0.1".into(),
        "--hostname".into(),
        "localhost".into(),
        "--state-dir".into(),
        hub_state.display().to_string(),
        "--mqtt-port".into(),
        args.mqtt_port.to_string(),
        "--https-port".into(),
        args.https_port.to_string(),
        "--metrics-port".into(),
        args.hub_metrics_port.to_string(),
    ]
}

/// The hub's `endpoints.json`, which it writes last, once every listener is bound.
async fn wait_for_endpoints(hub_state: &Path, hub: &mut Proc) -> Result<Endpoints> {
    let path = Endpoints::path(hub_state);
    Endpoints::parse(&wait_for_file(&path, hub, START_TIMEOUT).await?)
        .with_context(|| format!("reading {}", path.display()))
}

/// What a module's environment is made of: the manifest's `env`, the identity the hub made for
/// it, and the run's flags.
struct ModuleEnvs<'a> {
    args: &'a RunArgs,
    deployment: &'a edge::Deployment,
    endpoints: &'a Endpoints,
    identities: &'a IdentitiesFile,
}

impl ModuleEnvs<'_> {
    /// Both modules' variables: manifest, identity, metrics address and summary interval.
    fn common(&self, module: &str, metrics_port: u16) -> Result<BTreeMap<String, String>> {
        let mut env = self.deployment.local_module_env(module);
        env.extend(ModuleEnv::for_module(module, self.endpoints, self.identities)?.vars());
        env.insert(
            vars::METRICS_ADDR.into(),
            format!("127.0.0.1:{metrics_port}"),
        );
        env.insert(
            vars::METRICS_ADDR_FILE.into(),
            metrics_file(&self.args.state_dir, module)
                .display()
                .to_string(),
        );
        env.insert(
            "SUMMARY_INTERVAL".into(),
            humantime::format_duration(self.args.summary_interval).to_string(),
        );
        Ok(env)
    }

    /// The producer's: the common ones and `REPLY_BYTES`.
    fn producer(&self) -> Result<BTreeMap<String, String>> {
        let mut env = self.common("producer", self.args.producer_metrics_port)?;
        if let Some(size) = &self.args.reply_bytes {
            env.insert("REPLY_BYTES".into(), size.clone());
        }
        Ok(env)
    }

    /// The consumer's: the common ones, its output, its workload and its report file.
    fn consumer(&self) -> Result<BTreeMap<String, String>> {
        let args = self.args;
        let mut env = self.common("consumer", args.consumer_metrics_port)?;
        env.insert("SUMMARY_FORMAT".into(), args.summary_format.clone());
        if let Some(rate) = args.rate {
            env.insert("EXCHANGE_RATE".into(), rate.to_string());
        }
        if let Some(n) = args.max_in_flight {
            env.insert("MAX_IN_FLIGHT".into(), n.to_string());
        }
        env.extend(workload_env(args));
        if let Some(path) = &args.report {
            let path = std::path::absolute(path)
                .with_context(|| format!("--report {}", path.display()))?;
            env.insert("REPORT_FILE".into(), path.display().to_string());
        }
        Ok(env)
    }
}

/// Where `module` writes its bound `/metrics` address (`METRICS_ADDR_FILE`).
fn metrics_file(state: &Path, module: &str) -> PathBuf {
    state.join(format!("{module}.metrics"))
}

/// Starts `module` with `env` and waits until it serves `/metrics`; that address.
async fn start_module(
    module: &'static str,
    env: BTreeMap<String, String>,
    args: &RunArgs,
) -> Result<(Proc, String)> {
    let mut proc = spawn(module, &[module.into()], &env)?;
    let metrics = wait_for_file(
        &metrics_file(&args.state_dir, module),
        &mut proc,
        START_TIMEOUT,
    )
    .await?;
    Ok((proc, metrics))
}

/// The three `/metrics` addresses of a run.
struct MetricsAddrs {
    hub: String,
    producer: String,
    consumer: String,
}

/// Where the user finds the run: the hub's endpoints, the metrics and the report.
fn announce_run(endpoints: &Endpoints, metrics: &MetricsAddrs, report_file: Option<&str>) {
    let MetricsAddrs {
        hub: hub_metrics,
        producer: producer_metrics,
        consumer: consumer_metrics,
    } = metrics;
    eprintln!(
        "local run: hub mqtts://localhost:{} https://localhost:{} (CA {})\n  metrics: hub http://{hub_metrics}/metrics  producer http://{producer_metrics}/metrics  consumer http://{consumer_metrics}/metrics\n  report: http://{consumer_metrics}/report (the run so far){}",
        endpoints.mqtt,
        endpoints.https,
        endpoints.ca.display(),
        report_file
            .map(|f| format!(", written to {f} at the end"))
            .unwrap_or_default()
    );
}

/// When the run will end, as far as it is known.
fn announce_length(duration: Option<Duration>, sweep_length: Option<Duration>) {
    match duration {
        Some(d) => eprintln!(
            "running for {}; Ctrl-C stops earlier",
            humantime::format_duration(d)
        ),
        None => match sweep_length {
            Some(d) => eprintln!(
                "running until the sweep's last step, in about {}; Ctrl-C stops earlier",
                humantime::format_duration(d)
            ),
            None => eprintln!("running until Ctrl-C"),
        },
    }
}

/// A child that exited before the run ended: its name and how it exited.
type EarlyExit = (&'static str, std::io::Result<ExitStatus>);

/// The run's three processes.
struct Running {
    hub: Proc,
    producer: Proc,
    consumer: Proc,
}

/// Which processes exited cleanly when stopped.
struct Stopped {
    consumer: bool,
    producer: bool,
    hub: bool,
}

impl Running {
    /// Waits for the end of `duration` (if any), Ctrl-C/SIGTERM, or a child's exit; a child that
    /// exited early, unless it is a `sweep`'s consumer that finished its last step.
    async fn wait_for_end(&mut self, duration: Option<Duration>, sweep: bool) -> Option<EarlyExit> {
        let until = async {
            match duration {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = until => None,
            _ = edge::signal::shutdown() => None,
            s = self.hub.child.wait() => Some(("hub", s)),
            s = self.producer.child.wait() => Some(("producer", s)),
            // A sweep's consumer exits 0 after its last step: the run is done.
            s = self.consumer.child.wait() => match s {
                Ok(status) if status.success() && sweep => None,
                s => Some(("consumer", s)),
            },
        }
    }

    /// Consumer first, so its final summary still sees the producer; then producer, then hub.
    async fn stop(&mut self) -> Stopped {
        let consumer = stop(&mut self.consumer, STOP_GRACE).await;
        let producer = stop(&mut self.producer, STOP_GRACE).await;
        let hub = stop(&mut self.hub, STOP_GRACE).await;
        Stopped {
            consumer,
            producer,
            hub,
        }
    }
}

/// The run's result: an error if a child exited early or did not stop cleanly.
fn exit_report(early_exit: Option<EarlyExit>, stopped: Stopped) -> Result<()> {
    if let Some((name, status)) = early_exit {
        bail!(
            "{name} stopped unexpectedly ({}); the others were stopped",
            status
                .map(|s| s.to_string())
                .unwrap_or_else(|e| e.to_string())
        );
    }
    let Stopped {
        consumer,
        producer,
        hub,
    } = stopped;
    if !(consumer && producer && hub) {
        bail!("not every process stopped cleanly (consumer {consumer}, producer {producer}, hub {hub})");
    }
    Ok(())
}

/// The consumer's workload variables from the run's flags.
fn workload_env(args: &RunArgs) -> BTreeMap<String, String> {
    [
        ("PAYLOAD_BYTES", &args.payload_bytes),
        ("SWEEP", &args.sweep),
        ("STEP", &args.step),
        ("WARMUP", &args.warmup),
        ("CAPACITY_P99", &args.capacity_p99),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_ref().map(|v| (k.to_owned(), v.clone())))
    .collect()
}

/// Refuses a malformed or over-limit workload before anything starts, with the consumer's and
/// the producer's own checks (and the manifest's EnableMethod/EnableMessage); a sweep's length.
fn check_workload(args: &RunArgs, deployment: &edge::Deployment) -> Result<Option<Duration>> {
    let mut argv = vec!["consumer".to_owned()];
    let env = deployment.local_module_env("consumer");
    for (flag, var) in [
        ("--enable-method", "EnableMethod"),
        ("--enable-message", "EnableMessage"),
    ] {
        if let Some(v) = env.get(var) {
            argv.extend([flag.to_owned(), v.clone()]);
        }
    }
    let flags = [
        ("--payload-bytes", &args.payload_bytes),
        ("--sweep", &args.sweep),
        ("--step", &args.step),
        ("--warmup", &args.warmup),
        ("--capacity-p99", &args.capacity_p99),
    ];
    for (flag, value) in flags {
        if let Some(v) = value {
            argv.extend([flag.to_owned(), v.clone()]);
        }
    }
    if let Some(rate) = args.rate {
        argv.extend(["--rate".to_owned(), rate.to_string()]);
    }
    let consumer = consumer::Args::try_parse_from(&argv)
        .map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))?;
    consumer.schedule()?;
    let plan = consumer.plan()?;
    if let Some(size) = &args.reply_bytes {
        producer::Args::try_parse_from(["producer", "--reply-bytes", size])
            .map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))?;
    }
    Ok(plan.map(|p| (p.warmup + p.step) * u32::try_from(p.steps.len()).unwrap_or(u32::MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_free_port_options_callers_pass_are_the_launchers() {
        let cli = crate::Cli::try_parse_from(
            std::iter::once("method-vs-message").chain(edge::contract::LOCAL_RUN_FREE_PORTS),
        )
        .unwrap();
        let a = cli.run;
        assert_eq!(
            [
                a.mqtt_port,
                a.https_port,
                a.hub_metrics_port,
                a.producer_metrics_port,
                a.consumer_metrics_port
            ],
            [0; 5]
        );
    }
}
