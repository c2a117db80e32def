//! Headless Chromium for the tests that look at pages the way a user does.

use super::{require_program, tempdir};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
