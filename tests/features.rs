//! No rebuild between the README's two commands (issue 11): the test command builds the whole
//! workspace with every target, `cargo run --release` builds only the launcher. Cargo compiles a
//! shared crate again whenever the two resolve different features for it, so the launcher depends
//! on `workspace-hack`, which turns on what the tests and the bench turn on. This test fails,
//! naming the crate and features to add to workspace-hack/Cargo.toml, when they drift apart.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

fn features(args: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
    let out = Command::new(env!("CARGO"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "tree",
            // This machine's target only: `--target all` needs every platform's crates, which a
            // fresh cargo home (only what the host build downloaded) does not have, offline.
            "--offline",
            "--prefix",
            "none",
            "-f",
            "{p}|{f}",
        ])
        .args(args)
        .output()
        .expect("running cargo tree");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut map: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some((package, list)) = line.trim_end_matches(" (*)").split_once('|') else {
            continue;
        };
        let package = package.trim_end_matches(" (proc-macro)").to_owned();
        map.entry(package)
            .or_default()
            .extend(list.split(',').filter(|f| !f.is_empty()).map(str::to_owned));
    }
    map
}

#[test]
fn the_launcher_resolves_the_features_the_tests_resolve() {
    // Cargo resolves crates built for build scripts and proc-macros apart from those linked into
    // the binaries, so compare each side on its own: merged, a host-side `getrandom` with `std`
    // hid that the target-side one lacked it.
    let mut missing = Vec::new();
    for (side, test_edges, run_edges) in [
        ("linked into the binaries", "normal,dev", "normal"),
        ("with build scripts", "normal,build,dev", "normal,build"),
    ] {
        let tests = features(&["--workspace", "-e", test_edges]);
        let run = features(&["-p", "method-vs-message", "-e", run_edges]);
        for (package, have) in &run {
            let Some(want) = tests.get(package) else {
                continue;
            };
            let extra: Vec<&String> = want.difference(have).collect();
            if !extra.is_empty() {
                missing.push(format!("{package} ({side}): {extra:?}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "`cargo run --release` after the test command would recompile; add these features to \
         workspace-hack/Cargo.toml:\n{}",
        missing.join("\n")
    );
}
