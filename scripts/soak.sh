#!/usr/bin/env bash
# Soak test (not part of CI): runs the local run for a while at the closed-loop rate and reports the
# resident memory of the hub, the producer and the consumer after a warm-up and at the end, read
# from each process's own /metrics (process_resident_memory_bytes). Fails when any grows by more
# than 10 %.
#   scripts/soak.sh                # 10 minutes
#   SOAK_MINUTES=30 scripts/soak.sh -- --rate 50   # extra arguments go to the local run
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${SOAK_MINUTES:-10}
warmup=${SOAK_WARMUP_SECONDS:-60}
[ "${1:-}" = "--" ] && shift
cargo build --release --quiet
state=$(mktemp -d /tmp/soak.XXXXXX)
log="$state/run.log"
target/release/method-vs-message --state-dir "$state/state" --mqtt-port 0 --https-port 0 \
  --hub-metrics-port 0 --producer-metrics-port 0 --consumer-metrics-port 0 \
  --summary-interval 60s --duration "$((minutes * 60 + warmup))s" "$@" >"$log" 2>&1 &
run=$!
trap 'kill $run 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q "metrics: hub http://" "$log" && break; sleep 0.2; done
line=$(grep -m1 "metrics: hub http://" "$log") || { cat "$log"; exit 1; }
addr() { sed -E "s|.*$1 http://([^/]+)/metrics.*|\1|" <<<"$line"; }
rss() { curl -fsS "http://$(addr "$1")/metrics" | awk '/^process_resident_memory_bytes/ {print $2}'; }
sleep "$warmup"
declare -A start
for p in hub producer consumer; do start[$p]=$(rss "$p"); done
sleep "$((minutes * 60 - 5))"
status=0
printf "%-9s %12s %12s %8s\n" process "RSS start" "RSS end" growth
for p in hub producer consumer; do
  end=$(rss "$p")
  growth=$(awk -v a="${start[$p]}" -v b="$end" 'BEGIN {printf "%.1f", (b - a) * 100 / a}')
  printf "%-9s %10.1f MB %10.1f MB %7s%%\n" "$p" "$(awk -v v="${start[$p]}" 'BEGIN{print v/1048576}')" "$(awk -v v="$end" 'BEGIN{print v/1048576}')" "$growth"
  awk -v g="$growth" 'BEGIN {exit !(g > 10)}' && status=1
done
wait "$run" || true
grep -E '^\[consumer\] +(Method|Messages)|Total p50' "$log" | tail -6 || true
exit $status
