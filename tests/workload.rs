//! Workloads (issue 19): rate and payload sweeps through the local run, the producer's padded
//! reply read directly through the hub by both kinds, and the sizes and sweeps refused at
//! start-up with the limit or an example named. Steps are short (2 s after a 1 s warm-up).

use edge::session::Subscriptions;
use edge::{Incoming, Message, MethodClient, ModuleClient};
use std::path::Path;
use std::time::Duration;
use test_support::*;

/// The run's lines with `"scope": <scope>`.
fn lines_of(out: &str, scope: &str) -> Vec<serde_json::Value> {
    out.lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["scope"] == scope)
        .collect()
}

/// Runs the local run with `args` to its end (a sweep ends by itself) and returns its output.
fn sweep_run(name: &str, args: &[&str]) -> String {
    let dir = tempdir(name);
    let mut run = Proc::spawn("local-run", local_run_command(&dir.join("state"), args));
    let status = run.wait(Duration::from_secs(120));
    let out = run.output();
    assert!(status.success(), "exit {status}:\n{out}");
    assert!(!out.contains("panicked"), "{out}");
    out
}

#[test]
fn a_rate_sweep_prints_its_steps_and_the_capacity_and_an_unsustainable_rate_shows_as_such() {
    // 20000/s of each kind is far beyond what the hub and producer answer on two cores: the
    // step must show skipped exchanges (or timeouts), never latency samples for exchanges that
    // did not happen. 1000 in flight and a p99 bound of 20 s ride out the pauses of this shared
    // virtual machine (seconds, at times) at the low rates.
    let out = sweep_run(
        "workload-rate",
        &[
            "--sweep",
            "rate=20,50,20000",
            "--step",
            "2s",
            "--warmup",
            "1s",
            "--max-in-flight",
            "1000",
            "--capacity-p99",
            "20s",
            "--summary-format",
            "json",
        ],
    );
    let steps = lines_of(&out, "step");
    assert_eq!(steps.len(), 3, "{out}");
    for (i, (s, rate)) in steps.iter().zip([20.0, 50.0, 20000.0]).enumerate() {
        let step = &s["step"];
        assert_eq!(step["index"], i, "{s}");
        assert_eq!(step["of"], 3, "{s}");
        assert_eq!(step["axis"], "rate", "{s}");
        assert_eq!(step["rate"], rate, "{s}");
        assert_eq!(s["rate"], rate, "{s}");
        assert_eq!(step["payload_bytes"], 0, "{s}");
        assert_eq!(step["reply_bytes"], 0, "{s}");
        assert_eq!(step["warmup_seconds"], 1.0, "{s}");
        assert_eq!(step["duration_seconds"], 2.0, "{s}");
        assert_eq!(s["schedule"], "open", "{s}");
        for kind in ["method", "message"] {
            let k = &s["kinds"][kind];
            for field in ["count", "timeouts", "errors", "skipped"] {
                assert!(k[field].is_u64(), "{kind}.{field}: {s}");
            }
            for field in [
                "total_p50_ms",
                "total_p90_ms",
                "total_p99_ms",
                "total_p999_ms",
                "total_max_ms",
            ] {
                assert!(k[field].is_f64(), "{kind}.{field}: {s}");
            }
        }
        assert!(s["verdict"]["faster"].is_string(), "{s}");
    }
    for kind in ["method", "message"] {
        for s in &steps[..2] {
            assert!(count(s, kind, "count") > 0, "{kind}: {s}");
            assert_eq!(s["step"]["sustained"][kind], true, "{kind}: {s}");
        }
        // The step that cannot be sustained: skipped or timed out, and fewer samples than
        // exchanges planned (20000/s for 2 s).
        let over = &steps[2];
        let missed = count(over, kind, "skipped") + count(over, kind, "timeouts");
        assert!(missed > 0, "{kind}: {over}");
        assert!(count(over, kind, "count") < 40_000, "{kind}: {over}");
        assert_eq!(over["step"]["sustained"][kind], false, "{kind}: {over}");
    }
    let sweep = lines_of(&out, "sweep");
    assert_eq!(sweep.len(), 1, "{out}");
    for kind in ["method", "message"] {
        assert_eq!(sweep[0]["capacity"][kind]["rate"], 50.0, "{}", sweep[0]);
    }
    assert!(sweep[0]["crossover"]["words"].is_string(), "{}", sweep[0]);
    // The final table: one row per step and kind, the capacity and the crossover in words.
    let table: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("Sweep over rate: 3 of 3 steps"))
        .collect();
    assert!(!table.is_empty(), "no final table:\n{out}");
    assert_eq!(
        table.iter().filter(|l| l.contains("| message  |")).count(),
        3,
        "{out}"
    );
    let capacity = table
        .iter()
        .find(|l| l.starts_with("Capacity: "))
        .unwrap_or_else(|| panic!("no capacity line:\n{out}"));
    assert!(
        capacity.contains("message 50/s (not 20000/s:")
            && capacity.contains("method 50/s (not 20000/s:"),
        "{capacity}"
    );
    assert!(table.iter().any(|l| l.starts_with("Crossover: ")), "{out}");
}

