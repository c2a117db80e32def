"""The images as a device runs them: built from the one Dockerfile, run with podman.

Builds the hub, producer and consumer images from already-built binaries (BINARIES=prebuilt, so
the workspace is not compiled again), runs the three as containers on a podman network with
docker-compose.yml's command, environment and volumes, and checks what a user would look at:
- each image's size (printed; at most 30 MB);
- the consumer prints the seed's table with non-zero counts for both kinds;
- every container's /metrics answers, and its image's HEALTHCHECK passes;
- every process runs as the non-root user 10001;
- the hub's state (CA, endpoints, store) lives in its volume;
- after the hub container is killed and started again, both kinds succeed again.

Usage: container_stack.py REPO BINARIES_DIR. Needs root, podman with runc and netavark, and the
base image debian:bookworm-slim (scripts/setup-test-env.sh makes all of these). Every container,
network, volume and image it makes is removed at the end.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import yaml

MAX_IMAGE_BYTES = 30 * 1000 * 1000
USER_ID = "10001"
TAG = f"mvm-test-{os.getpid()}"
NET = f"{TAG}-net"
VOLUME = f"{TAG}-hub-state"


def podman(*args: str, check: bool = True, capture: bool = True) -> str:
    r = subprocess.run(
        ["podman", *args],
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.STDOUT if capture else None,
        text=True,
        timeout=600,
    )
    if check and r.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)} failed ({r.returncode}):\n{r.stdout}")
    return r.stdout or ""


def wait(what: str, within: float, probe):
    deadline = time.monotonic() + within
    last = None
    while time.monotonic() < deadline:
        try:
            value = probe()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - the probe's failure is the reason we wait
            last = e
        time.sleep(0.5)
    raise AssertionError(f"timed out after {within}s waiting for {what} (last error: {last})")


def container(service: str) -> str:
    return f"{TAG}-{service}"


def ip_of(service: str) -> str:
    fmt = "{{(index .NetworkSettings.Networks \"%s\").IPAddress}}" % NET
    return podman("inspect", "-f", fmt, container(service)).strip()


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        if r.status != 200:
            raise RuntimeError(f"{url}: HTTP {r.status}")
        return r.read().decode()


def build_images(repo: pathlib.Path, binaries: pathlib.Path, images: dict[str, str]):
    """Builds the three images into `images` (service -> tag), each removed by the caller."""
    ctx = pathlib.Path(tempfile.mkdtemp(prefix=f"{TAG}-ctx-"))
    try:
        for name in ("hub", "producer", "consumer"):
            src = binaries / name
            if not src.is_file():
                raise AssertionError(f"{src} is missing: build the workspace first (cargo build --release --workspace)")
            shutil.copy2(src, ctx / name)
            # Release binaries keep line tables for backtraces; images ship them stripped.
            subprocess.run(["strip", str(ctx / name)], check=True)
        for name in ("hub", "producer", "consumer"):
            tag = f"localhost/{TAG}/{name}:test"
            images[name] = tag
            started = time.monotonic()
            podman(
                "build", "--format", "docker", "-f", str(repo / "Dockerfile"),
                "--target", name, "--build-arg", "BINARIES=prebuilt", "-t", tag, str(ctx),
            )
            size = int(podman("image", "inspect", "--format", "{{.Size}}", tag).strip())
            print(f"image {name}: {size / 1e6:.1f} MB (built in {time.monotonic() - started:.1f} s)", flush=True)
            assert size <= MAX_IMAGE_BYTES, f"image {name} is {size} bytes, over {MAX_IMAGE_BYTES}"
    finally:
        shutil.rmtree(ctx, ignore_errors=True)


def run_service(repo: pathlib.Path, compose: dict, images: dict[str, str], service: str, overrides: dict[str, str]):
    spec = compose["services"][service]
    args = ["run", "-d", "--name", container(service), "--network", NET, "--network-alias", service]
    env = {k: str(v) for k, v in (spec.get("environment") or {}).items()}
    env.update(overrides)
    for k, v in env.items():
        args += ["-e", f"{k}={v}"]
    for volume in spec.get("volumes") or []:
        source, target, *mode = volume.split(":")
        if source.startswith("."):
            source = str((repo / source).resolve())
        elif source == "hub-state":
            source = VOLUME
        args += ["-v", ":".join([source, target, *mode])]
    args.append(images[service])
    args += [str(a) for a in spec.get("command") or []]
    podman(*args)


def table_counts(logs: str) -> dict[str, int]:
    """The count of the last table of each kind in the consumer's output (the seed's format)."""
    counts: dict[str, int] = {}
    kind = None
    for line in logs.splitlines():
        header = re.match(r"^(Messages|Method)\s+\|", line)
        if header:
            kind = header.group(1)
            continue
        row = re.match(r"^\s*(\d+) \|\s+P->C", line)
        if row and kind:
            counts[kind] = int(row.group(1))
    return counts


def ok_exchanges(metrics: str) -> dict[str, float]:
    out = {}
    for line in metrics.splitlines():
        m = re.match(r'^iotedge_exchanges_total\{(.*)\} (\S+)', line)
        if m and 'outcome="ok"' in m.group(1):
            kind = re.search(r'kind="(\w+)"', m.group(1))
            if kind:
                out[kind.group(1)] = out.get(kind.group(1), 0.0) + float(m.group(2))
    return out


def metrics_port(compose: dict, service: str) -> int:
    spec = compose["services"][service]
    if service == "hub":
        flag = next(a for a in spec["command"] if str(a).startswith("--metrics-port="))
        return int(flag.split("=", 1)[1])
    return int(spec["environment"]["METRICS_ADDR"].rsplit(":", 1)[1])


def check_user(service: str):
    pid = podman("inspect", "-f", "{{.State.Pid}}", container(service)).strip()
    status = pathlib.Path(f"/proc/{pid}/status").read_text()
    for field in ("Uid", "Gid"):
        ids = re.search(rf"^{field}:\s+(.*)$", status, re.M).group(1).split()
        assert all(i == USER_ID for i in ids), f"{service} runs with {field} {ids}, not {USER_ID}"
    # And nothing else runs in the container (no shell, no init).
    top = podman("top", container(service), "user", "comm").strip().splitlines()[1:]
    assert len(top) == 1, f"{service}: more than one process: {top}"
    print(f"{service}: pid {pid} runs as {USER_ID}:{USER_ID} ({top[0].split()[-1]})", flush=True)


def main() -> int:
    repo = pathlib.Path(sys.argv[1]).resolve()
    binaries = pathlib.Path(sys.argv[2]).resolve()
    compose = yaml.safe_load((repo / "docker-compose.yml").read_text())
    images: dict[str, str] = {}
    try:
        build_images(repo, binaries, images)
        podman("network", "create", NET)
        podman("volume", "create", VOLUME)
        mountpoint = pathlib.Path(podman("volume", "inspect", "-f", "{{.Mountpoint}}", VOLUME).strip())

        run_service(repo, compose, images, "hub", {})
        hub_metrics = metrics_port(compose, "hub")
        wait("the hub's CA in its volume", 60, lambda: (mountpoint / "ca.pem").is_file())
        wait("the hub's /metrics", 60, lambda: http_get(f"http://{ip_of('hub')}:{hub_metrics}/metrics"))
        # A table every 5 s instead of compose's 60 s, so the test sees one soon.
        run_service(repo, compose, images, "producer", {})
        run_service(repo, compose, images, "consumer", {"SUMMARY_INTERVAL": "5s"})

        def both_counted():
            counts = table_counts(podman("logs", container("consumer")))
            return counts if counts.get("Messages", 0) > 0 and counts.get("Method", 0) > 0 else None

        counts = wait("a consumer table with both kinds counted", 90, both_counted)
        print(f"consumer table counts: {counts}", flush=True)

        for service in ("hub", "producer", "consumer"):
            port = metrics_port(compose, service)
            text = http_get(f"http://{ip_of(service)}:{port}/metrics")
            assert "# EOF" in text or "# TYPE" in text, f"{service}: /metrics is not Prometheus text"
            print(f"{service}: /metrics answers on {port} ({len(text)} bytes)", flush=True)
            podman("healthcheck", "run", container(service))
            print(f"{service}: HEALTHCHECK passes", flush=True)
            check_user(service)

        state = sorted(p.name for p in mountpoint.iterdir())
        for needed in ("ca.pem", "endpoints.json", "store.redb"):
            assert needed in state, f"the hub's volume lacks {needed}: {state}"
        print(f"hub volume holds: {state}", flush=True)

        consumer_metrics = f"http://{ip_of('consumer')}:{metrics_port(compose, 'consumer')}/metrics"
        podman("kill", container("hub"))
        time.sleep(3)
        # The outage is real: nothing succeeds while the hub is gone.
        before = ok_exchanges(http_get(consumer_metrics))
        time.sleep(1)
        during = ok_exchanges(http_get(consumer_metrics))
        assert during == before, f"exchanges succeeded without a hub: {before} -> {during}"
        podman("start", container("hub"))
        down_at = time.monotonic()

        def both_resumed():
            now = ok_exchanges(http_get(consumer_metrics))
            return now if all(now.get(k, 0) > before.get(k, 0) + 5 for k in ("method", "message")) else None

        after = wait("both kinds succeeding after the hub restarted", 120, both_resumed)
        print(f"after the hub restart: ok {before} -> {after} within {time.monotonic() - down_at:.1f} s", flush=True)
        for service in ("producer", "consumer"):
            running = podman("inspect", "-f", "{{.State.Running}}", container(service)).strip()
            assert running == "true", f"{service} is not running after the hub restart"
        print("container stack OK", flush=True)
        return 0
    except Exception:
        for service in ("hub", "producer", "consumer"):
            logs = podman("logs", "--tail", "40", container(service), check=False)
            print(f"--- last logs of {service} ---\n{logs}", file=sys.stderr)
        raise
    finally:
        for service in ("consumer", "producer", "hub"):
            podman("rm", "-f", "-t", "2", container(service), check=False)
        podman("network", "rm", "-f", NET, check=False)
        podman("volume", "rm", "-f", VOLUME, check=False)
        for tag in images.values():
            podman("rmi", "-f", tag, check=False)


if __name__ == "__main__":
    sys.exit(main())
