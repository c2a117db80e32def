//! Issue 18's "modules that heal themselves": a module whose own work stops (a test-only switch
//! blocks the consumer's exchange loop or the producer's handler) logs one line saying what
//! stopped and exits non-zero, after `/healthz` turned 503 with that reason; a hub that is down
//! for 30 s (stopped, or killed and started again) makes neither module exit, their `/healthz`
//! stays 200, and both kinds resume. `<binary> healthcheck` answers as `/healthz` does.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use test_support::*;

/// The watchdog's exit status (telemetry::watchdog::EXIT_CODE).
const WATCHDOG_EXIT: i32 = 3;

/// GET `path` on `addr`: (status, body), or `None` when nothing answers.
fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// A module started with its metrics address written to a file, and that address.
struct Module {
    proc: Proc,
    metrics: String,
}

fn start_module(name: &str, mut env: BTreeMap<String, String>, dir: &Path) -> Module {
    let file = dir.join(format!("{name}.metrics-addr"));
    let _ = std::fs::remove_file(&file);
    env.insert("METRICS_ADDR_FILE".into(), file.display().to_string());
    let mut proc = module(name, &env);
    let metrics = proc.wait_for_file(&file, Duration::from_secs(20));
    Module { proc, metrics }
}

impl Module {
    fn healthz(&self) -> (u16, String) {
        get(&self.metrics, "/healthz").unwrap_or_else(|| {
            panic!(
                "{}: /healthz did not answer:\n{}",
                self.proc.name,
                self.proc.output()
            )
        })
    }

    /// `method-vs-message <module> healthcheck` with this module's metrics address, as the image's
    /// HEALTHCHECK runs it (only METRICS_ADDR differs from the image's defaults).
    fn healthcheck(&self) -> (Option<i32>, String, String) {
        let out = Command::new(bin())
            .args([self.proc.name.as_str(), "healthcheck"])
            .env("METRICS_ADDR", &self.metrics)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn watchdog_lines(&self) -> Vec<String> {
        self.proc
            .out
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("watchdog: "))
            .cloned()
            .collect()
    }

