//! `bench`: in one run, the same 4-hop QoS 1 request/response through (a) mosquitto, (b) our hub's
//! plain MQTT port as IoT Edge modules, (c) our hub over TLS, and (d) our real producer and
//! consumer through the hub, interleaved over several rounds; a table of latency, rate, broker CPU
//! per exchange and RSS, each row as a ratio to mosquitto. `--alloc` instead counts the hub's heap
//! allocations per routed message; `--footprint` measures each module's RSS and CPU over minutes
//! at `--rate 10` and `--rate 1`, as the standalone binaries of the images (issue 18). Only ratios
//! measured in one run mean anything.

mod alloc;
mod brokers;
mod exchange;
mod footprint;
mod launcher;
mod procstat;
mod table;
use table::{broker_row, finish, module_row, print_table, Acc, Row};

use anyhow::{bail, Context, Result};
use clap::Parser;
use exchange::Window;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

/// Benchmark: mosquitto vs our hub vs our modules, in one run (issue 13).
#[derive(Debug, Parser)]
#[command(name = "bench", about, long_about = None)]
struct Args {
    /// About a minute in total: 2 rounds of short windows (--footprint: 1 minute per rate).
    #[arg(long)]
    quick: bool,
    /// Rounds; each runs every row once, brokers in a rotating order (default 5, --quick 2).
    #[arg(long)]
    rounds: Option<u32>,
    /// Measured seconds per broker segment with one exchange in flight; with 64 in flight 60% of
    /// it (default 5, --quick 2).
    #[arg(long)]
    seconds: Option<f64>,
    /// Seconds of the consumer's interval per module run (default 10, --quick 4).
    #[arg(long)]
    module_seconds: Option<u64>,
    /// Exchanges in flight for the broker rows (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    inflight: Vec<usize>,
    /// Also write the rows as a JSON array to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Only count the hub's heap allocations per routed message (hub in-process).
    #[arg(long)]
    alloc: bool,
    /// Run only these rows (comma-separated letters: a mosquitto, b hub plain, c hub TLS, d our
    /// modules); ratios need a.
    #[arg(long, value_delimiter = ',', default_value = "a,b,c,d")]
    only: Vec<String>,
    /// The launcher binary (default: method-vs-message next to this binary).
    #[arg(long)]
    launcher: Option<PathBuf>,
    /// Deployment manifest (or its template) for the (d) rows.
    #[arg(long, default_value = "deployment.template.json")]
    deployment: PathBuf,
    /// The mosquitto binary (default: from PATH or /usr/sbin).
    #[arg(long)]
    mosquitto: Option<PathBuf>,
    /// Footprint on a device instead (issue 18): hub, producer and consumer as separate processes
    /// at --rate 10, then at --rate 1; each one's RSS (anon/file), threads and CPU from /proc,
    /// against the goals (RSS <= 12 MiB and flat at rate 10, CPU <= 1 % of a core at rate 1).
    #[arg(long)]
    footprint: bool,
    /// --footprint: minutes at --rate 10 (default 10, --quick 1; 0 skips it).
    #[arg(long)]
    rate10_minutes: Option<f64>,
    /// --footprint: minutes at --rate 1 (default 5, --quick 1; 0 skips it).
    #[arg(long)]
    rate1_minutes: Option<f64>,
    /// --footprint: seconds between /proc readings (default 5, --quick 2).
    #[arg(long)]
    sample_seconds: Option<f64>,
    /// --footprint: seconds between GET /metrics of each module, as the device's Prometheus agent
    /// scrapes them (prometheus-agent.yml: 5 s); 0: no scraping.
    #[arg(long, default_value_t = 5.0)]
    scrape_seconds: f64,
    /// --footprint: a directory with the standalone hub, producer and consumer binaries, or the
    /// launcher binary to run them as its subcommands. Default: target/dist if built (`cargo build
    /// --profile dist -p hub -p producer -p consumer`, as the Dockerfile), else next to this binary.
    #[arg(long)]
    binaries: Option<PathBuf>,
    /// --footprint: extra env for every module, KEY=VALUE (repeatable; experiments such as
    /// MALLOC_ARENA_MAX=1).
    #[arg(long, value_name = "KEY=VALUE")]
    module_env: Vec<String>,
}

