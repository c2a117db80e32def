#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine (as root): installs what the tests need
# (Debian's prometheus/promtool, amtool, chromium, a Python virtualenv with the pinned Azure IoT
# SDK and validators), checks formatting, lints and docs (any warning fails), builds once in
# release, and runs every test. A missing tool fails a test; nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-test-env.sh
export PATH="$PWD/.venv/bin:$PATH"
cargo fmt --all --check
cargo clippy --release --workspace --all-targets -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --release --workspace --no-deps
cargo build --release --workspace --all-targets
cargo test --release --workspace --no-fail-fast -- --test-threads=2
# The README's other command must not rebuild anything after this one (features are unified by the
# workspace-hack crate; tests/features.rs names what drifted).
rerun=$(cargo build --release 2>&1)
if grep -q 'Compiling' <<<"$rerun"; then
    printf '%s\n' "$rerun"
    echo "error: \`cargo run --release\` would recompile after the test command (see tests/features.rs)" >&2
    exit 1
fi
