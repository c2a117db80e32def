#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine (run as root):
# the real Prometheus/promtool, and a Python virtualenv (.venv) with pinned
# Azure IoT SDK, OpenMetrics parser and compose-spec validator.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  # The Debian package starts a service on :9090 where systemd runs; tests use their own instances.
  (service prometheus stop || systemctl stop prometheus || true) >/dev/null 2>&1
fi
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import azure.iot.device, prometheus_client, check_jsonschema' 2>/dev/null; then
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r tests/python/requirements.txt
fi
