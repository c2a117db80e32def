#!/usr/bin/env bash
# The benchmark of issue 13 from a fresh Debian machine: installs Debian's mosquitto if missing
# (its service is stopped; the bench starts its own on a free port), builds in release and runs
# target/release/bench with the arguments given, e.g.
#   scripts/bench.sh --quick                 # about a minute
#   scripts/bench.sh --json bench.json       # the full run, rows also as JSON
#   scripts/bench.sh --alloc                 # heap allocations per message exchange and per method call in the hub
#   scripts/bench.sh --footprint             # RSS and CPU per module, as the images' binaries (~16 min)
#   scripts/bench.sh --footprint --quick     # the same, 1 minute per rate
set -euo pipefail
cd "$(dirname "$0")/.."
footprint=false
for arg in "$@"; do [ "$arg" = "--footprint" ] && footprint=true; done
if $footprint; then
  # The images' binaries (stripped, profile dist), built as the Dockerfile builds them; no mosquitto.
  cargo build --profile dist -p hub --bin hub -p producer --bin producer -p consumer --bin consumer
  cargo build --release -p bench
  exec target/release/bench "$@"
fi
if ! command -v mosquitto >/dev/null && [ ! -x /usr/sbin/mosquitto ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends mosquitto >/dev/null
  # The package starts a broker on :1883 where an init system runs; the bench needs none of it.
  ($SUDO service mosquitto stop || $SUDO systemctl stop mosquitto || true) >/dev/null 2>&1
fi
# The launcher (its `hub` subcommand and the modules) and the bench, one release build.
cargo build --release -p method-vs-message -p bench
exec target/release/bench "$@"
