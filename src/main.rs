//! The main job: `cargo run --release` runs the whole method-vs-message comparison on this machine.
//! Like a tiny IoT Edge runtime it reads deployment.template.json, starts the local hub with its routes and
//! the producer and consumer as separate processes (real sockets, real TLS) with the identities and
//! `env` the manifest gives them, streams the consumer's tables, and stops all three cleanly.
//! The same binary is each of those processes (`method-vs-message hub|producer|consumer`).
#![forbid(unsafe_code)]

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use edge::contract::{vars, Endpoints, IdentitiesFile, ModuleEnv};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

mod compare;
mod manifest;

#[derive(Debug, Parser)]
#[command(
    name = "method-vs-message",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the whole comparison locally (the default).
    Run(RunArgs),
    /// Run only the local edgeHub stand-in.
    Hub(Box<hub::Args>), // boxed: by far the largest variant (clippy::large_enum_variant)
    /// Run only the producer module.
    Producer(producer::Args),
    /// Run only the consumer module.
    Consumer(consumer::Args),
    /// Write a deployable deployment.json (real images, registry credentials) from
    /// deployment.template.json, for `az iot edge set-modules` or the portal.
    Manifest(manifest::ManifestArgs),
    /// Compare two runs' JSON output: is B slower or faster than A (docs/compare.md)?
    Compare(compare::CompareArgs),
}