    /// Waits for /healthz to answer 503 and returns its body.
    fn wait_unhealthy(&mut self, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            match get(&self.metrics, "/healthz") {
                Some((503, body)) => return body,
                Some((200, _)) => {}
                other => panic!(
                    "{}: /healthz answered {other:?}:\n{}",
                    self.proc.name,
                    self.proc.output()
                ),
            }
            assert!(
                Instant::now() < deadline,
                "{}: /healthz still 200 after {within:?}:\n{}",
                self.proc.name,
                self.proc.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The process exits with the watchdog's status within `within`; its one watchdog line.
    fn wait_watchdog_exit(&mut self, within: Duration) -> String {
        let status = self.proc.wait(within);
        assert_eq!(
            status.code(),
            Some(WATCHDOG_EXIT),
            "{}: {status}:\n{}",
            self.proc.name,
            self.proc.output()
        );
        let lines = self.watchdog_lines();
        assert_eq!(
            lines.len(),
            1,
            "{}: one watchdog line expected:\n{}",
            self.proc.name,
            self.proc.output()
        );
        lines[0].clone()
    }
}

fn consumer_env(hub: &Hub, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut env = hub.module_env("consumer");
    env.extend(
        [
            ("SUMMARY_INTERVAL", "1s"),
            ("SUMMARY_FORMAT", "json"),
            ("EXCHANGE_TIMEOUT", "1s"),
        ]
        .into_iter()
        .chain(extra.iter().copied())
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    env
}

fn both_kinds_measured(s: &serde_json::Value) -> bool {
    count(s, "method", "count") > 0 && count(s, "message", "count") > 0
}

#[test]
fn a_frozen_consumer_loop_turns_healthz_503_and_exits_with_one_line_naming_it() {
    let dir = tempdir("watchdog-consumer");
    let hub = Hub::start("watchdog-consumer-hub", &seed_manifest(), 0, 0, &[]);
    let _producer = start_module("producer", hub.module_env("producer"), &dir);
    // Only the method loop freezes (4 s after the loops start); the message loop goes on.
    let mut consumer = start_module(
        "consumer",
        consumer_env(
            &hub,
            &[
                ("WATCHDOG_TIMEOUT", "5s"),
                ("TEST_FREEZE_AFTER", "4s"),
                ("TEST_FREEZE_KIND", "method"),
            ],
        ),
        &dir,
    );
    wait_for_summary(
        &mut consumer.proc,
        Duration::from_secs(30),
        both_kinds_measured,
    );
    let (status, body) = consumer.healthz();
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (code, stdout, stderr) = consumer.healthcheck();
    assert_eq!(code, Some(0), "healthcheck: {stdout}{stderr}");

    // Past the loop's bound (EXCHANGE_TIMEOUT + the closed loop's pause + slack): 503, the reason.
    let reason = consumer.wait_unhealthy(Duration::from_secs(20));
    let unhealthy_at = Instant::now();
    assert!(
        reason.starts_with("the method loop made no progress for ")
            && reason.contains("(last exchange finished at 20")
            && reason.contains("the watchdog exits"),
        "{reason}"
    );
    let (code, stdout, stderr) = consumer.healthcheck();
    assert_eq!(code, Some(1), "healthcheck: {stdout}{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line on stderr: {stderr}");
    assert!(
        stderr.contains("/healthz: 503: the method loop made no progress"),
        "{stderr}"
    );

    // The message loop is not what stopped: it still measures while the method loop does not.
    let seen = summaries(&consumer.proc).len();
    wait_for_summary_after(&mut consumer.proc, seen, Duration::from_secs(5), |s| {
        count(s, "message", "count") > 0 && count(s, "method", "count") == 0
    });

    // Then the exit, within WATCHDOG_TIMEOUT of the last progress (and so of the 503).
    let line = consumer.wait_watchdog_exit(Duration::from_secs(5 + 10));
    let exit_after_503 = unhealthy_at.elapsed();
    assert!(
        line.contains("watchdog: the method loop made no progress for ")
            && line.contains("(last exchange finished at 20")
            && line.ends_with("Z); exiting so the runtime restarts the module"),
        "{line}"
    );
    assert!(
        exit_after_503 < Duration::from_secs(10),
        "{exit_after_503:?}"
    );
    println!("consumer: 503 ({reason:?}), exit {exit_after_503:?} later: {line}");
}

#[test]
fn a_frozen_producer_handler_exits_and_the_consumer_does_not() {
    let dir = tempdir("watchdog-producer");
    let hub = Hub::start("watchdog-producer-hub", &seed_manifest(), 0, 0, &[]);
    let mut env = hub.module_env("producer");
    env.extend([
        ("WATCHDOG_TIMEOUT".to_owned(), "4s".to_owned()),
        ("TEST_FREEZE_AFTER".into(), "4s".into()),
    ]);
    let mut producer = start_module("producer", env, &dir);
    let mut consumer = start_module(
        "consumer",
        consumer_env(&hub, &[("WATCHDOG_TIMEOUT", "5s")]),
        &dir,
    );
    wait_for_summary(
        &mut consumer.proc,
        Duration::from_secs(30),
        both_kinds_measured,
    );

    let reason = producer.wait_unhealthy(Duration::from_secs(20));
    assert!(
        reason.starts_with("the request handler made no progress for "),
        "{reason}"
    );
    let line = producer.wait_watchdog_exit(Duration::from_secs(15));
    assert!(
        line.contains("watchdog: the request handler made no progress for ")
            && line.contains("(it last took a request at 20"),
        "{line}"
    );

    // The consumer's exchanges now time out or fail (no producer): progress, not a hang.
    let seen = summaries(&consumer.proc).len();
    let missed =
        |s: &serde_json::Value, kind| count(s, kind, "timeouts") + count(s, kind, "errors");
    wait_for_summary_after(&mut consumer.proc, seen, Duration::from_secs(20), |s| {
        missed(s, "method") > 0 && missed(s, "message") > 0
    });
    std::thread::sleep(Duration::from_secs(6)); // past the consumer's WATCHDOG_TIMEOUT
    assert_eq!(consumer.healthz(), (200, "ok\n".to_owned()));
    assert!(
        consumer.watchdog_lines().is_empty(),
        "{}",
        consumer.proc.output()
    );
    assert!(
        consumer.proc.terminate().success(),
        "{}",
        consumer.proc.output()
    );
    println!("producer: {line}");
}

/// How the hub is taken away for the outage.
#[derive(Debug, Clone, Copy)]
enum Outage {
    /// SIGSTOP: connections stay open and nothing answers.
    Stopped,
    /// SIGKILL, then a new hub on the same state and ports: the modules reconnect (with backoff).
    Killed,
}

fn a_30_second_hub_outage_is_no_hang(outage: Outage) {
    let name = format!("watchdog-outage-{outage:?}").to_lowercase();
    let dir = tempdir(&name);
    let mut hub = Hub::start(&format!("{name}-hub"), &seed_manifest(), 0, 0, &[]);
    let (mqtt, https, state) = (hub.mqtt, hub.https, hub.state.clone());
    // Both watchdogs are far shorter than the outage.
    let mut env = hub.module_env("producer");
    env.insert("WATCHDOG_TIMEOUT".into(), "8s".into());
    let mut producer = start_module("producer", env, &dir);
    let mut consumer = start_module(
        "consumer",
        consumer_env(
            &hub,
            &[("EXCHANGE_TIMEOUT", "2s"), ("WATCHDOG_TIMEOUT", "8s")],
        ),
        &dir,
    );
    wait_for_summary(
        &mut consumer.proc,
        Duration::from_secs(30),
        both_kinds_measured,
    );
    let hub_check = Command::new(bin())
        .args([
            "hub",
            "--metrics-port",
            &hub.metrics.to_string(),
            "healthcheck",
        ])
        .output()
        .unwrap();
    assert!(hub_check.status.success(), "hub healthcheck: {hub_check:?}");

    match outage {
        Outage::Stopped => hub.proc.signal("STOP"),
        Outage::Killed => {
            hub.proc.signal("KILL");
            let _ = hub.proc.wait(Duration::from_secs(10));
        }
    }
    let before = summaries(&consumer.proc).len();
    let outage_end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < outage_end {
        for m in [&mut producer, &mut consumer] {
            if let Ok(Some(s)) = m.proc.child.try_wait() {
                std::thread::sleep(Duration::from_millis(200));
                panic!(
                    "{} exited ({s}) while the hub was away:\n{}",
                    m.proc.name,
                    m.proc.output()
                );
            }
            let (status, body) = m.healthz();
            assert_eq!(
                status,
                200,
                "{}: /healthz while the hub was away: {body}\n{}",
                m.proc.name,
                m.proc.output()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // The outage was real: the consumer counted it.
    let missed: u64 = summaries(&consumer.proc)
        .iter()
        .skip(before)
        .map(|s| {
            ["method", "message"]
                .iter()
                .map(|k| count(s, k, "timeouts") + count(s, k, "errors"))
                .sum::<u64>()
        })
        .sum();
    assert!(
        missed > 0,
        "no timeout or error counted during the outage:\n{}",
        consumer.proc.output()
    );

    let _hub = match outage {
        Outage::Stopped => {
            hub.proc.signal("CONT");
            hub
        }
        Outage::Killed => Hub::start_in(state, &seed_manifest(), mqtt, https, &[]),
    };
    let returned = Instant::now();
    let back = summaries(&consumer.proc).len();
    // Generous: the modules' reconnect backoff may be up to 30 s into a sleep.
    wait_for_summary_after(
        &mut consumer.proc,
        back,
        Duration::from_secs(90),
        both_kinds_measured,
    );
    println!(
        "{outage:?}: both kinds measured again {:?} after the hub returned",
        returned.elapsed()
    );
    for m in [&mut producer, &mut consumer] {
        assert_eq!(m.healthz(), (200, "ok\n".to_owned()), "{}", m.proc.output());
        assert!(m.watchdog_lines().is_empty(), "{}", m.proc.output());
        let (code, stdout, stderr) = m.healthcheck();
        assert_eq!(code, Some(0), "{}: {stdout}{stderr}", m.proc.name);
    }
    assert!(
        consumer.proc.terminate().success(),
        "{}",
        consumer.proc.output()
    );
    assert!(
        producer.proc.terminate().success(),
        "{}",
        producer.proc.output()
    );
}

/// Waits until a JSON summary printed after the first `skip` ones satisfies `pred`.
fn wait_for_summary_after(
    p: &mut Proc,
    skip: usize,
    within: Duration,
    pred: impl Fn(&serde_json::Value) -> bool,
) {
    let deadline = Instant::now() + within;
    while !summaries(p).iter().skip(skip).any(&pred) {
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

#[test]
fn a_stopped_hub_for_30_s_makes_no_module_exit() {
    a_30_second_hub_outage_is_no_hang(Outage::Stopped);
}

#[test]
fn a_killed_hub_restarted_after_30_s_makes_no_module_exit() {
    a_30_second_hub_outage_is_no_hang(Outage::Killed);
}
