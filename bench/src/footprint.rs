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
use tokio::process::{Child, Command};

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

/// What runs the three processes.
#[derive(Clone, Debug)]
pub enum Binaries {
    /// `DIR/hub`, `DIR/producer`, `DIR/consumer`: the images' binaries.
    Standalone(PathBuf),
    /// `method-vs-message hub|producer|consumer`: one big binary, as `cargo run --release` runs.
    Launcher(PathBuf),
}

impl Binaries {
    pub fn path(&self, m: Module) -> PathBuf {
        match self {
            Binaries::Standalone(dir) => dir.join(m.name()),
            Binaries::Launcher(bin) => bin.clone(),
        }
    }

    fn command(&self, m: Module) -> Command {
        let mut cmd = Command::new(self.path(m));
        if let Binaries::Launcher(_) = self {
            cmd.arg(m.name());
        }
        cmd
    }

    pub fn describe(&self) -> String {
        let one = |m: Module| {
            let path = self.path(m);
            let size = std::fs::metadata(&path)
                .map(|md| format!("{:.1} MB", md.len() as f64 / 1e6))
                .unwrap_or_else(|_| "?".into());
            let kind = match elf_symbols(&path) {
                Some(false) => ", stripped",
                Some(true) => ", with symbols",
                None => ", not an ELF file",
            };
            format!("{} {size}{kind}", m.name())
        };
        match self {
            Binaries::Standalone(dir) => format!(
                "standalone binaries in {} ({}; {}; {})",
                dir.display(),
                one(Module::Hub),
                one(Module::Producer),
                one(Module::Consumer)
            ),
            Binaries::Launcher(bin) => format!(
                "the launcher {} ({}) as `hub|producer|consumer` subcommands (not as on a device)",
                bin.display(),
                one(Module::Hub)
            ),
        }
    }

    /// `--binaries` as given: a directory with the three binaries, or the launcher binary.
    pub fn from_arg(path: &Path) -> Result<Self> {
        if path.is_dir() {
            let b = Binaries::Standalone(path.to_owned());
            for m in Module::ALL {
                if !b.path(m).is_file() {
                    bail!(
                        "{} has no {} binary (build them with `cargo build --profile dist -p hub -p producer -p consumer`)",
                        path.display(),
                        m.name()
                    );
                }
            }
            Ok(b)
        } else if path.is_file() {
            Ok(Binaries::Launcher(path.to_owned()))
        } else {
            bail!("--binaries {}: no such directory or file", path.display())
        }
    }

    /// The images' binaries if built (target/dist), else the standalone ones next to this binary
    /// (target/release), else the launcher there.
    pub fn find() -> Result<Self> {
        let exe_dir = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("target/release"));
        let mut dirs = Vec::new();
        if let Some(target) = exe_dir.parent() {
            dirs.push(target.join("dist"));
        }
        dirs.push(exe_dir.clone());
        for dir in dirs {
            if Module::ALL.iter().all(|m| dir.join(m.name()).is_file()) {
                return Ok(Binaries::Standalone(dir));
            }
        }
        let launcher = crate::launcher::default_launcher();
        if launcher.is_file() {
            return Ok(Binaries::Launcher(launcher));
        }
        bail!(
            "no hub/producer/consumer binaries in target/dist or {}: build them with `cargo build --profile dist -p hub -p producer -p consumer` (as the Dockerfile does) or pass --binaries",
            exe_dir.display()
        )
    }
}

/// Whether an ELF64 little-endian file has a symbol table (`SHT_SYMTAB`): `Some(false)` for a
/// stripped binary (the images' profile dist), `None` when it is not such a file (a script).
fn elf_symbols(path: &Path) -> Option<bool> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path).ok()?;
    let mut h = [0u8; 64];
    f.read_exact_at(&mut h, 0).ok()?;
    // Magic, ELFCLASS64, ELFDATA2LSB.
    if h[..4] != *b"\x7fELF" || h[4] != 2 || h[5] != 1 {
        return None;
    }
    let shoff = u64::from_le_bytes(h[0x28..0x30].try_into().ok()?);
    let shentsize = u64::from(u16::from_le_bytes([h[0x3a], h[0x3b]]));
    let shnum = u64::from(u16::from_le_bytes([h[0x3c], h[0x3d]]));
    let mut sh = [0u8; 8];
    for i in 0..shnum {
        f.read_exact_at(&mut sh, shoff + i * shentsize).ok()?;
        if u32::from_le_bytes([sh[4], sh[5], sh[6], sh[7]]) == 2 {
            return Some(true);
        }
    }
    Some(false)
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

/// One reading of one process.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Sample {
    /// Seconds since the run's first sample.
    pub t_s: f64,
    #[serde(flatten)]
    pub status: Status,
    /// utime + stime so far, ns.
    pub cpu_ns: Option<u64>,
}

