#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine (run as root):
# the real Prometheus/promtool, Alertmanager's amtool, headless Chromium, and a Python virtualenv
# (.venv) with pinned Azure IoT SDK, OpenMetrics parser and compose-spec validator.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  # The Debian package starts a service on :9090 where systemd runs; tests use their own instances.
  (service prometheus stop || systemctl stop prometheus || true) >/dev/null 2>&1
fi
# Alertmanager's amtool validates alertmanager.yml (tests/alerts.rs); its service is not needed.
if ! command -v amtool >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends prometheus-alertmanager >/dev/null
  (service prometheus-alertmanager stop || systemctl stop prometheus-alertmanager || true) >/dev/null 2>&1
fi
# Headless Chromium opens the HTML report in tests/report.rs (DevTools protocol, screenshot).
if ! command -v chromium >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
# Every time: pins may have changed since the virtualenv was made (a no-op when they have not).
.venv/bin/pip install -q --disable-pip-version-check -r tests/python/requirements.txt
