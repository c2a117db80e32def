//! What the integration tests share: real processes (the hub, the modules, Python SDK clients)
//! on real sockets, stopped when the test ends; one Prometheus text reader; headless Chromium.

use edge::contract::{vars, Endpoints, IdentitiesFile, ModuleEnv};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod browser;
pub use browser::{Browser, PageVisit};

/// The launcher binary `method-vs-message`, built by cargo beside the running test binary
/// (`target/<profile>/deps/<test>` → `target/<profile>/method-vs-message`).
pub fn bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in target/<profile>/deps");
    let bin = profile_dir.join("method-vs-message");
    assert!(
        bin.is_file(),
        "{} is missing: integration tests of the root package build it",
        bin.display()
    );
    bin
}

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("test-support lives in the repository")
        .to_path_buf()
}

/// The virtualenv the test command creates; a missing one fails the test (never skips it).
pub fn python() -> PathBuf {
    let p = repo().join(".venv/bin/python");
    assert!(p.exists(), "{} is missing: run scripts/test.sh (it creates the virtualenv with the pinned Azure IoT SDK)", p.display());
    p
}

pub fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mvm-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Serialises the tests that need fixed ports (8883/443, as the Python SDK requires, or the
/// local run's defaults) across test binaries. The lock is held, never read, until the guard drops.
pub struct FixedPorts(#[allow(dead_code)] nix::fcntl::Flock<std::fs::File>);

impl FixedPorts {
    pub fn lock() -> Self {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(std::env::temp_dir().join("mvm-fixed-ports.lock"))
            .unwrap();
        // Blocking exclusive lock, released when the guard drops.
        FixedPorts(
            nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
                .map_err(|(_, e)| e)
                .unwrap(),
        )
    }
}

/// A child process killed (and reaped) on drop; its output is captured line by line.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub out: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Only what the test sets: no stray IoT Edge or OTLP settings from the environment.
        let explicit: Vec<String> = cmd
            .get_envs()
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        for (k, _) in std::env::vars() {
            if (k.starts_with(vars::IOTEDGE_PREFIX) || k.starts_with("OTEL_"))
                && !explicit.contains(&k)
            {
                cmd.env_remove(k);
            }
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let out = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let out = out.clone();
            let name = name.to_owned();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if std::env::var_os("TEST_VERBOSE").is_some() {
                        eprintln!("[{name}] {line}");
                    }
                    out.lock().unwrap().push(line);
                }
            });
        }
        Proc {
            name: name.to_owned(),
            child,
            out,
        }
    }

    pub fn output(&self) -> String {
        self.out.lock().unwrap().join("\n")
    }

    /// Waits until a line satisfies `pred`; panics with the output after `within`.
    pub fn wait_for_line(&mut self, within: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(l) = self.out.lock().unwrap().iter().find(|l| pred(l)) {
                return l.clone();
            }
            if let Ok(Some(s)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(200));
                panic!(
                    "{} exited ({s}) before the expected line:\n{}",
                    self.name,
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{}: expected line not seen within {within:?}:\n{}",
                self.name,
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the process has written `path` (non-empty) and returns its content; panics with
    /// the output if the process exits first or after `within`.
    pub fn wait_for_file(&mut self, path: &Path, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(text) = std::fs::read_to_string(path).ok().filter(|t| !t.is_empty()) {
                return text;
            }
            if let Ok(Some(s)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(200));
                panic!("{} exited ({s}):\n{}", self.name, self.output());
            }
            assert!(
                Instant::now() < deadline,
                "{} wrote no {} within {within:?}:\n{}",
                self.name,
                path.display(),
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the process to exit, killing it after `within`.
    pub fn wait(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(200)); // let the reader threads drain
                return s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "{} did not exit within {within:?}:\n{}",
                    self.name,
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status();
    }

    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        self.wait(Duration::from_secs(15))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A hub process and what it wrote about itself.
pub struct Hub {
    pub proc: Proc,
    pub state: PathBuf,
    pub mqtt: u16,
    pub https: u16,
    pub plain_mqtt: Option<u16>,
    pub metrics: u16,
    pub ca: PathBuf,
    pub identities: IdentitiesFile,
}

impl Hub {
    /// Starts `method-vs-message hub` on 127.0.0.1 with `manifest`; ports given as 0 are chosen freely.
    pub fn start(name: &str, manifest: &Path, mqtt: u16, https: u16, extra: &[&str]) -> Hub {
        Self::start_in(tempdir(name), manifest, mqtt, https, extra)
    }

    /// Starts a hub on an existing state directory (a restart keeps its CA and keys).
    pub fn start_in(state: PathBuf, manifest: &Path, mqtt: u16, https: u16, extra: &[&str]) -> Hub {
        let endpoints = Endpoints::path(&state);
        let _ = std::fs::remove_file(&endpoints);
        let mut cmd = Command::new(bin());
        cmd.args([
            "hub",
            "--bind",
            "127.0.0.1",
            "--hostname",
            "localhost",
            "--metrics-port",
            "0",
        ])
        .arg("--deployment")
        .arg(manifest)
        .arg("--state-dir")
        .arg(&state)
        .args([
            "--mqtt-port",
            &mqtt.to_string(),
            "--https-port",
            &https.to_string(),
        ])
        .args(extra);
        let mut proc = Proc::spawn("hub", cmd);
        let text = proc.wait_for_file(&endpoints, Duration::from_secs(20));
        let e = Endpoints::parse(&text)
            .unwrap_or_else(|err| panic!("{}: {err}: {text}", endpoints.display()));
        let identities = IdentitiesFile::read(&e.identities).unwrap_or_else(|err| panic!("{err}"));
        Hub {
            mqtt: e.mqtt,
            https: e.https,
            plain_mqtt: e.plain_mqtt,
            metrics: e.metrics,
            ca: e.ca,
            identities,
            state,
            proc,
        }
    }

    pub fn key(&self, module: &str) -> String {
        self.identities
            .modules
            .get(module)
            .unwrap_or_else(|| panic!("no identity for {module}"))
            .primary_key
            .clone()
    }

    /// The identity `module` connects with to this hub (its key, the hub's CA and ports).
    pub fn identity(&self, module: &str) -> Arc<edge::ModuleIdentity> {
        use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
        let key = BASE64
            .decode(self.key(module))
            .unwrap_or_else(|e| panic!("the key of {module} is not base64: {e}"));
        let mut id = edge::ModuleIdentity::with_key(
            &self.iothub(),
            "localhost",
            &self.device(),
            module,
            key,
            self.ca.clone(),
        );
        id.mqtt_port = self.mqtt;
        id.https_port = self.https;
        Arc::new(id)
    }

    pub fn device(&self) -> String {
        self.identities.device_id.clone()
    }

    pub fn iothub(&self) -> String {
        self.identities.iothub_hostname.clone()
    }

    pub fn connection_string(&self, module: &str) -> String {
        self.identities
            .connection_string(module)
            .unwrap_or_else(|e| panic!("{e}"))
            .to_string()
    }

    /// The environment a module process gets in the local-development mode.
    pub fn module_env(&self, module: &str) -> BTreeMap<String, String> {
        let mut env = ModuleEnv {
            connection_string: self
                .identities
                .connection_string(module)
                .unwrap_or_else(|e| panic!("{e}")),
            ca_file: self.ca.clone(),
            mqtt_port: self.mqtt,
            https_port: self.https,
        }
        .vars();
        env.insert(vars::METRICS_ADDR.into(), "127.0.0.1:0".into());
        env
    }

    pub fn metrics_text(&self) -> String {
        http_get(
            &format!("127.0.0.1:{}", self.metrics),
            "/metrics",
            "text/plain",
        )
    }
}

/// A bare HTTP/1.0 GET (no client library needed for our own /metrics).
pub fn http_get(addr: &str, path: &str, accept: &str) -> String {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: {accept}\r\n\r\n"
    )
    .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or(body)
}

/// Parses the consumer's JSON summary lines seen so far.
pub fn summaries(p: &Proc) -> Vec<serde_json::Value> {
    p.out
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with('{') && l.contains("\"kinds\""))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Waits until a JSON summary satisfies `pred`.
pub fn wait_for_summary(
    p: &mut Proc,
    within: Duration,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        if let Some(s) = summaries(p).into_iter().find(|s| pred(s)) {
            return s;
        }
        if let Ok(Some(st)) = p.child.try_wait() {
            std::thread::sleep(Duration::from_millis(200));
            panic!("{} exited ({st}):\n{}", p.name, p.output());
        }
        assert!(
            Instant::now() < deadline,
            "{}: no matching summary within {within:?}:\n{}",
            p.name,
            p.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn count(s: &serde_json::Value, kind: &str, field: &str) -> u64 {
    s["kinds"][kind][field].as_u64().unwrap_or(0)
}

/// `method-vs-message <args>` (the local run, as `cargo run --release -- <args>`) from the
/// repository root with its state in `state` and every port chosen freely, so that no
/// [`FixedPorts`] lock is needed.
pub fn local_run_command(state: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.current_dir(repo())
        .args(args)
        .args(edge::contract::LOCAL_RUN_FREE_PORTS)
        .arg("--state-dir")
        .arg(state);
    cmd
}

/// Starts a module (`producer` or `consumer`) with `env`.
pub fn module(name: &str, env: &BTreeMap<String, String>) -> Proc {
    let mut cmd = Command::new(bin());
    cmd.arg(name).envs(env);
    Proc::spawn(name, cmd)
}

/// The samples of metric `name` (the exact name) in a Prometheus text or OpenMetrics exposition
/// whose label text contains every one of `labels` (such as `kind="method"`), summed; `None` when
/// no series matches. The value is the first field after the labels, so an OpenMetrics exemplar
/// after it (`# {trace_id="…"} 1.0`) is never read as the value.
pub fn metric_sum(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let mut sum = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (label_text, value) = match rest.strip_prefix('{') {
            Some(r) => match r.split_once("} ") {
                Some(split) => split,
                None => continue,
            },
            None => match rest.strip_prefix(' ') {
                Some(v) => ("", v),
                None => continue, // a longer name with this one as its prefix
            },
        };
        if !labels.iter().all(|want| label_text.contains(want)) {
            continue;
        }
        if let Some(v) = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        {
            sum = Some(sum.unwrap_or(0.0) + v);
        }
    }
    sum
}

/// [`metric_sum`], 0 when no series matches.
pub fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    metric_sum(text, name, labels).unwrap_or(0.0)
}

/// The deployment manifest of the seed's two modules and routes.
pub fn seed_manifest() -> PathBuf {
    repo().join("tests/fixtures/seed-deployment.json")
}

/// A free TCP port on 127.0.0.1 (bound to :0 and released).
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `name` from PATH; a missing program fails the test (never skips it).
pub fn require_program(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!("`{name}` is not installed: run scripts/setup-test-env.sh (Debian packages)")
        })
}