#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Range {
    pub first: u64,
    pub min: u64,
    pub max: u64,
    pub last: u64,
}

impl Range {
    fn of(values: impl Iterator<Item = u64>) -> Option<Self> {
        let mut r: Option<Range> = None;
        for v in values {
            r = Some(match r {
                None => Range {
                    first: v,
                    min: v,
                    max: v,
                    last: v,
                },
                Some(r) => Range {
                    first: r.first,
                    min: r.min.min(v),
                    max: r.max.max(v),
                    last: v,
                },
            });
        }
        r
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ModuleReport {
    pub module: Module,
    pub pid: u32,
    pub binary: PathBuf,
    /// VmRSS, RssAnon and RssFile in KiB.
    pub rss_kb: Range,
    pub anon_kb: Range,
    pub file_kb: Range,
    pub threads_max: u64,
    /// Least-squares slope of VmRSS over the run's second half, KB (KiB) per minute.
    pub rss_slope_kb_per_min: Option<f64>,
    /// The same for RssAnon (the heap: what a leak would move).
    pub anon_slope_kb_per_min: Option<f64>,
    /// `|rss_slope| <= FLAT_KB_PER_MIN`.
    pub flat: Option<bool>,
    /// CPU (utime + stime) from the first sample to the last, % of one core.
    pub cpu_percent: Option<f64>,
    /// The same over the second half only.
    pub cpu_percent_second_half: Option<f64>,
    /// At `--rate 10`: max VmRSS <= 12 MiB and flat.
    pub rss_goal_met: Option<bool>,
    /// At `--rate 1`: CPU <= 1 % of a core.
    pub cpu_goal_met: Option<bool>,
    /// At the end of the run: resident KiB per mapping (file path, `[heap]`, `[anon]`, …).
    pub rss_by_mapping_kb: Vec<(String, u64)>,
    pub samples: Vec<Sample>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Exchanges {
    pub method: u64,
    pub message: u64,
    pub timeouts: u64,
    pub errors: u64,
    pub skipped: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub rate: f64,
    pub seconds: f64,
    pub sample_seconds: f64,
    pub scrape_seconds: Option<f64>,
    pub scrapes: u64,
    pub scrape_errors: u64,
    /// From the consumer's whole-run JSON line at exit.
    pub exchanges: Option<Exchanges>,
    pub modules: Vec<ModuleReport>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Goals {
    pub rss_mib_at_rate_10: f64,
    pub flat_kb_per_min: f64,
    pub cpu_percent_at_rate_1: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Which binaries were measured, in words.
    pub binaries: String,
    pub binary_paths: BTreeMap<&'static str, PathBuf>,
    pub clock_ticks_per_second: u64,
    pub cores: usize,
    pub goals: Goals,
    pub runs: Vec<RunReport>,
}

/// Least-squares slope of `(seconds, KiB)` in KiB per minute.
fn slope_per_min(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 3 {
        return None;
    }
    let (mx, my) = points
        .iter()
        .fold((0.0, 0.0), |(x, y), p| (x + p.0 / n, y + p.1 / n));
    let (sxy, sxx) = points.iter().fold((0.0, 0.0), |(sxy, sxx), p| {
        (sxy + (p.0 - mx) * (p.1 - my), sxx + (p.0 - mx) * (p.0 - mx))
    });
    (sxx > 0.0).then(|| sxy / sxx * 60.0)
}

fn cpu_percent(samples: &[&Sample]) -> Option<f64> {
    let (a, b) = (samples.first()?, samples.last()?);
    let dt = b.t_s - a.t_s;
    let cpu = b.cpu_ns?.checked_sub(a.cpu_ns?)?;
    (dt > 0.0).then(|| cpu as f64 / 1e9 / dt * 100.0)
}

fn summarise(
    module: Module,
    pid: u32,
    binary: PathBuf,
    rate: f64,
    samples: Vec<Sample>,
    rss_by_mapping_kb: Vec<(String, u64)>,
) -> ModuleReport {
    let end = samples.last().map(|s| s.t_s).unwrap_or(0.0);
    let second_half: Vec<&Sample> = samples.iter().filter(|s| s.t_s >= end / 2.0).collect();
    let slope = |f: fn(&Status) -> u64| {
        let points: Vec<(f64, f64)> = second_half
            .iter()
            .map(|s| (s.t_s, f(&s.status) as f64))
            .collect();
        slope_per_min(&points)
    };
    let rss_slope = slope(|s| s.rss_kb);
    let flat = rss_slope.map(|s| s.abs() <= FLAT_KB_PER_MIN);
    let rss_kb = Range::of(samples.iter().map(|s| s.status.rss_kb)).unwrap_or_default();
    let all: Vec<&Sample> = samples.iter().collect();
    let cpu = cpu_percent(&all);
    ModuleReport {
        module,
        pid,
        binary,
        rss_kb,
        anon_kb: Range::of(samples.iter().map(|s| s.status.anon_kb)).unwrap_or_default(),
        file_kb: Range::of(samples.iter().map(|s| s.status.file_kb)).unwrap_or_default(),
        threads_max: samples.iter().map(|s| s.status.threads).max().unwrap_or(0),
        rss_slope_kb_per_min: rss_slope,
        anon_slope_kb_per_min: slope(|s| s.anon_kb),
        flat,
        cpu_percent: cpu,
        cpu_percent_second_half: cpu_percent(&second_half),
        rss_goal_met: (rate == RSS_RATE)
            .then(|| rss_kb.max as f64 / 1024.0 <= RSS_GOAL_MIB && flat == Some(true)),
        cpu_goal_met: (rate == CPU_RATE).then(|| cpu.is_some_and(|c| c <= CPU_GOAL_PERCENT)),
        rss_by_mapping_kb,
        samples,
    }
}

/// The `env` a manifest gives a module, minus what a local run sets itself (as the launcher's).
fn manifest_env(manifest: &serde_json::Value, module: &str) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let pointer = format!("/modulesContent/$edgeAgent/properties.desired/modules/{module}/env");
    if let Some(declared) = manifest.pointer(&pointer).and_then(|v| v.as_object()) {
        for (k, v) in declared {
            if k == vars::METRICS_ADDR || k.starts_with("OTEL_EXPORTER_OTLP") {
                continue;
            }
            if let Some(value) = v.get("value") {
                let value = value
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| value.to_string());
                env.insert(k.clone(), value);
            }
        }
    }
    env
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
    let text = std::fs::read_to_string(&opts.deployment)
        .with_context(|| format!("reading {}", opts.deployment.display()))?;
    let manifest: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", opts.deployment.display()))?;
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
        let mut env = manifest_env(&manifest, m.name());
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

fn mib(kb: u64) -> String {
    format!("{:.2}", kb as f64 / 1024.0)
}

fn opt(v: Option<f64>, prec: usize, signed: bool) -> String {
    match v {
        Some(v) if v.is_finite() && signed => format!("{v:+.prec$}"),
        Some(v) if v.is_finite() => format!("{v:.prec$}"),
        _ => "-".into(),
    }
}

fn verdict(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "pass",
        Some(false) => "FAIL",
        None => "",
    }
}

pub fn print_run(r: &RunReport) {
    println!();
    let ex = match &r.exchanges {
        Some(e) => format!(
            "; exchanges: method {}, message {}, timeouts {}, errors {}, skipped {}",
            e.method, e.message, e.timeouts, e.errors, e.skipped
        ),
        None => "; the consumer printed no summary".into(),
    };
    let scraped = match r.scrape_seconds {
        Some(s) => format!(
            "/metrics of each scraped every {s} s ({} errors of {})",
            r.scrape_errors, r.scrapes
        ),
        None => "/metrics not scraped".into(),
    };
    println!(
        "Footprint at --rate {} for {:.1} min: /proc read every {} s; {scraped}{ex}",
        r.rate,
        r.seconds / 60.0,
        r.sample_seconds
    );
    println!(
        "{:<9} {:>27} {:>17} {:>8} {:>21} {:>4} {:>11}  goal",
        "module",
        "VmRSS MiB first/min/max/last",
        "anon/file MiB last",
        "anon max",
        "trend KB/min RSS (anon)",
        "thr",
        "CPU % core"
    );
    for m in &r.modules {
        let goal = match (m.rss_goal_met, m.cpu_goal_met) {
            (Some(g), _) => format!("RSS <= {RSS_GOAL_MIB} MiB and flat: {}", verdict(Some(g))),
            (_, Some(g)) => format!("CPU <= {CPU_GOAL_PERCENT} %: {}", verdict(Some(g))),
            _ => String::new(),
        };
        let trend = format!(
            "{} {} ({})",
            opt(m.rss_slope_kb_per_min, 1, true),
            match m.flat {
                Some(true) => "flat",
                Some(false) => "GROWS",
                None => "?",
            },
            opt(m.anon_slope_kb_per_min, 1, true)
        );
        println!(
            "{:<9} {:>27} {:>17} {:>8} {:>21} {:>4} {:>11}  {goal}",
            m.module.name(),
            format!(
                "{}/{}/{}/{}",
                mib(m.rss_kb.first),
                mib(m.rss_kb.min),
                mib(m.rss_kb.max),
                mib(m.rss_kb.last)
            ),
            format!("{}/{}", mib(m.anon_kb.last), mib(m.file_kb.last)),
            mib(m.anon_kb.max),
            trend,
            m.threads_max,
            opt(m.cpu_percent, 3, false),
        );
    }
    println!("RSS by mapping at the end (MiB; file-backed pages by file, then [heap], [anon], …):");
    for m in &r.modules {
        let parts: Vec<String> = m
            .rss_by_mapping_kb
            .iter()
            .take(6)
            .map(|(name, kb)| {
                let short = Path::new(name)
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .filter(|_| !name.starts_with('['))
                    .unwrap_or_else(|| name.clone());
                format!("{short} {}", mib(*kb))
            })
            .collect();
        println!("  {:<9} {}", m.module.name(), parts.join(", "));
    }
}

pub fn print_notes(report: &Report) {
    println!(
        "\nMeasured: {}.\n\
         VmRSS = RssAnon (heap, stacks) + RssFile (mapped binary and libraries) + RssShmem, from\n\
         /proc/<pid>/status; MiB = 2^20 bytes, KB = KiB. Trend: least-squares slope of VmRSS (RssAnon in\n\
         parentheses) over the run's second half; flat when within ±{FLAT_KB_PER_MIN} KB/min (about\n\
         14 MB a day). CPU: utime + stime from /proc/<pid>/stat ({} ticks/s, sysconf) from the first\n\
         sample (all three up) to the last, as % of one core ({} cores here). thr: most threads seen.\n\
         Goals (issue 18): at --rate {RSS_RATE} each module's RSS <= {RSS_GOAL_MIB} MiB (its max) and flat;\n\
         at --rate {CPU_RATE} each module's CPU <= {CPU_GOAL_PERCENT} % of a core. The hub is the local edgeHub\n\
         stand-in (on a device: Microsoft's edgeHub); its goals are shown for comparison.",
        report.binaries,
        report.clock_ticks_per_second,
        report.cores
    );
    let mut lines = Vec::new();
    for r in &report.runs {
        for m in &r.modules {
            if let Some(g) = m.rss_goal_met {
                lines.push(format!(
                    "  --rate {:<3} {:<9} RSS max {} MiB ({}), trend {} KB/min: {}",
                    r.rate,
                    m.module.name(),
                    mib(m.rss_kb.max),
                    if m.rss_kb.max as f64 / 1024.0 <= RSS_GOAL_MIB {
                        format!("<= {RSS_GOAL_MIB}")
                    } else {
                        format!("> {RSS_GOAL_MIB}")
                    },
                    opt(m.rss_slope_kb_per_min, 1, true),
                    verdict(Some(g))
                ));
            }
            if let Some(g) = m.cpu_goal_met {
                lines.push(format!(
                    "  --rate {:<3} {:<9} CPU {} % of a core (goal <= {CPU_GOAL_PERCENT} %): {}",
                    r.rate,
                    m.module.name(),
                    opt(m.cpu_percent, 3, false),
                    verdict(Some(g))
                ));
            }
        }
    }
    if !lines.is_empty() {
        println!("Goals:\n{}", lines.join("\n"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_is_per_minute() {
        let pts: Vec<(f64, f64)> = (0..10)
            .map(|i| (i as f64 * 6.0, 100.0 + i as f64))
            .collect();
        let s = slope_per_min(&pts).unwrap_or(f64::NAN);
        assert!((s - 10.0).abs() < 1e-9, "{s}");
        assert_eq!(slope_per_min(&pts[..2]), None);
    }

    #[test]
    fn range_and_cpu() {
        let r = Range::of([5, 3, 9, 4].into_iter()).unwrap_or_default();
        assert_eq!((r.first, r.min, r.max, r.last), (5, 3, 9, 4));
        let s = |t_s: f64, cpu: u64| Sample {
            t_s,
            status: Status::default(),
            cpu_ns: Some(cpu),
        };
        let (a, b) = (s(0.0, 0), s(100.0, 1_000_000_000));
        assert_eq!(cpu_percent(&[&a, &b]), Some(1.0));
    }

    #[test]
    fn elf_symbols_tells_a_script_from_a_binary() {
        let exe = std::env::current_exe().unwrap_or_default();
        assert!(elf_symbols(&exe).is_some(), "{}", exe.display());
        let script = std::env::temp_dir().join(format!("footprint-{}.sh", std::process::id()));
        std::fs::write(&script, "#!/bin/sh\n").unwrap_or_default();
        assert_eq!(elf_symbols(&script), None);
        let _ = std::fs::remove_file(&script);
    }

    #[test]
    fn this_process_has_a_status() {
        let st = procstat::status(std::process::id()).unwrap_or_default();
        assert!(st.rss_kb > 0 && st.threads >= 1, "{st:?}");
        assert!(st.anon_kb + st.file_kb + st.shmem_kb <= st.rss_kb + 4);
    }
}