#[derive(Debug, Clone, clap::Args)]
struct RunArgs {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One thread per process, as for the standalone binaries (docs/architecture.md#performance-choices).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (name, result) = runtime.block_on(async {
        match cli.command {
            Some(Cmd::Hub(args)) => ("hub", hub::cli::main(*args).await),
            Some(Cmd::Producer(args)) => ("producer", producer::run(args).await),
            Some(Cmd::Consumer(args)) => ("consumer", consumer::run(args).await),
            Some(Cmd::Run(args)) => ("run", run(args).await),
            // Reads one file and writes another: nothing else runs on this runtime meanwhile.
            Some(Cmd::Manifest(args)) => ("manifest", manifest::run(&args)),
            Some(Cmd::Compare(args)) => ("compare", compare::run(&args)),
            None => ("run", run(cli.run).await),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<compare::Regression>() => ExitCode::from(compare::REGRESSION_EXIT),
        Err(e) => {
            eprintln!("{name}: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A child process and its name, for logs.
struct Proc {
    name: &'static str,
    child: Child,
}

fn spawn(name: &'static str, args: &[String], env: &BTreeMap<String, String>) -> Result<Proc> {
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

async fn wait_for_file(path: &Path, proc: &mut Proc, within: Duration) -> Result<String> {
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
async fn stop(proc: &mut Proc, grace: Duration) -> bool {
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

async fn run(args: RunArgs) -> Result<()> {
    let _tracing = telemetry::init_tracing(&telemetry::TraceOptions::disabled("method-vs-message"));
    // A file that is not there is most often a run outside the repository root: say so.
    let deployment = edge::Deployment::read(&args.deployment).map_err(|e| match e {
        edge::DeploymentError::Read { .. } => {
            anyhow::anyhow!("{e} (run from the repository root, or pass --deployment)")
        }
        e => anyhow::anyhow!("{e}"),
    })?;
    let sweep_length = check_workload(&args, &deployment)?;
    let modules = deployment.modules();
    for needed in ["producer", "consumer"] {
        if !modules.iter().any(|m| m == needed) {
            bail!(
                "{} does not deploy a module named {needed:?}",
                args.deployment.display()
            );
        }
    }
    let state = &args.state_dir;
    std::fs::create_dir_all(state).with_context(|| format!("creating {}", state.display()))?;
    let hub_state = state.join("hub");
    for stale in [
        Endpoints::path(&hub_state),
        state.join("producer.metrics"),
        state.join("consumer.metrics"),
    ] {
        let _ = std::fs::remove_file(stale);
    }

    let hub_args: Vec<String> = vec![
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
    ];
    let mut hub = spawn("hub", &hub_args, &BTreeMap::new())?;
    let endpoints_path = Endpoints::path(&hub_state);
    let endpoints =
        Endpoints::parse(&wait_for_file(&endpoints_path, &mut hub, Duration::from_secs(20)).await?)
            .with_context(|| format!("reading {}", endpoints_path.display()))?;
    let identities = IdentitiesFile::read(&endpoints.identities)?;

    let module_env = |module: &str, metrics_port: u16| -> Result<BTreeMap<String, String>> {
        let mut env = deployment.local_module_env(module);
        env.extend(ModuleEnv::for_module(module, &endpoints, &identities)?.vars());
        env.insert(
            vars::METRICS_ADDR.into(),
            format!("127.0.0.1:{metrics_port}"),
        );
        env.insert(
            vars::METRICS_ADDR_FILE.into(),
            state
                .join(format!("{module}.metrics"))
                .display()
                .to_string(),
        );
        env.insert(
            "SUMMARY_INTERVAL".into(),
            humantime::format_duration(args.summary_interval).to_string(),
        );
        Ok(env)
    };
    let mut producer_env = module_env("producer", args.producer_metrics_port)?;
    if let Some(size) = &args.reply_bytes {
        producer_env.insert("REPLY_BYTES".into(), size.clone());
    }
    let mut producer = spawn("producer", &["producer".into()], &producer_env)?;
    let producer_metrics = wait_for_file(
        &state.join("producer.metrics"),
        &mut producer,
        Duration::from_secs(20),
    )
    .await?;
    let mut consumer_env = module_env("consumer", args.consumer_metrics_port)?;
    consumer_env.insert("SUMMARY_FORMAT".into(), args.summary_format.clone());
    if let Some(rate) = args.rate {
        consumer_env.insert("EXCHANGE_RATE".into(), rate.to_string());
    }
    if let Some(n) = args.max_in_flight {
        consumer_env.insert("MAX_IN_FLIGHT".into(), n.to_string());
    }
    consumer_env.extend(workload_env(&args));
    if let Some(path) = &args.report {
        let path =
            std::path::absolute(path).with_context(|| format!("--report {}", path.display()))?;
        consumer_env.insert("REPORT_FILE".into(), path.display().to_string());
    }
    let mut consumer = spawn("consumer", &["consumer".into()], &consumer_env)?;
    let consumer_metrics = wait_for_file(
        &state.join("consumer.metrics"),
        &mut consumer,
        Duration::from_secs(20),
    )
    .await?;

    let hub_metrics = format!("127.0.0.1:{}", endpoints.metrics);
    eprintln!(
        "local run: hub mqtts://localhost:{} https://localhost:{} (CA {})\n  metrics: hub http://{hub_metrics}/metrics  producer http://{producer_metrics}/metrics  consumer http://{consumer_metrics}/metrics\n  report: http://{consumer_metrics}/report (the run so far){}",
        endpoints.mqtt,
        endpoints.https,
        endpoints.ca.display(),
        consumer_env
            .get("REPORT_FILE")
            .map(|f| format!(", written to {f} at the end"))
            .unwrap_or_default()
    );
    let mut prometheus = if args.with_prometheus {
        start_prometheus(&args, &hub_metrics, &producer_metrics, &consumer_metrics)?
    } else {
        None
    };
    match args.duration {
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

    let until = async {
        match args.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    let early_exit = tokio::select! {
        _ = until => None,
        _ = edge::signal::shutdown() => None,
        s = hub.child.wait() => Some(("hub", s)),
        s = producer.child.wait() => Some(("producer", s)),
        // A sweep's consumer exits 0 after its last step: the run is done.
        s = consumer.child.wait() => match s {
            Ok(status) if status.success() && args.sweep.is_some() => None,
            s => Some(("consumer", s)),
        },
    };
    // Consumer first, so its final summary still sees the producer; then producer, then hub.
    let consumer_ok = stop(&mut consumer, Duration::from_secs(10)).await;
    let producer_ok = stop(&mut producer, Duration::from_secs(10)).await;
    let hub_ok = stop(&mut hub, Duration::from_secs(10)).await;
    if let Some(p) = prometheus.as_mut() {
        stop(p, Duration::from_secs(10)).await;
    }
    if let Some((name, status)) = early_exit {
        bail!(
            "{name} stopped unexpectedly ({}); the others were stopped",
            status
                .map(|s| s.to_string())
                .unwrap_or_else(|e| e.to_string())
        );
    }
    if !(consumer_ok && producer_ok && hub_ok) {
        bail!("not every process stopped cleanly (consumer {consumer_ok}, producer {producer_ok}, hub {hub_ok})");
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

/// Starts Prometheus with prometheus.yml's scrape jobs pointed at this run's ports.
fn start_prometheus(
    args: &RunArgs,
    hub: &str,
    producer: &str,
    consumer: &str,
) -> Result<Option<Proc>> {
    let Some(binary) = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("prometheus"))
            .find(|p| p.is_file())
    }) else {
        eprintln!("--with-prometheus: no `prometheus` in PATH (Debian: apt install prometheus); running without it");
        return Ok(None);
    };
    let template = std::fs::read_to_string("prometheus.yml")
        .context("reading prometheus.yml (run from the repository root)")?;
    let config = template
        .replace("hub:9600", hub)
        .replace("producer:9601", producer)
        .replace("consumer:9602", consumer);
    let dir = args.state_dir.join("prometheus");
    std::fs::create_dir_all(&dir)?;
    let config_path = dir.join("prometheus.yml");
    std::fs::write(&config_path, config)?;
    // `rule_files` resolves next to the config: the alert and recording rules go there too.
    std::fs::copy("prometheus-rules.yml", dir.join("prometheus-rules.yml"))
        .context("copying prometheus-rules.yml (run from the repository root)")?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_free_port_options_callers_pass_are_the_launchers() {
        let cli = Cli::try_parse_from(
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