/// Runs a command to completion: (success, stdout + stderr).
pub fn run_capture(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A bare HTTP/1.0 GET that returns None when nothing listens yet (for readiness polls).
pub fn try_http_get(addr: &str, path: &str) -> Option<String> {
    std::net::TcpStream::connect(addr).ok()?;
    std::panic::catch_unwind(|| http_get(addr, path, "*/*")).ok()
}

/// Percent-encodes a query-string value.
pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// GET on a Prometheus HTTP API path of 127.0.0.1:`port`, parsed as JSON.
pub fn prometheus_api(port: u16, path: &str, params: &[(&str, &str)]) -> serde_json::Value {
    let qs: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", url_encode(v)))
        .collect();
    let body = http_get(
        &format!("127.0.0.1:{port}"),
        &format!("{path}?{}", qs.join("&")),
        "application/json",
    );
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// Waits until a Prometheus process answers /-/ready; panics with its output otherwise.
pub fn wait_prometheus_ready(p: &mut Proc, port: u16, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        if try_http_get(&format!("127.0.0.1:{port}"), "/-/ready")
            .is_some_and(|b| b.contains("Ready"))
        {
            return;
        }
        if let Ok(Some(s)) = p.child.try_wait() {
            std::thread::sleep(Duration::from_millis(200));
            panic!("{} exited ({s}):\n{}", p.name, p.output());
        }
        assert!(
            Instant::now() < deadline,
            "{} not ready within {within:?}:\n{}",
            p.name,
            p.output()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
