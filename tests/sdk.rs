//! The official Azure IoT SDK for Python against our hub and our modules, over TLS on 8883/443 as
//! the SDK requires (so these tests take the fixed-ports lock). Issue 2 "Done when" 1 and issue 3
//! "Done when" 2: Python ports of the seed's modules measure ours, and ours measure them.

use std::process::Command;
use std::time::Duration;
use test_support::*;

fn sdk_manifest() -> std::path::PathBuf {
    repo().join("tests/python/deployment_sdk.json")
}

fn py(script: &str, state: &std::path::Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(python());
    cmd.current_dir(repo())
        .arg(format!("tests/python/{script}"))
        .arg("--state-dir")
        .arg(state)
        .args(args);
    cmd
}

fn events(p: &Proc, name: &str) -> Vec<serde_json::Value> {
    p.out
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == name)
        .collect()
}

#[test]
fn python_sdk_modules_exchange_methods_and_messages_through_the_hub() {
    let _ports = FixedPorts::lock();
    let hub = Hub::start("sdk-interop", &sdk_manifest(), 8883, 443, &[]);
    let mut interop = Proc::spawn(
        "sdk_interop",
        py("sdk_interop.py", &hub.state, &["--n", "50"]),
    );
    let status = interop.wait(Duration::from_secs(240));
    let out = interop.output();
    assert!(
        status.success(),
        "sdk_interop failed ({status}):\n{out}\n--- hub ---\n{}",
        hub.proc.output()
    );
    for check in ["method_echo", "message_route"] {
        assert!(
            events(&interop, "check")
                .iter()
                .any(|c| c["name"] == check && c["ok"] == true),
            "{check}:\n{out}"
        );
    }
    assert_eq!(events(&interop, "ok").len(), 1, "{out}");
    let latency = events(&interop, "latency");
    assert_eq!(latency.len(), 2, "{out}");
    eprintln!("python SDK through the hub: {latency:?}");
    let metrics = hub.metrics_text();
    assert!(
        metrics.contains(r#"to="local-edge-device/sdkresponder""#),
        "{metrics}"
    );
}

#[test]
fn the_python_seed_consumer_measures_our_producer() {
    let _ports = FixedPorts::lock();
    let hub = Hub::start("seed-consumer", &sdk_manifest(), 8883, 443, &[]);
    let mut producer = module("producer", &hub.module_env("producer"));
    // The hub answers 404 until the producer has subscribed; don't count that start-up as errors.
    producer.wait_for_line(Duration::from_secs(30), |l| {
        l.contains("connected to edge hub")
    });
    std::thread::sleep(Duration::from_millis(500));
    let mut consumer = Proc::spawn(
        "seed_consumer",
        py("seed_consumer.py", &hub.state, &["--duration", "8"]),
    );
    let status = consumer.wait(Duration::from_secs(120));
    let out = consumer.output();
    assert!(
        status.success(),
        "seed_consumer ({status}):\n{out}\n--- hub ---\n{}",
        hub.proc.output()
    );
    let summary = events(&consumer, "summary")
        .pop()
        .unwrap_or_else(|| panic!("no summary:\n{out}"));
    for kind in ["method", "message"] {
        assert!(
            summary[kind]["count"].as_u64().unwrap_or(0) > 0,
            "{kind}: {summary}"
        );
        assert_eq!(
            summary[kind]["errors"].as_u64(),
            Some(0),
            "{kind}: {summary}"
        );
    }
    eprintln!("python seed consumer -> our producer: {summary}");
}

#[test]
fn our_consumer_measures_the_python_seed_producer() {
    let _ports = FixedPorts::lock();
    let hub = Hub::start("seed-producer", &sdk_manifest(), 8883, 443, &[]);
    let mut producer = Proc::spawn(
        "seed_producer",
        py("seed_producer.py", &hub.state, &["--duration", "60"]),
    );
    producer.wait_for_line(Duration::from_secs(60), |l| l.contains("\"ready\""));
    let mut env = hub.module_env("consumer");
    env.extend([
        ("SUMMARY_INTERVAL".to_owned(), "2s".to_owned()),
        ("SUMMARY_FORMAT".into(), "json".into()),
    ]);
    let mut consumer = module("consumer", &env);
    let s = wait_for_summary(&mut consumer, Duration::from_secs(60), |s| {
        count(s, "method", "count") > 0 && count(s, "message", "count") > 0
    });
    eprintln!("our consumer -> python seed producer: {s}");
    assert!(consumer.terminate().success(), "{}", consumer.output());
}