#[test]
fn a_payload_sweep_to_120_kib_runs_through_the_hub_with_both_kinds() {
    let out = sweep_run(
        "workload-payload",
        &[
            "--rate",
            "20",
            "--sweep",
            "payload=0,16KiB,120KiB",
            "--reply-bytes",
            "120KiB",
            "--step",
            "2s",
            "--warmup",
            "1s",
            "--summary-format",
            "both",
        ],
    );
    let steps = lines_of(&out, "step");
    assert_eq!(steps.len(), 3, "{out}");
    for (s, size) in steps.iter().zip([0, 16 * 1024, 120 * 1024]) {
        assert_eq!(s["step"]["axis"], "payload", "{s}");
        assert_eq!(s["step"]["payload_bytes"], size, "{s}");
        assert_eq!(s["step"]["rate"], 20.0, "{s}");
        // The consumer read every reply's UtcTime (a malformed one is an error) and its padding.
        assert_eq!(s["step"]["reply_bytes"], 120 * 1024, "{s}");
        for kind in ["method", "message"] {
            assert!(count(s, kind, "count") > 0, "{kind}: {s}");
            assert_eq!(count(s, kind, "errors"), 0, "{kind}: {s}");
        }
    }
    assert!(
        out.contains("Step 3/3 of the payload sweep: rate 20/s | payload 120KiB | reply 120KiB"),
        "{out}"
    );
    assert!(out.contains("Sweep over payload: 3 of 3 steps"), "{out}");
    assert!(out.contains("Crossover: "), "{out}");
    assert!(
        !out.contains("Capacity: "),
        "a payload sweep has no capacity:\n{out}"
    );
}

/// `UtcTime` as the seed writes it (round-trip format, 7 fractional digits, `Z`).
fn check_seed_time(reply: &serde_json::Value) {
    let t = reply["UtcTime"]
        .as_str()
        .unwrap_or_else(|| panic!("{reply:.200}"));
    assert!(
        edge::time::parse(t).is_some() && t.ends_with('Z') && t.len() == 28,
        "{t}"
    );
}

#[test]
fn the_producer_pads_both_replies_and_keeps_the_seed_fields() {
    let manifest = repo().join("deployment.template.json");
    let hub = Hub::start("workload-reply", Path::new(&manifest), 0, 0, &[]);
    let mut env = hub.module_env("producer");
    env.insert("REPLY_BYTES".into(), "120KiB".into());
    let _producer = module("producer", &env);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let padding = "p".repeat(120 * 1024);
        let caller = MethodClient::new(hub.identity("consumer")).await.unwrap();
        let payload = serde_json::json!({ "padding": padding });
        let mut answer = None;
        for _ in 0..200 {
            match caller
                .invoke(
                    &hub.device(),
                    "producer",
                    "GetTimeMethod",
                    &payload,
                    Duration::from_secs(10),
                )
                .await
            {
                Ok(r) => {
                    answer = Some(r);
                    break;
                }
                // The producer is still connecting.
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let answer = answer.expect("the producer answered the method");
        assert_eq!(answer.status, 200);
        check_seed_time(&answer.json());
        assert_eq!(
            answer.json()["padding"].as_str().map(str::len),
            Some(120 * 1024)
        );

        let (client, mut deliveries) = ModuleClient::connect(
            hub.identity("consumer"),
            Subscriptions {
                inputs: true,
                methods: false,
            },
        )
        .await
        .unwrap();
        let body = edge::payload::message_body(120 * 1024);
        let cid = "2026-12-04T16:00:00.0000000Z";
        client
            .send_output(
                "GetTimeMessage",
                Message::new(body).with_correlation_id(cid),
            )
            .await
            .unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                match deliveries.recv().await {
                    Some(Incoming::Input { message, .. }) => return message,
                    Some(_) => continue,
                    None => panic!("session ended"),
                }
            }
        })
        .await
        .expect("a reply within 20 s");
        assert_eq!(reply.correlation_id(), Some(cid));
        let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        check_seed_time(&body);
        assert_eq!(body["padding"].as_str().map(str::len), Some(120 * 1024));
        client.disconnect().await;
    });
}

#[test]
fn sizes_over_a_limit_and_malformed_sweeps_are_refused_at_start_up() {
    let dir = tempdir("workload-refused");
    for (args, why) in [
        (
            &["--payload-bytes", "129KiB"][..],
            "over the direct method's 128 KiB payload limit",
        ),
        (
            &["--rate", "10", "--sweep", "payload=0,129KiB"],
            "128 KiB payload limit",
        ),
        (&["--reply-bytes", "129KiB"], "128 KiB payload limit"),
        (&["--payload-bytes", "16KB"], "unknown unit \"KB\""),
        (
            &["--sweep", "rate=50,100", "--step", "1s", "--warmup", "2s"],
            "STEP (1s) is shorter than WARMUP (2s)",
        ),
        (&["--sweep", "rate:50"], "rate=50,100,200,400"),
        (&["--sweep", "size=1,2"], "unknown axis"),
    ] {
        let mut cmd = local_run_command(&dir.join("state"), args);
        let (ok, out) = run_capture(&mut cmd);
        assert!(!ok, "{args:?} was accepted:\n{out}");
        assert!(out.contains(why), "{args:?}: {out}");
        // Refused before the hub started.
        assert!(!out.contains("hub ready"), "{args:?}: {out}");
    }
}
