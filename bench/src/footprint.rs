//! `bench --footprint`: the modules' footprint as on a device (issue 18). The hub, the producer and
//! the consumer run as three processes of the standalone binaries the images hold (by default
//! target/dist, built as the Dockerfile builds them), started the way the launcher starts them
//! (the manifest's env, the hub's identities, 127.0.0.1 and free ports), at `--rate 10` and then
//! at `--rate 1`. Every few seconds each process's `/proc/<pid>/status` (VmRSS, the sum of
//! RssAnon, RssFile and RssShmem; Threads) and `/proc/<pid>/stat` (utime + stime, in
//! sysconf(_SC_CLK_TCK) ticks) are read, and each module's /metrics is scraped as the device's
//! Prometheus agent does. Per module: RSS first/min/max/last, its trend (least squares over the
//! second half), CPU as % of one core, each next to its goal; at the end, RSS by mapping. A
//! benchmark, not a test: a missed goal is reported, not an exit status.

use crate::procstat::{self, Status};
use anyhow::{bail, Context, Result};
use edge::contract::{vars, Endpoints, IdentitiesFile, ModuleEnv};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Child;

mod binaries;
mod print;
mod summary;

pub use binaries::Binaries;
use print::mib;
pub use print::{print_notes, print_run};
use summary::*;

/// Issue 18's goals: RSS of each module at `--rate 10` at most this many MiB, and flat …
pub const RSS_GOAL_MIB: f64 = 12.0;
/// … where flat means a second-half least-squares slope within ± this (10 KB/min is 14 MB a day).
pub const FLAT_KB_PER_MIN: f64 = 10.0;
/// CPU of each module at `--rate 1`, % of one core.
pub const CPU_GOAL_PERCENT: f64 = 1.0;
/// The two runs: the RSS goal's rate, then the CPU goal's.
pub const RSS_RATE: f64 = 10.0;
pub const CPU_RATE: f64 = 1.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Module {
    Hub,
    Producer,
    Consumer,
}

impl Module {
    pub const ALL: [Module; 3] = [Module::Hub, Module::Producer, Module::Consumer];