impl Args {
    fn wants(&self, letter: &str) -> bool {
        self.only
            .iter()
            .any(|o| o.trim().eq_ignore_ascii_case(letter))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Broker {
    Mosquitto,
    HubPlain,
    HubTls,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let dir = std::env::temp_dir().join(format!("bench-{}", std::process::id()));
    let result = match std::fs::create_dir_all(&dir) {
        Ok(()) => {
            if args.alloc {
                alloc_mode(&args, &dir).await
            } else if args.footprint {
                footprint_mode(&args, &dir).await
            } else {
                bench(&args, &dir).await
            }
        }
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(()) => {
            let _ = std::fs::remove_dir_all(&dir);
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench: error: {e:#}\n(logs kept in {})", dir.display());
            std::process::ExitCode::FAILURE
        }
    }
}

async fn alloc_mode(args: &Args, dir: &Path) -> Result<()> {
    let seconds = args.seconds.unwrap_or(if args.quick { 2.0 } else { 5.0 });
    let rows = alloc::run(dir, seconds).await?;
    alloc::print(&rows);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&rows)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// `deployment` if it exists, else the repository's manifest found from `bin` (`target/<profile>/x`).
fn find_deployment(given: &Path, bin: &Path) -> PathBuf {
    if given.is_file() {
        return given.to_owned();
    }
    bin.parent()
        .and_then(|d| d.parent())
        .and_then(|d| d.parent())
        .map(|d| d.join("deployment.template.json"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| given.to_owned())
}

async fn footprint_mode(args: &Args, dir: &Path) -> Result<()> {
    let minutes = |given: Option<f64>, default: f64| -> Result<Duration> {
        let m = given.unwrap_or(if args.quick { 1.0 } else { default });
        Duration::try_from_secs_f64(m * 60.0).context("minutes must be >= 0")
    };
    let sample = args
        .sample_seconds
        .unwrap_or(if args.quick { 2.0 } else { 5.0 });
    let sample_every = Duration::try_from_secs_f64(sample)
        .ok()
        .filter(|d| !d.is_zero())
        .context("--sample-seconds must be > 0")?;
    let scrape_every = Duration::try_from_secs_f64(args.scrape_seconds)
        .context("--scrape-seconds must be >= 0")?;
    let binaries = match &args.binaries {
        Some(p) => footprint::Binaries::from_arg(p)?,
        None => footprint::Binaries::find()?,
    };
    let module_env = args
        .module_env
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .with_context(|| format!("--module-env {kv}: not KEY=VALUE"))
        })
        .collect::<Result<Vec<_>>>()?;
    // Not given: the repository's, from target/release/bench.
    let exe = std::env::current_exe().unwrap_or_default();
    let deployment = std::path::absolute(find_deployment(&args.deployment, &exe))?;
    let opts = footprint::Options {
        binaries,
        deployment,
        runs: vec![
            (
                footprint::RSS_RATE,
                minutes(args.rate10_minutes, 10.0).context("--rate10-minutes")?,
            ),
            (
                footprint::CPU_RATE,
                minutes(args.rate1_minutes, 5.0).context("--rate1-minutes")?,
            ),
        ],
        sample_every,
        scrape_every: (!scrape_every.is_zero()).then_some(scrape_every),
        module_env,
    };
    println!(
        "bench --footprint: {}; manifest {}{}",
        opts.binaries.describe(),
        opts.deployment.display(),
        if opts.module_env.is_empty() {
            String::new()
        } else {
            format!("; extra module env {:?}", args.module_env)
        }
    );
    let report = footprint::run(&opts, dir).await?;
    footprint::print_notes(&report);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("report written to {}", path.display());
    }
    Ok(())
}

async fn bench(args: &Args, dir: &Path) -> Result<()> {
    let rounds = args.rounds.unwrap_or(if args.quick { 2 } else { 5 }).max(1);
    let seconds = args.seconds.unwrap_or(if args.quick { 2.0 } else { 5.0 });
    let module_seconds = args
        .module_seconds
        .unwrap_or(if args.quick { 4 } else { 10 })
        .max(1);
    let launcher_bin = args
        .launcher
        .clone()
        .unwrap_or_else(launcher::default_launcher);
    if !launcher_bin.is_file() {
        bail!(
            "{} not found: build it with `cargo build --release` (scripts/bench.sh does)",
            launcher_bin.display()
        );
    }
    // The repository's manifest, from target/release/method-vs-message, if not given.
    let deployment = find_deployment(&args.deployment, &launcher_bin);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!(
        "bench: {rounds} round(s); broker segments {:.1} s measured (64 in flight: {:.1} s) after 0.3 s warm-up; module runs {module_seconds} s; {cores} cores",
        seconds,
        seconds * 0.6
    );
    let mut mosquitto = if args.wants("a") {
        let Some(binary) = args
            .mosquitto
            .clone()
            .or_else(|| brokers::find_program("mosquitto"))
        else {
            bail!("mosquitto not found: install Debian's mosquitto (scripts/bench.sh does) or pass --mosquitto");
        };
        let m = brokers::start_mosquitto(&binary, dir).await?;
        println!(
            "  (a) {} on 127.0.0.1:{} (set_tcp_nodelay true, otherwise defaults)",
            m.version, m.port
        );
        Some(m)
    } else {
        None
    };
    let mut hub = if args.wants("b") || args.wants("c") {
        let h = brokers::start_hub(&launcher_bin, dir).await?;
        println!(
            "  (b)/(c) {} hub, pid {}, plain :{} TLS :{}",
            launcher_bin.display(),
            h.pid,
            h.access.plain_port,
            h.access.tls_port
        );
        Some(h)
    } else {
        None
    };
    println!(
        "  clients: two rumqttc clients in this process (one tokio thread), QoS 1, TCP_NODELAY, {}-byte payload",
        exchange::PAYLOAD_LEN
    );

    let brokers_in_order: Vec<Broker> = [
        ("a", Broker::Mosquitto),
        ("b", Broker::HubPlain),
        ("c", Broker::HubTls),
    ]
    .into_iter()
    .filter(|(letter, _)| args.wants(letter))
    .map(|(_, b)| b)
    .collect();
    let mut accs: Vec<(Option<Broker>, Option<launcher::Kind>, Acc)> = Vec::new();
    for &n in &args.inflight {
        for &b in &brokers_in_order {
            let (name, what) = broker_row(b, n);
            accs.push((Some(b), None, Acc::new(name, what, n, true)));
        }
    }
    if args.wants("d") {
        for k in [launcher::Kind::Message, launcher::Kind::Method] {
            let (name, what) = module_row(k);
            accs.push((None, Some(k), Acc::new(name, what, 1, false)));
        }
    }

    for round in 0..rounds as usize {
        for &n in &args.inflight {
            let window = Window {
                warmup: Duration::from_millis(300),
                measure: Duration::from_secs_f64(if n > 1 { seconds * 0.6 } else { seconds }),
            };
            for i in 0..brokers_in_order.len() {
                let b = brokers_in_order[(round + i) % brokers_in_order.len()];
                let (target, pid) = match (b, &mosquitto, &hub) {
                    (Broker::Mosquitto, Some(m), _) => (brokers::mosquitto_target(m.port), m.pid),
                    (Broker::HubPlain, _, Some(h)) => (h.access.plain(), h.pid),
                    (Broker::HubTls, _, Some(h)) => (h.access.tls(), h.pid),
                    _ => bail!("{b:?} was not started"),
                };
                let me = std::process::id();
                let outcome = exchange::run(&target, n, window, || {
                    (procstat::sample(Some(pid)), procstat::cpu_ns(me))
                })
                .await
                .with_context(|| format!("{:?} with {n} in flight", b))?;
                let acc = &mut accs
                    .iter_mut()
                    .find(|(bb, _, a)| *bb == Some(b) && a.inflight == n)
                    .context("row")?
                    .2;
                let p50 = outcome.hist.value_at_quantile(0.5) as f64 / 1e3;
                if let Some(h) = acc.hist.as_mut() {
                    h.add(&outcome.hist).context("merging histograms")?;
                }
                acc.count += outcome.completed;
                acc.stale += outcome.stale;
                acc.seconds += outcome.elapsed.as_secs_f64();
                acc.round_p50_us.push(p50);
                let ((broker_before, client_before), (broker_after, client_after)) =
                    (outcome.before, outcome.after);
                let delta =
                    |a: Option<u64>, b: Option<u64>| a.zip(b).map(|(a, b)| a.saturating_sub(b));
                acc.client_cpu_ns = acc
                    .client_cpu_ns
                    .zip(delta(client_after, client_before))
                    .map(|(a, b)| a + b);
                acc.add_cpu_rss(
                    delta(broker_after.cpu_ns, broker_before.cpu_ns),
                    broker_after.rss,
                );
                eprintln!(
                    "round {}/{rounds} {:<16} p50 {p50:>7.1} µs  {:>8.0}/s",
                    round + 1,
                    acc.name,
                    outcome.completed as f64 / outcome.elapsed.as_secs_f64().max(1e-9)
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        if args.wants("d") {
            let kinds = if round % 2 == 0 {
                [launcher::Kind::Message, launcher::Kind::Method]
            } else {
                [launcher::Kind::Method, launcher::Kind::Message]
            };
            for k in kinds {
                let iv = launcher::run(&launcher_bin, &deployment, dir, k, module_seconds)
                    .await
                    .with_context(|| format!("the launcher's {} run", k.label()))?;
                let acc = &mut accs
                    .iter_mut()
                    .find(|(_, kk, _)| *kk == Some(k))
                    .context("row")?
                    .2;
                let w = iv.count as f64;
                for (i, q) in [iv.p50_ms, iv.p99_ms, iv.p999_ms].into_iter().enumerate() {
                    if let Some(q) = q {
                        acc.weighted[i].0 += q * 1e3 * w;
                        acc.weighted[i].1 += w;
                    }
                }
                acc.count += iv.count;
                acc.seconds += iv.seconds;
                acc.timeouts += iv.timeouts;
                acc.errors += iv.errors;
                let p50 = iv.p50_ms.map(|v| v * 1e3).unwrap_or(f64::NAN);
                acc.round_p50_us.push(p50);
                acc.add_cpu_rss(iv.hub_cpu_ns, iv.hub_rss);
                eprintln!(
                    "round {}/{rounds} {:<16} p50 {p50:>7.1} µs  {:>8.0}/s",
                    round + 1,
                    acc.name,
                    iv.count as f64 / iv.seconds.max(1e-9)
                );
            }
        }
    }
    if let Some(m) = mosquitto.as_mut() {
        let _ = m.child.kill().await;
    }
    if let Some(h) = hub.as_mut() {
        let _ = h.child.kill().await;
    }

    let mut rows: Vec<Row> = accs.iter().map(|(_, _, a)| finish(a)).collect();
    let refs: Vec<(usize, f64, f64, f64)> = rows
        .iter()
        .filter(|r| r.name.starts_with("a-mosquitto-"))
        .map(|r| (r.inflight, r.p50_us, r.p99_us, r.rate))
        .collect();
    for r in &mut rows {
        if let Some(&(_, p50, p99, rate)) = refs.iter().find(|(n, ..)| *n == r.inflight) {
            r.ratio_p50 = Some(r.p50_us / p50);
            r.ratio_p99 = Some(r.p99_us / p99);
            r.ratio_rate = Some(r.rate / rate);
        }
    }
    println!();
    print_table(&rows);
    println!(
        "\n×a: ratio to the mosquitto row with as many exchanges in flight (d rows: to a-mosquitto-1).\n\
         CPU µs/ex: broker process CPU (all threads, /proc/<pid>/task/*/schedstat) per exchange in the window;\n\
         d rows: the launcher's hub from listening to the end of the consumer's first interval, and p50/p99\n\
         are the consumer's own (count-weighted mean over rounds; p99.9 only if its JSON has total_p999_ms).\n\
         Absolute figures move with the machine's load; compare ratios from one run only."
    );
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&rows)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("rows written to {}", path.display());
    }
    Ok(())
}
