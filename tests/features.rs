//! No rebuild between the README's two commands (issue 11): the test command builds the whole
//! workspace with every target, `cargo run --release` builds only the launcher. Cargo compiles a
//! shared crate again whenever the two resolve different features for it, so the launcher's
//! `[dependencies]` turn on what the tests and the bench turn on ("feature unification" in
//! Cargo.toml). This test fails, naming the crate and features to add, when they drift apart.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

fn features(args: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
    let out = Command::new(env!("CARGO"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "tree",
            "--offline",
            "--target",
            "all",
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
    let tests = features(&["--workspace", "-e", "normal,build,dev"]);
    let run = features(&["-p", "method-vs-message", "-e", "normal,build"]);
    let missing: Vec<String> = run
        .iter()
        .filter_map(|(package, have)| {
            let want = tests.get(package)?;
            let extra: Vec<&String> = want.difference(have).collect();
            (!extra.is_empty()).then(|| format!("{package}: {extra:?}"))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "`cargo run --release` after the test command would recompile; add these features to the \
         feature-unification block of the root Cargo.toml:\n{}",
        missing.join("\n")
    );
}
