//! Shared by the integration tests: real processes (the hub, the modules, Python SDK clients)
//! on real sockets, stopped when the test ends.
#![allow(dead_code)]

use edge::contract::{vars, Endpoints, IdentitiesFile, ModuleEnv};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_method-vs-message")
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
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
/// local run's defaults) across test binaries.
pub struct FixedPorts(nix::fcntl::Flock<std::fs::File>);

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
        let deadline = Instant::now() + Duration::from_secs(20);
        let text = loop {
            if let Ok(t) = std::fs::read_to_string(&endpoints) {
                break t;
            }
            if let Ok(Some(s)) = proc.child.try_wait() {
                std::thread::sleep(Duration::from_millis(200));
                panic!("hub exited ({s}):\n{}", proc.output());
            }
            assert!(
                Instant::now() < deadline,
                "hub did not start:\n{}",
                proc.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
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

/// Headless Chromium (Debian's `chromium`) driven over the DevTools protocol on a pipe
/// (`--remote-debugging-pipe`: commands in on fd 3, replies and events out on fd 4, each one JSON
/// object ended by a NUL byte). No port and no WebSocket client: `sh` puts the child's stdin and
/// stdout pipes on fds 3 and 4 before it execs Chromium. A missing `chromium` fails the test.
pub struct Browser {
    child: Child,
    input: std::process::ChildStdin,
    messages: std::sync::mpsc::Receiver<serde_json::Value>,
    /// Events received while waiting for something else, oldest first.
    events: Vec<serde_json::Value>,
    next_id: u64,
    log: Arc<Mutex<Vec<String>>>,
    profile: PathBuf,
}

/// What a page did in the browser: every request it made, every console error or uncaught
/// exception, its rendered DOM, what a script found in it, and a screenshot.
pub struct PageVisit {
    pub requests: Vec<String>,
    pub errors: Vec<String>,
    pub dom: String,
    pub probe: serde_json::Value,
    pub png: Vec<u8>,
}

impl Browser {
    pub fn launch(name: &str, width: u32, height: u32) -> Browser {
        let chromium = require_program("chromium");
        let profile = tempdir(&format!("chromium-{name}"));
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(r#"exec 3<&0 4>&1 0</dev/null 1>&2; exec "$0" "$@""#)
            .arg(&chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!("--window-size={width},{height}"))
            .arg("about:blank")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting chromium: {e}"));
        let input = child.stdin.take().unwrap();
        let mut output = BufReader::new(child.stdout.take().unwrap());
        let (tx, messages) = std::sync::mpsc::channel();
        std::thread::spawn(move || loop {
            let mut buf = Vec::new();
            match output.read_until(0, &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if buf.last() == Some(&0) {
                        buf.pop();
                    }
                    match serde_json::from_slice(&buf) {
                        Ok(v) => {
                            if tx.send(v).is_err() {
                                return;
                            }
                        }
                        Err(e) => eprintln!("chromium: unparsable message ({e})"),
                    }
                }
            }
        });
        let log = Arc::new(Mutex::new(Vec::new()));
        if let Some(err) = child.stderr.take() {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    log.lock().unwrap().push(line);
                }
            });
        }
        Browser {
            child,
            input,
            messages,
            events: Vec::new(),
            next_id: 0,
            log,
            profile,
        }
    }

    fn stderr(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Sends a command (to a page's session, or the browser) and waits for its result.
    pub fn call(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: serde_json::Value,
    ) -> serde_json::Value {
        use std::io::Write;
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = serde_json::json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = s.into();
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        if let Err(e) = self
            .input
            .write_all(&bytes)
            .and_then(|_| self.input.flush())
        {
            panic!("chromium: writing {method}: {e}\n{}", self.stderr());
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.messages.recv_timeout(left) {
                Ok(m) if m["id"].as_u64() == Some(id) => {
                    if let Some(e) = m.get("error") {
                        panic!("chromium: {method} failed: {e}");
                    }
                    return m["result"].clone();
                }
                Ok(m) => self.events.push(m),
                Err(e) => panic!("chromium: no answer to {method} ({e})\n{}", self.stderr()),
            }
        }
    }

    /// Waits for an event of `session`, keeping every event seen.
    fn wait_event(&mut self, session: &str, method: &str, within: Duration) {
        let seen = |e: &serde_json::Value| e["method"] == method && e["sessionId"] == session;
        if self.events.iter().any(seen) {
            return;
        }
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.messages.recv_timeout(left) {
                Ok(m) => {
                    let hit = seen(&m);
                    self.events.push(m);
                    if hit {
                        return;
                    }
                }
                Err(e) => panic!(
                    "chromium: no {method} within {within:?} ({e})\n{}",
                    self.stderr()
                ),
            }
        }
    }

    /// Keeps the events that arrive within `d`.
    fn drain(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        while let Ok(m) = self
            .messages
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.events.push(m);
        }
    }

    /// Opens `url` in a new tab of `width`×`height`, waits for its load event (and a second for
    /// anything late), runs `probe` (a JavaScript expression whose value is returned as JSON),
    /// and takes a screenshot of the viewport.
    pub fn visit(&mut self, url: &str, width: u32, height: u32, probe: &str) -> PageVisit {
        let target = self.call(
            None,
            "Target.createTarget",
            serde_json::json!({ "url": "about:blank" }),
        )["targetId"]
            .as_str()
            .unwrap()
            .to_owned();
        let session = self.call(
            None,
            "Target.attachToTarget",
            serde_json::json!({ "targetId": target, "flatten": true }),
        )["sessionId"]
            .as_str()
            .unwrap()
            .to_owned();
        let s = Some(session.as_str());
        for domain in ["Page", "Runtime", "Log", "Network"] {
            self.call(s, &format!("{domain}.enable"), serde_json::json!({}));
        }
        self.call(
            s,
            "Emulation.setDeviceMetricsOverride",
            serde_json::json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }),
        );
        self.call(s, "Page.navigate", serde_json::json!({ "url": url }));
        self.wait_event(&session, "Page.loadEventFired", Duration::from_secs(60));
        self.drain(Duration::from_secs(1));
        let eval = |b: &mut Browser, expression: &str| {
            let r = b.call(
                s,
                "Runtime.evaluate",
                serde_json::json!({ "expression": expression, "returnByValue": true }),
            );
            if let Some(e) = r.get("exceptionDetails") {
                panic!("chromium: {expression} threw {e}");
            }
            r["result"]["value"].clone()
        };
        let dom = eval(self, "document.documentElement.outerHTML")
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let probe = eval(self, probe);
        let shot = self.call(
            s,
            "Page.captureScreenshot",
            serde_json::json!({ "format": "png" }),
        );
        use base64::Engine as _;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap_or_default())
            .unwrap();
        self.drain(Duration::from_millis(200));
        let mine: Vec<&serde_json::Value> = self
            .events
            .iter()
            .filter(|e| e["sessionId"] == session.as_str())
            .collect();
        let requests = mine
            .iter()
            .filter(|e| e["method"] == "Network.requestWillBeSent")
            .map(|e| {
                e["params"]["request"]["url"]
                    .as_str()
                    .unwrap_or("?")
                    .to_owned()
            })
            .collect();
        let errors = mine
            .iter()
            .filter_map(|e| {
                let p = &e["params"];
                match e["method"].as_str()? {
                    "Runtime.consoleAPICalled"
                        if matches!(p["type"].as_str(), Some("error" | "assert")) =>
                    {
                        Some(format!("console.{}: {}", p["type"], p["args"]))
                    }
                    "Runtime.exceptionThrown" => {
                        Some(format!("exception: {}", p["exceptionDetails"]))
                    }
                    "Log.entryAdded" if p["entry"]["level"] == "error" => {
                        Some(format!("log: {}", p["entry"]))
                    }
                    "Network.loadingFailed" => Some(format!("loading failed: {p}")),
                    _ => None,
                }
            })
            .collect();
        self.events.retain(|e| e["sessionId"] != session.as_str());
        self.call(
            None,
            "Target.closeTarget",
            serde_json::json!({ "targetId": target }),
        );
        PageVisit {
            requests,
            errors,
            dom,
            probe,
            png,
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        use std::io::Write;
        // Browser.close lets Chromium end its helper processes; kill it if it does not.
        let _ = self
            .input
            .write_all(b"{\"id\":999999,\"method\":\"Browser.close\"}\0");
        let _ = self.input.flush();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
