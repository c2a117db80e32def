//! The alert rules and Alertmanager's configuration (issue 10, item 4): `promtool check rules` and
//! the rules' unit tests (`promtool test rules prometheus-rules.test.yml`), which must give every
//! alert at least one firing and one silent case, and `amtool check-config alertmanager.yml` with
//! a routing check. Debian's prometheus and prometheus-alertmanager packages provide the tools
//! (scripts/setup-test-env.sh); a missing one fails the test. prometheus.yml's `rule_files`, the
//! compose mounts and the dashboard's alerts panel are checked by tests/stack.rs; the rules run
//! on live data in tests/fleet.rs.

use std::collections::BTreeMap;
use std::process::Command;
use test_support::*;

const RULES: &str = "prometheus-rules.yml";
const RULES_TEST: &str = "prometheus-rules.test.yml";

fn tool(name: &str, args: &[&str]) -> String {
    let (ok, out) = run_capture(
        Command::new(require_program(name))
            .args(args)
            .current_dir(repo()),
    );
    assert!(ok, "`{name} {}` failed:\n{out}", args.join(" "));
    out
}

#[test]
fn rules_are_valid_and_their_unit_tests_pass() {
    let out = tool("promtool", &["check", "rules", RULES]);
    assert!(out.contains("SUCCESS"), "{out}");
    let out = tool("promtool", &["test", "rules", RULES_TEST]);
    assert!(out.contains("SUCCESS"), "{out}");
}

/// Every alert of the rules file has a firing case (a non-empty `exp_alerts`) and a silent one
/// (`exp_alerts: []`) in the unit tests, and the tests name no alert that does not exist.
#[test]
fn every_alert_has_a_firing_and_a_silent_unit_test() {
    // The YAML is read by PyYAML from the test virtualenv: the Rust side has no YAML parser.
    let script = r#"
import json, sys, yaml
rules = yaml.safe_load(open(sys.argv[1]))
tests = yaml.safe_load(open(sys.argv[2]))
alerts = [r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r]
cases = {}
for t in tests["tests"]:
    for c in t.get("alert_rule_test") or []:
        cases.setdefault(c["alertname"], []).append(len(c.get("exp_alerts") or []))
print(json.dumps({"alerts": alerts, "cases": cases}))
"#;
    let (ok, out) = run_capture(
        Command::new(python())
            .args(["-c", script, RULES, RULES_TEST])
            .current_dir(repo()),
    );
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let alerts: Vec<String> = serde_json::from_value(v["alerts"].clone()).unwrap();
    let cases: BTreeMap<String, Vec<u64>> = serde_json::from_value(v["cases"].clone()).unwrap();
    assert!(
        alerts.len() >= 5,
        "expected at least the five alerts of issue 10: {alerts:?}"
    );
    for a in &alerts {
        let c = cases.get(a).cloned().unwrap_or_default();
        assert!(
            c.iter().any(|&n| n > 0),
            "{a}: no firing case in {RULES_TEST}"
        );
        assert!(
            c.contains(&0),
            "{a}: no silent case (exp_alerts: []) in {RULES_TEST}"
        );
    }
    for name in cases.keys() {
        assert!(
            alerts.contains(name),
            "{RULES_TEST} tests {name}, which {RULES} does not define"
        );
    }
}

#[test]
fn alertmanager_config_is_valid_and_routes_our_alerts() {
    let out = tool("amtool", &["check-config", "alertmanager.yml"]);
    assert!(out.contains("SUCCESS"), "{out}");
    // stdout names the receiver; stderr warns that --config.file overrides --alertmanager.url.
    let routed = Command::new(require_program("amtool"))
        .args([
            "config",
            "routes",
            "test",
            "--config.file=alertmanager.yml",
            "alertname=IotEdgeExchangesStopped",
            "device=edge-1",
            "kind=method",
        ])
        .current_dir(repo())
        .output()
        .unwrap();
    let receiver = String::from_utf8_lossy(&routed.stdout);
    assert!(
        routed.status.success() && receiver.trim() == "default",
        "amtool config routes test: {receiver}{}",
        String::from_utf8_lossy(&routed.stderr)
    );
}
