//! Docs that cannot drift: every file, function, type or module path that `docs/architecture.md`
//! names in backticks exists in the tree, and the README's hub example runs as written.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use test_support::*;

/// Files the hub and the local run create at run time (in the state directory), not in the tree.
const RUNTIME_FILES: &[&str] = &[
    "ca.key",
    "ca.pem",
    "server.key",
    "server.pem",
    "endpoints.json",
    "identities.json",
    "store.redb",
];

/// Types of other crates the document names while explaining a call.
const FOREIGN_TYPES: &[&str] = &[
    "Packet",
    "NetworkOptions",
    "HttpConnector",
    "AsyncClient",
    "Utc",
    "mqttbytes",
    "tokio",
];

/// Every `.rs`, script and config file of the repository (not `target/`, not hidden directories).
fn tree() -> Vec<PathBuf> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name == "target" || name == "node_modules" {
                continue;
            }
            if p.is_dir() {
                out.push(p.strip_prefix(root).unwrap().join(""));
                walk(&p, root, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(&repo(), &repo(), &mut out);
    out
}

fn backticked(doc: &str) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    let mut in_fence = false;
    for line in doc.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        for (i, part) in line.split('`').enumerate() {
            if i % 2 == 1 && !part.is_empty() {
                set.insert(part.to_owned());
            }
        }
    }
    set
}

fn is_path(t: &str) -> bool {
    let exts = [
        ".rs", ".py", ".md", ".toml", ".yml", ".json", ".sh", ".txt", ".redb",
    ];
    !t.contains(' ')
        && !t.contains('*')
        && !t.contains('<')
        && !t.contains('{')
        && !t.starts_with('/')
        && !t.starts_with('.')
        && (exts.iter().any(|e| t.ends_with(e)) || (t.ends_with('/') && t.len() > 1))
}

fn path_exists(t: &str, files: &[PathBuf]) -> bool {
    let base = t.rsplit('/').find(|s| !s.is_empty()).unwrap_or(t);
    if !t.contains('/') && RUNTIME_FILES.contains(&base) {
        return true;
    }
    files.iter().any(|f| {
        let f = f.to_string_lossy();
        f == t || f.ends_with(&format!("/{t}"))
    })
}

/// Metric names are checked against the exposition by the metrics tests, not here.
const METRIC_PREFIXES: &[&str] = &["edgehub_", "iotedge_", "process_", "edgeAgent_"];