    pub fn name(self) -> &'static str {
        match self {
            Module::Hub => "hub",
            Module::Producer => "producer",
            Module::Consumer => "consumer",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Options {
    pub binaries: Binaries,
    pub deployment: PathBuf,
    /// `(rate, duration)` in order; a zero duration skips the run.
    pub runs: Vec<(f64, Duration)>,
    pub sample_every: Duration,
    /// Scrape each module's /metrics this often (`None`: never).
    pub scrape_every: Option<Duration>,
    /// Extra env for every module (experiments such as MALLOC_ARENA_MAX).
    pub module_env: Vec<(String, String)>,
}

/// A started module: its process and where its logs go.
struct Proc {
    module: Module,
    child: Child,
    pid: u32,
    log: PathBuf,
}

fn spawn(
    binaries: &Binaries,
    module: Module,
    args: &[String],
    env: &BTreeMap<String, String>,
    dir: &Path,
) -> Result<Proc> {
    let log = dir.join(format!("{}.log", module.name()));
    let stderr = std::fs::File::create(&log)?;
    // The consumer's stdout is its JSON lines (read at the end); the others' goes to their log.
    let stdout = if module == Module::Consumer {
        std::fs::File::create(dir.join("consumer.out"))?
    } else {
        stderr.try_clone()?
    };
    let mut cmd = binaries.command(module);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .kill_on_drop(true);
    // The local-development identity, not a stray IoT Edge environment (as the launcher does).
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with(vars::IOTEDGE_PREFIX) {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env);
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", binaries.path(module).display()))?;
    let pid = child
        .id()
        .with_context(|| format!("{} has no pid", module.name()))?;
    Ok(Proc {
        module,
        child,
        pid,
        log,
    })
}

async fn wait_for_file(path: &Path, proc: &mut Proc) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if !text.trim().is_empty() {
                return Ok(text.trim().to_owned());
            }
        }
        if let Some(status) = proc.child.try_wait()? {
            bail!(
                "{} exited ({status}) while starting; see {}",
                proc.module.name(),
                proc.log.display()
            );
        }
        if Instant::now() > deadline {
            bail!("{} did not start within 30 s", proc.module.name());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SIGTERM, then SIGKILL after `grace`.
async fn stop(proc: &mut Proc, grace: Duration) {
    if matches!(proc.child.try_wait(), Ok(Some(_))) {
        return;
    }
    procstat::terminate(proc.pid);
    if tokio::time::timeout(grace, proc.child.wait())
        .await
        .is_err()
    {
        eprintln!(
            "footprint: {} did not stop within {grace:?}; killing it",
            proc.module.name()
        );
        let _ = proc.child.kill().await;
    }
}

/// One GET /metrics, as a Prometheus scrape; returns the body's size.
async fn scrape(addr: &str) -> Result<usize> {
    let within = Duration::from_secs(2);
    let mut s = tokio::time::timeout(within, tokio::net::TcpStream::connect(addr))
        .await
        .context("connect timed out")??;
    s.write_all(
        format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut buf = Vec::new();
    tokio::time::timeout(within, s.read_to_end(&mut buf))
        .await
        .context("read timed out")??;
    if !buf.starts_with(b"HTTP/1.1 200") {
        bail!("{addr}: not 200");
    }
    Ok(buf.len())
}

/// The consumer's whole-run JSON line (printed at exit), else the sum of its interval lines.
fn exchanges(out: &Path) -> Option<Exchanges> {
    let text = std::fs::read_to_string(out).ok()?;
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| l.trim_start().starts_with('{'))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let run: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|v| v.get("scope").and_then(|s| s.as_str()) == Some("run"))
        .collect();
    let chosen: Vec<&serde_json::Value> = if run.is_empty() {
        lines.iter().collect()
    } else {
        run
    };
    if chosen.is_empty() {
        return None;
    }
    let mut e = Exchanges::default();
    for v in chosen {
        let n = |kind: &str, key: &str| {
            v.pointer(&format!("/kinds/{kind}/{key}"))
                .and_then(|x| x.as_u64())
                .unwrap_or(0)
        };
        e.method += n("method", "count");
        e.message += n("message", "count");
        for kind in ["method", "message"] {
            e.timeouts += n(kind, "timeouts");
            e.errors += n(kind, "errors");
            e.skipped += n(kind, "skipped");
        }
    }
    Some(e)
}

/// Reads every process's /proc entry at `t_s`; a process that exited fails the run.
fn sample_all(procs: &mut [Proc; 3], samples: &mut [Vec<Sample>; 3], t_s: f64) -> Result<()> {
    for (p, series) in procs.iter_mut().zip(samples.iter_mut()) {
        if let Some(status) = p.child.try_wait()? {
            bail!(
                "{} exited ({status}) during the run; see {}",
                p.module.name(),
                p.log.display()
            );
        }
        if let Some(st) = procstat::status(p.pid) {
            series.push(Sample {
                t_s,
                status: st,
                cpu_ns: procstat::stat_ns(p.pid),
            });
        }
    }
    Ok(())
}

/// The latest VmRSS of each, for the progress line.
fn latest(samples: &[Vec<Sample>; 3]) -> String {
    let rss: Vec<String> = samples
        .iter()
        .zip(Module::ALL)
        .filter_map(|(s, m)| {
            s.last()
                .map(|s| format!("{} {} MiB", m.name(), mib(s.status.rss_kb)))
        })
        .collect();
    rss.join(", ")
}

/// One run at `rate` for `duration`: starts hub, producer and consumer, samples, stops them.
async fn run_one(opts: &Options, dir: &Path, rate: f64, duration: Duration) -> Result<RunReport> {
    let dir = dir.join(format!("rate-{rate}"));
    std::fs::create_dir_all(&dir)?;
    let deployment = edge::Deployment::read(&opts.deployment)?;
    let hub_state = dir.join("state").join("hub");
    std::fs::create_dir_all(&hub_state)?;
    let s = |v: &str| v.to_owned();
    let hub_args = [
        s("--deployment"),
        opts.deployment.display().to_string(),
        s("--bind"),
        s("127.0.0.1"),
        s("--hostname"),
        s("localhost"),
        s("--state-dir"),
        hub_state.display().to_string(),
        s("--mqtt-port"),
        s("0"),
        s("--https-port"),
        s("0"),
        s("--metrics-port"),
        s("0"),
    ];
    let extra: BTreeMap<String, String> = opts.module_env.iter().cloned().collect();
    let mut hub = spawn(&opts.binaries, Module::Hub, &hub_args, &extra, &dir)?;
    let endpoints_path = Endpoints::path(&hub_state);
    let endpoints = Endpoints::parse(&wait_for_file(&endpoints_path, &mut hub).await?)
        .with_context(|| format!("reading {}", endpoints_path.display()))?;
    let identities = IdentitiesFile::read(&endpoints.identities)?;
    let module_env = |m: Module| -> Result<BTreeMap<String, String>> {
        let mut env = deployment.local_module_env(m.name());
        env.extend(ModuleEnv::for_module(m.name(), &endpoints, &identities)?.vars());
        env.insert(vars::METRICS_ADDR.into(), "127.0.0.1:0".into());
        env.insert(
            vars::METRICS_ADDR_FILE.into(),
            dir.join(format!("{}.metrics", m.name()))
                .display()
                .to_string(),
        );
        if m == Module::Consumer {
            env.insert("EXCHANGE_RATE".into(), rate.to_string());
            env.insert("SUMMARY_FORMAT".into(), "json".into());
        }
        env.extend(extra.clone());
        Ok(env)
    };
    let mut producer = spawn(
        &opts.binaries,
        Module::Producer,
        &[],
        &module_env(Module::Producer)?,
        &dir,
    )?;
    let producer_metrics = wait_for_file(&dir.join("producer.metrics"), &mut producer).await?;
    let mut consumer = spawn(
        &opts.binaries,
        Module::Consumer,
        &[],
        &module_env(Module::Consumer)?,
        &dir,
    )?;
    let consumer_metrics = wait_for_file(&dir.join("consumer.metrics"), &mut consumer).await?;
    let metrics = [
        format!("127.0.0.1:{}", endpoints.metrics),
        producer_metrics,
        consumer_metrics,
    ];
    eprintln!(
        "footprint: --rate {rate} for {:.1} min: hub pid {}, producer pid {}, consumer pid {} (logs in {})",
        duration.as_secs_f64() / 60.0,
        hub.pid,
        producer.pid,
        consumer.pid,
        dir.display()
    );

    let mut procs = [hub, producer, consumer];
    let mut samples: [Vec<Sample>; 3] = Default::default();
    let start = Instant::now();
    let mut tick = tokio::time::interval(opts.sample_every);
    let mut scrape_tick =
        tokio::time::interval(opts.scrape_every.unwrap_or(Duration::from_secs(3600)));
    let (mut scrapes, mut scrape_errors) = (0u64, 0u64);
    let mut last_progress = Instant::now();
    let result: Result<()> = async {
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let t_s = start.elapsed().as_secs_f64();
                    sample_all(&mut procs, &mut samples, t_s)?;
                    if last_progress.elapsed() >= Duration::from_secs(60) {
                        last_progress = Instant::now();
                        eprintln!("footprint: --rate {rate} {t_s:.0}/{:.0} s: {}", duration.as_secs_f64(), latest(&samples));
                    }
                    if start.elapsed() >= duration {
                        return Ok(());
                    }
                }
                _ = scrape_tick.tick(), if opts.scrape_every.is_some() => {
                    for addr in &metrics {
                        scrapes += 1;
                        if scrape(addr).await.is_err() {
                            scrape_errors += 1;
                        }
                    }
                }
            }
        }
    }
    .await;
    let mappings: Vec<Vec<(String, u64)>> = procs
        .iter()
        .map(|p| procstat::rss_by_mapping(p.pid).unwrap_or_default())
        .collect();
    // Consumer first, so its last interval still sees the producer; then producer, then hub.
    for i in [2, 1, 0] {
        stop(&mut procs[i], Duration::from_secs(15)).await;
    }
    result?;
    let modules = procs
        .iter()
        .zip(samples)
        .zip(mappings)
        .map(|((p, s), m)| summarise(p.module, p.pid, opts.binaries.path(p.module), rate, s, m))
        .collect();
    Ok(RunReport {
        rate,
        seconds: start.elapsed().as_secs_f64(),
        sample_seconds: opts.sample_every.as_secs_f64(),
        scrape_seconds: opts.scrape_every.map(|d| d.as_secs_f64()),
        scrapes,
        scrape_errors,
        exchanges: exchanges(&dir.join("consumer.out")),
        modules,
    })
}

pub async fn run(opts: &Options, dir: &Path) -> Result<Report> {
    let mut runs = Vec::new();
    for &(rate, duration) in &opts.runs {
        if duration.is_zero() {
            continue;
        }
        let r = run_one(opts, dir, rate, duration)
            .await
            .with_context(|| format!("the footprint run at --rate {rate}"))?;
        print_run(&r);
        runs.push(r);
        // Let the ports and the machine settle between runs.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Ok(Report {
        binaries: opts.binaries.describe(),
        binary_paths: Module::ALL
            .iter()
            .map(|&m| (m.name(), opts.binaries.path(m)))
            .collect(),
        clock_ticks_per_second: procstat::clock_ticks(),
        cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        goals: Goals {
            rss_mib_at_rate_10: RSS_GOAL_MIB,
            flat_kb_per_min: FLAT_KB_PER_MIN,
            cpu_percent_at_rate_1: CPU_GOAL_PERCENT,
        },
        runs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn this_process_has_a_status() {
        let st = procstat::status(std::process::id()).unwrap_or_default();
        assert!(st.rss_kb > 0 && st.threads >= 1, "{st:?}");
        assert!(st.anon_kb + st.file_kb + st.shmem_kb <= st.rss_kb + 4);
    }
}