/// A bare `snake_case` name with at least one underscore: a function, a field or a label value.
fn is_snake_ident(t: &str) -> bool {
    let t = t.strip_suffix("()").unwrap_or(t);
    t.contains('_')
        && t.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && t.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// `Type::item`, `module::item` or `crate::module::item` (a trailing `()` allowed).
fn code_path(t: &str) -> Option<Vec<&str>> {
    let t = t.strip_suffix("()").unwrap_or(t);
    let segs: Vec<&str> = t.split("::").collect();
    let ident = |s: &str| {
        !s.is_empty()
            && s.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    (segs.len() >= 2 && segs.iter().all(|s| ident(s))).then_some(segs)
}

/// Does `src` define `name` (an item, a field or an enum variant)?
fn defines(src: &str, name: &str) -> bool {
    src.lines().any(|l| {
        let l = l.trim_start();
        // `pub`, `pub(crate)`, `pub(super)` …
        let l = match l.strip_prefix("pub(") {
            Some(rest) => rest.split_once(") ").map_or(l, |(_, after)| after),
            None => l.strip_prefix("pub ").unwrap_or(l),
        };
        let l = l.strip_prefix("async ").unwrap_or(l);
        let l = l.strip_prefix("const ").unwrap_or(l);
        for kw in [
            "fn ", "struct ", "enum ", "trait ", "type ", "static ", "mod ", "",
        ] {
            if let Some(rest) = l.strip_prefix(kw) {
                if let Some(after) = rest.strip_prefix(name) {
                    let next = after.chars().next();
                    let item = !kw.is_empty()
                        && matches!(next, Some('(' | '<' | ' ' | ':' | ';' | '{') | None);
                    let member = kw.is_empty() && matches!(next, Some('(' | ',' | ':' | ' ' | '{'));
                    if item || member {
                        return true;
                    }
                }
            }
        }
        false
    })
}

#[test]
fn architecture_names_only_what_exists() {
    let doc = std::fs::read_to_string(repo().join("docs/architecture.md")).unwrap();
    let files = tree();
    let sources: Vec<(String, String)> = files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "rs"))
        .map(|f| {
            let text = std::fs::read_to_string(repo().join(f)).unwrap_or_default();
            (f.to_string_lossy().into_owned(), text)
        })
        .collect();
    let mut missing = Vec::new();
    for t in backticked(&doc) {
        if is_path(&t) {
            if !path_exists(&t, &files) {
                missing.push(format!("file `{t}`"));
            }
        } else if is_snake_ident(&t) {
            let name = t.strip_suffix("()").unwrap_or(&t);
            let quoted = format!("\"{name}\"");
            let found = METRIC_PREFIXES.iter().any(|p| name.starts_with(p))
                || sources
                    .iter()
                    .any(|(_, src)| defines(src, name) || src.contains(&quoted));
            if !found {
                missing.push(format!("name `{t}`"));
            }
        } else if let Some(segs) = code_path(&t) {
            let (owner, item) = (segs[segs.len() - 2], segs[segs.len() - 1]);
            if FOREIGN_TYPES.contains(&segs[0]) {
                continue;
            }
            let owner_is_type = owner.chars().next().is_some_and(|c| c.is_ascii_uppercase());
            let found = sources.iter().any(|(path, src)| {
                let owned = if owner_is_type {
                    src.contains(&format!("impl {owner}"))
                        || src.contains(&format!("enum {owner}"))
                        || src.contains(&format!("for {owner}"))
                        || src.contains(&format!("trait {owner}"))
                } else {
                    // A module path: the item lives in the crate or file of that name.
                    path.split('/')
                        .any(|c| c == owner || c == format!("{owner}.rs"))
                };
                owned && defines(src, item)
            });
            if !found {
                missing.push(format!("code `{t}`"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/architecture.md names what the tree no longer has (rename or remove it in the doc):\n  {}",
        missing.join("\n  ")
    );
}

/// The fenced `sh` blocks of the README's "The hub alone" section, in order.
fn readme_hub_blocks() -> Vec<String> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("The hub alone"))
        .expect("README has a section \"The hub alone\"");
    section
        .split("```sh\n")
        .skip(1)
        .filter_map(|b| b.split("\n```").next().map(str::to_owned))
        .collect()
}

/// `cargo run --release --` as a user types it, replaced by the binary it would run.
fn as_built(block: &str) -> String {
    block.replace(
        "cargo run --release --",
        &format!("exec '{}'", bin().display()),
    )
}

#[test]
fn the_readmes_hub_example_runs_as_written() {
    let blocks = readme_hub_blocks();
    assert_eq!(blocks.len(), 2, "the hub, then a module: {blocks:?}");
    let _ports = FixedPorts::lock(); // the example uses the documented fixed ports
    let dir = tempdir("readme-hub");
    std::fs::copy(
        repo().join("deployment.template.json"),
        dir.join("deployment.template.json"),
    )
    .unwrap();
    let sh = |name: &str, block: &str| {
        let mut cmd = Command::new("bash");
        cmd.args(["-euo", "pipefail", "-c", &as_built(block)])
            .current_dir(&dir);
        Proc::spawn(name, cmd)
    };
    let mut hub = sh("hub", &blocks[0]);
    hub.wait_for_line(Duration::from_secs(30), |l| l.contains("hub ready"));
    let mut producer = sh("producer", &blocks[1]);
    producer.wait_for_line(Duration::from_secs(30), |l| {
        l.contains("connected to edge hub")
    });
    hub.wait_for_line(Duration::from_secs(10), |l| {
        l.contains("client connected client=local-edge-device/producer")
    });
    assert!(producer.terminate().success(), "{}", producer.output());
    assert!(hub.terminate().success(), "{}", hub.output());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn architecture_describes_every_test_file() {
    let doc = std::fs::read_to_string(repo().join("docs/architecture.md")).unwrap();
    let named = backticked(&doc);
    let undescribed: Vec<String> = tree()
        .into_iter()
        .map(|f| f.to_string_lossy().into_owned())
        .filter(|f| {
            let parts: Vec<&str> = f.split('/').collect();
            // `tests/x.rs` and `<crate>/tests/x.rs`, not the helpers under `tests/support/`.
            let in_tests = matches!(parts.as_slice(), ["tests", _] | [_, "tests", _]);
            in_tests && f.ends_with(".rs")
        })
        .filter(|f| {
            let base = f.rsplit('/').next().unwrap_or(f);
            !named.contains(f.as_str()) && !named.contains(base)
        })
        .collect();
    assert!(
        undescribed.is_empty(),
        "test files that the \"Tests\" section of docs/architecture.md does not describe:\n  {}",
        undescribed.join("\n  ")
    );
}
