#!/usr/bin/env python3
"""Static checks of the observability stack and deployment files, for machines without Docker or
Grafana. Lists every problem found and exits 1 if there is any.

    .venv/bin/python tests/stack/check_static.py

- docker-compose.yml: the compose-spec schema (`check-jsonschema --builtin-schema
  vendor.compose-spec`), pinned images, healthchecks, mounts that exist, module identities that
  match compose/identities.json, metrics ports that match prometheus.yml;
- prometheus.yml: `promtool check config`, the fixed targets (edgeAgent's included), `device`/`module`
  labels, exemplars; rule_files that match files and are mounted next to it in compose, the
  Alertmanager target and service with its mounted alertmanager.yml;
- prometheus-agent.yml: the four jobs on the module network, and a remote-write filter that lets
  every metric the dashboard queries through;
- grafana/: provisioning YAML, and for each dashboard unique panel ids and per-panel refIds,
  importable anywhere (`__inputs`, a `datasource` variable that every panel, target and variable
  query uses, no fixed datasource uid, provisioning still selecting the provisioned Prometheus),
  links without a hard-coded Jaeger/localhost URL (the `trace_url` variable), heatmaps fed with
  `format: heatmap`, exemplars on the panels that promise trace links, template variables that
  exist and are used, the Runtime row with its edgeAgent queries per module (and the restart
  alert's threshold), and every PromQL expression parsed by `promtool check rules`;
- deployment.template.json: an IoT Edge manifest template (schema 1.1) with the seed's routes, the
  modules' env, image placeholders and no metrics port published on the host;
- the Dockerfile (one build stage, targets hub/producer/consumer): BuildKit's parser (PyPI `dockerfile`) and hadolint, non-root
  runtime, a HEALTHCHECK per image running the binary's `healthcheck`, CONFIG/BASE_TAG build args;
  .dockerignore.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import query_dashboard  # noqa: E402  (the same extraction and substitution as the live check)

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the virtualenv's bin: check-jsonschema, hadolint

PROBLEMS: list[str] = []


def problem(where: str, msg: str) -> None:
    PROBLEMS.append(f"{where}: {msg}")


def load_yaml(rel: str):
    try:
        return yaml.safe_load((REPO / rel).read_text())
    except (OSError, yaml.YAMLError) as e:
        problem(rel, f"cannot read: {e}")
        return None


def load_json(rel: str):
    try:
        return json.loads((REPO / rel).read_text())
    except (OSError, ValueError) as e:
        problem(rel, f"cannot read: {e}")
        return None


def tool(name: str) -> str | None:
    for candidate in (BIN / name, shutil.which(name)):
        if candidate and Path(candidate).exists():
            return str(candidate)
    problem(name, "not installed (scripts/setup-test-env.sh installs it)")
    return None


def run(cmd: list[str], where: str) -> bool:
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if r.returncode != 0:
        out = (r.stdout + r.stderr).strip()
        problem(where, f"`{' '.join(Path(cmd[0]).name if i == 0 else c for i, c in enumerate(cmd))}` failed:\n    "
                + out.replace("\n", "\n    "))
        return False
    return True


# ---------------------------------------------------------------------------------------------
# Facts shared by the files (they must agree with each other)

PROM_TARGETS = {"hub:9600", "producer:9601", "consumer:9602", "edgeAgent:9600"}
# prometheus-agent.yml: every job on the device's module network, each serving /metrics on 9600.
AGENT_TARGETS = {"edgeHub": "edgeHub:9600", "producer": "producer:9600", "consumer": "consumer:9600",
                 "edgeAgent": "edgeAgent:9600"}
SEED_ROUTES = {
    "ConsumerToProducer": 'FROM /messages/modules/consumer/outputs/GetTimeMessage INTO BrokeredEndpoint("/modules/producer/inputs/GetTimeMessage")',
    "ProducerToConsumer": 'FROM /messages/modules/producer/outputs/GetTimeMessage INTO BrokeredEndpoint("/modules/consumer/inputs/GetTimeMessage")',
}
SEED_FLAG_TRUE = {"y", "yes", "true", "on", "1"}
HUMANTIME_RE = re.compile(r"^\s*(\d+(\.\d+)?\s*(ns|us|µs|ms|s|sec|secs|m|min|mins|h|hr|hrs|d)\s*)+$")


# ---------------------------------------------------------------------------------------------
# prometheus.yml

def check_prometheus() -> dict:
    rel = "prometheus.yml"
    promtool = tool("promtool")
    if promtool:
        run([promtool, "check", "config", rel], rel)
    text = (REPO / rel).read_text() if (REPO / rel).exists() else ""
    cfg = load_yaml(rel) or {}
    if "--enable-feature=exemplar-storage" not in text:
        problem(rel, "should say (in a comment) that exemplars need --enable-feature=exemplar-storage")
    if not re.search(r"^#\s*remote_write:", text, re.M):
        problem(rel, "no commented remote_write example for fleets")
    ex = ((cfg.get("storage") or {}).get("exemplars") or {}).get("max_exemplars")
    if not isinstance(ex, int) or ex <= 0:
        problem(rel, "storage.exemplars.max_exemplars must be a positive integer")
    if (cfg.get("global") or {}).get("scrape_interval") != "5s":
        problem(rel, "global.scrape_interval should be 5s (Grafana's timeInterval assumes it)")
    jobs = {}
    targets_seen = set()
    for job in cfg.get("scrape_configs") or []:
        name = job.get("job_name")
        targets = [t for sc in job.get("static_configs") or [] for t in sc.get("targets") or []]
        labels = {k: v for sc in job.get("static_configs") or [] for k, v in (sc.get("labels") or {}).items()}
        targets_seen.update(targets)
        jobs[name] = targets
        if "device" not in labels:
            problem(rel, f"job {name}: targets have no `device` label")
        module_rule = any(r.get("target_label") == "module" for r in job.get("relabel_configs") or [])
        if not module_rule and "module" not in labels:
            problem(rel, f"job {name}: no `module` label (relabel from job or a static label)")
    missing = PROM_TARGETS - targets_seen
    if missing:
        problem(rel, f"targets {sorted(missing)} missing (the local run rewrites exactly these strings)")
    if jobs.get("edgeAgent") != ["edgeAgent:9600"]:
        problem(rel, "no job `edgeAgent` scraping edgeAgent:9600 (the dashboard's Runtime row and the restart alert)")
    comments = re.findall(r"(?:^#.*\n)+", text, re.M)
    if not any("edgeAgent" in c and re.search(r"\bno alert\b", c, re.I) for c in comments):
        problem(rel, "should say (in a comment) that the edgeAgent target, down without IoT Edge, fires no alert")
    return jobs


def check_prometheus_agent(dashboard_metrics: set[str]) -> None:
    """The device-side agent scrapes the four jobs and forwards every metric the dashboard uses."""
    rel = "prometheus-agent.yml"
    cfg = load_yaml(rel) or {}
    jobs = {j.get("job_name"): [t for sc in j.get("static_configs") or [] for t in sc.get("targets") or []]
            for j in cfg.get("scrape_configs") or []}
    for job, target in AGENT_TARGETS.items():
        if jobs.get(job) != [target]:
            problem(rel, f"job {job} should scrape {target} (tests/fleet.rs rewrites exactly these strings)")
    for rw in cfg.get("remote_write") or []:
        for r in rw.get("write_relabel_configs") or []:
            if r.get("action") != "keep" or r.get("source_labels") != ["__name__"]:
                continue
            keep = re.compile(f"(?:{r.get('regex', '(.*)')})")  # Prometheus anchors relabel regexes
            dropped = sorted(m for m in dashboard_metrics if not keep.fullmatch(m))
            if dropped:
                problem(rel, f"remote_write {rw.get('name')}: drops {dropped}, which the dashboard queries")


# ---------------------------------------------------------------------------------------------
# grafana provisioning + dashboards

GRAFANA_BUILTIN_VARS = {"__rate_interval", "__interval", "__interval_ms", "__range", "__range_s",
                        "__range_ms", "__from", "__to", "__dashboard", "__org", "__user", "__name",
                        "__auto", "__all", "timeFilter", "__timeFilter"}
VAR_RE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)(?::[^\]]*)?\]\]|\$(\w+)")
SELECTOR_RE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}")
OUR_METRIC_RE = re.compile(r"\b((?:iotedge|edgehub|edgeAgent|process)_[a-zA-Z0-9_:]+|up)\b(?!\s*[({])")
METRIC_NAME_RE = re.compile(r"\b((?:iotedge|edgehub|edgeAgent|process)_[a-zA-Z0-9_]+|up)\b")

# Every panel, target and variable query goes through the `datasource` variable, so that the
# dashboard imports into any Grafana; Grafana's own pseudo datasources need no mapping.
DS_VARIABLE = "datasource"
DS_REF = "${%s}" % DS_VARIABLE
GRAFANA_PSEUDO_DS = {"-- Grafana --", "grafana", "-- Mixed --", "-- Dashboard --"}
# Where the dashboard's links may not point: the compose stack's own addresses.
HARDCODED_URL_RE = re.compile(r"^\s*[a-z][a-z0-9+.-]*://(localhost|127\.[0-9.]+|\[::1\]|jaeger)([:/]|$)|:16686\b", re.I)
# The Runtime row: edgeAgent's metrics, per module (Azure/iotedge doc/BuiltInMetrics.md).
EDGE_AGENT_METRICS = {"edgeAgent_module_start_total", "edgeAgent_module_stop_total",
                      "edgeAgent_total_time_running_correctly_seconds",
                      "edgeAgent_total_time_expected_running_seconds"}
RESTART_ALERT = "IotEdgeModuleRestarting"
RESTART_THRESHOLD = "iotedge:alert_threshold:module_restarts_15m"


def check_provisioning() -> tuple[dict, str | None]:
    """Returns {uid: datasource} and the dashboards provider's path."""
    uids: dict[str, dict] = {}
    ds_dir = REPO / "grafana/provisioning/datasources"
    files = sorted(ds_dir.glob("*.y*ml"))
    if not files:
        problem("grafana/provisioning/datasources", "no datasource provisioning file")
    for f in files:
        rel = str(f.relative_to(REPO))
        doc = load_yaml(rel) or {}
        if doc.get("apiVersion") != 1:
            problem(rel, "apiVersion must be 1")
        for ds in doc.get("datasources") or []:
            uid = ds.get("uid")
            if not uid:
                problem(rel, f"datasource {ds.get('name')} has no uid (exemplar links reference uids)")
                continue
            if uid in uids:
                problem(rel, f"datasource uid {uid} defined twice")
            uids[uid] = ds
    proms = [ds for ds in uids.values() if ds.get("type") == "prometheus"]
    if len(proms) != 1:
        problem("grafana/provisioning/datasources",
                f"expected one Prometheus datasource (the dashboard's variable selects it by name), got {len(proms)}")
    if "jaeger" not in uids:
        problem("grafana/provisioning/datasources", "no trace datasource with uid `jaeger`")
    for prom in proms:
        dests = (prom.get("jsonData") or {}).get("exemplarTraceIdDestinations") or []
        if not any(d.get("name") == "trace_id" for d in dests):
            problem("grafana/provisioning/datasources", "Prometheus has no exemplarTraceIdDestinations entry named trace_id")
        for d in dests:
            if d.get("datasourceUid") and d["datasourceUid"] not in uids:
                problem("grafana/provisioning/datasources", f"exemplar destination uid {d['datasourceUid']} is not provisioned")
        if (prom.get("jsonData") or {}).get("timeInterval") != "5s":
            problem("grafana/provisioning/datasources", "Prometheus timeInterval should equal the scrape interval (5s)")

    path = None
    files = sorted((REPO / "grafana/provisioning/dashboards").glob("*.y*ml"))
    if not files:
        problem("grafana/provisioning/dashboards", "no dashboard provider file")
    for f in files:
        rel = str(f.relative_to(REPO))
        doc = load_yaml(rel) or {}
        for p in doc.get("providers") or []:
            if p.get("type") != "file":
                problem(rel, f"provider {p.get('name')}: type should be file")
            path = (p.get("options") or {}).get("path") or path
    if not path:
        problem("grafana/provisioning/dashboards", "no provider with options.path")
    return uids, path


def panels_of(dashboard: dict):
    for panel in dashboard.get("panels") or []:
        yield panel
        yield from panel.get("panels") or []


def walk(node, path: str = ""):
    """Yields (path, key, value) for every member of every object in a JSON document."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield path, k, v
            yield from walk(v, f"{path}.{k}" if path else k)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, f"{path}[{i}]")


def alert_rule(name: str) -> tuple[str, float | None]:
    """The expression of alert `name` in prometheus-rules.yml and the value of its restart threshold."""
    rules = load_yaml("prometheus-rules.yml") or {}
    expr, threshold = "", None
    for g in rules.get("groups") or []:
        for r in g.get("rules") or []:
            if r.get("alert") == name:
                expr = r.get("expr") or ""
            if r.get("record") == RESTART_THRESHOLD:
                m = re.fullmatch(r"\s*vector\(\s*([0-9.eE+-]+)\s*\)\s*", str(r.get("expr")))
                threshold = float(m.group(1)) if m else None
    return expr, threshold


def check_dashboard(rel: str, uids: dict) -> set[str]:
    """Returns the metric names the dashboard's queries use."""
    metrics: set[str] = set()
    d = load_json(rel)
    if d is None:
        return metrics
    if not d.get("uid"):
        problem(rel, "dashboard has no uid")
    var_list = (d.get("templating") or {}).get("list") or []
    variables = {v.get("name"): v for v in var_list}
    order = [v.get("name") for v in var_list]
    for needed in ("device", "module"):
        if needed not in variables:
            problem(rel, f"template variable `{needed}` missing")
    used_vars: set[str] = set()
    body = {k: v for k, v in d.items() if k != "__inputs"}
    inputs = {i.get("name"): i for i in d.get("__inputs") or []}

    def vars_in(where: str, text: str) -> None:
        for m in VAR_RE.finditer(text):
            name = m.group(1) or m.group(2) or m.group(3)
            if name in GRAFANA_BUILTIN_VARS or name in inputs:
                continue
            used_vars.add(name)
            if name not in variables:
                problem(rel, f"{where}: uses ${name}, which is not a template variable")

    # -- importable anywhere: __inputs, the datasource variable, no fixed datasource uid -----------
    ds_inputs = [n for n, i in inputs.items() if i.get("type") == "datasource" and i.get("pluginId") == "prometheus"]
    if len(ds_inputs) != 1:
        problem(rel, f"__inputs should declare one Prometheus datasource input (DS_PROMETHEUS), got {sorted(inputs)}")
    text = json.dumps(body)
    for name in inputs:
        if "${%s}" % name not in text:
            problem(rel, f"__inputs {name} is used nowhere: Grafana's import would ask for it for nothing")
    for m in re.finditer(r"\$\{(DS_\w+|VAR_\w+)\}", text):
        if m.group(1) not in inputs:
            problem(rel, f"${{{m.group(1)}}} is not declared in __inputs (the import would leave it as is)")
    dsv = variables.get(DS_VARIABLE)
    if not dsv:
        problem(rel, f"template variable `{DS_VARIABLE}` (type datasource) missing")
    else:
        used_vars.add(DS_VARIABLE)  # as the panels' datasource, checked below
        if dsv.get("type") != "datasource" or dsv.get("query") != "prometheus":
            problem(rel, f"variable {DS_VARIABLE}: should be of type datasource with query prometheus")
        if dsv.get("multi") or dsv.get("includeAll"):
            problem(rel, f"variable {DS_VARIABLE}: one datasource at a time (no multi, no All)")
        if dsv.get("regex"):
            problem(rel, f"variable {DS_VARIABLE}: a regex would hide other Grafanas' Prometheus datasources")
        # Grafana selects the option whose value (uid) equals current.value, else the one whose
        # name equals current.text, else the first. Import replaces ${DS_PROMETHEUS} with the uid
        # picked; file provisioning leaves it, so current.text must name the provisioned datasource.
        current = dsv.get("current") or {}
        if ds_inputs and current.get("value") != "${%s}" % ds_inputs[0]:
            problem(rel, f"variable {DS_VARIABLE}: current.value should be ${{{ds_inputs[0]}}} (what the import sets)")
        proms = [ds.get("name") for ds in uids.values() if ds.get("type") == "prometheus"]
        if current.get("text") not in proms:
            problem(rel, f"variable {DS_VARIABLE}: current.text {current.get('text')!r} should name the provisioned "
                         f"Prometheus datasource {proms} so that provisioning selects it")
        users = [n for n, v in variables.items() if n != DS_VARIABLE and DS_REF in json.dumps(v.get("datasource"))]
        if any(order.index(n) < order.index(DS_VARIABLE) for n in users):
            problem(rel, f"variable {DS_VARIABLE} must come before the variables that query it")
    for path, key, value in walk(body):
        if key == "datasource":
            if isinstance(value, str):
                problem(rel, f"{path}: datasource {value!r} by name: use {{\"uid\": \"{DS_REF}\"}}")
            elif isinstance(value, dict):
                uid = value.get("uid")
                if uid in GRAFANA_PSEUDO_DS:
                    continue
                if uid != DS_REF or value.get("type") != "prometheus":
                    problem(rel, f"{path}: datasource {value} should be {{\"type\": \"prometheus\", \"uid\": \"{DS_REF}\"}}")
        elif key in ("datasourceUid", "datasourceUID") and isinstance(value, str) and not value.startswith("$"):
            problem(rel, f"{path}.{key}: fixed datasource uid {value!r}")

    # -- links: the trace link from the trace_url variable, nothing pointing at the compose stack ---
    links = [(f"links[{i}]", l) for i, l in enumerate(d.get("links") or [])]
    for p in panels_of(d):
        links += [(f'panel {p.get("id")} link', l) for l in p.get("links") or []]
        links += [(f'panel {p.get("id")} data link', l)
                  for l in ((p.get("fieldConfig") or {}).get("defaults") or {}).get("links") or []]
    for where, link in links:
        url = link.get("url") or ""
        vars_in(where, url)
        if HARDCODED_URL_RE.search(url):
            problem(rel, f"{where}: hard-coded {url!r}: take the address from a variable (trace_url)")
    trace_links = [l.get("url") or "" for _, l in links
                   if re.search(r"jaeger|trace", (l.get("title") or "") + (l.get("tooltip") or ""), re.I)]
    if not trace_links:
        problem(rel, "no Jaeger/traces link")
    for url in trace_links:
        if not re.match(r"^\$\{trace_url\}|^\$trace_url\b", url):
            problem(rel, f"the traces link {url!r} should start with ${{trace_url}}")
    tv = variables.get("trace_url")
    if not tv:
        problem(rel, "template variable `trace_url` (the Jaeger UI's base URL) missing")
    elif tv.get("type") not in ("textbox", "constant") or not re.match(r"^https?://[^/]+$", tv.get("query") or ""):
        problem(rel, "variable trace_url: a textbox or constant whose default is a base URL like http://localhost:16686")

    for name, v in variables.items():
        where = f"variable {name}"
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        if v.get("type") == "query":
            if not q:
                problem(rel, f"{where}: no query")
            elif not q.strip().startswith("label_values("):
                problem(rel, f"{where}: expected a label_values(...) query, got {q!r}")
            if not v.get("datasource"):
                problem(rel, f"{where}: no datasource (Grafana would use its default, not ${DS_VARIABLE})")
            vars_in(where, q or "")
            metrics.update(METRIC_NAME_RE.findall(q or ""))
        if name == "module" and q and '$device' not in q:
            problem(rel, f"{where}: should be filtered by $device")

    ids: dict[int, str] = {}
    boxes = []
    for p in panels_of(d):
        pid = p.get("id")
        title = p.get("title", "")
        where = f'panel {pid} "{title}"'
        if not isinstance(pid, int):
            problem(rel, f'panel "{title}": id must be an integer')
        elif pid in ids:
            problem(rel, f'{where}: id also used by "{ids[pid]}"')
        else:
            ids[pid] = title
        gp = p.get("gridPos") or {}
        if not all(isinstance(gp.get(k), int) for k in ("x", "y", "w", "h")):
            problem(rel, f"{where}: gridPos needs integer x, y, w, h")
        elif gp["x"] + gp["w"] > 24:
            problem(rel, f"{where}: wider than the 24-column grid")
        else:
            for other_where, o in boxes:
                if (gp["x"] < o["x"] + o["w"] and o["x"] < gp["x"] + gp["w"]
                        and gp["y"] < o["y"] + o["h"] and o["y"] < gp["y"] + gp["h"]):
                    problem(rel, f"{where}: overlaps {other_where}")
            boxes.append((where, gp))
        if p.get("type") == "row":
            continue
        if not p.get("datasource"):
            problem(rel, f"{where}: no datasource (Grafana would use its default, not ${DS_VARIABLE})")
        targets = p.get("targets") or []
        if not targets:
            problem(rel, f"{where}: no targets")
        refids = [t.get("refId") for t in targets]
        if any(not r for r in refids):
            problem(rel, f"{where}: a target has no refId")
        dup = {r for r in refids if r and refids.count(r) > 1}
        if dup:
            problem(rel, f"{where}: duplicate refId(s) {sorted(dup)}")
        for t in targets:
            twhere = f"{where} target {t.get('refId')}"
            expr = t.get("expr") or ""
            if not expr:
                problem(rel, f"{twhere}: no expr")
                continue
            vars_in(twhere, expr)
            check_selectors(rel, twhere, expr)
            metrics.update(METRIC_NAME_RE.findall(expr))
            if p.get("type") == "heatmap" and t.get("format") != "heatmap":
                problem(rel, f"{twhere}: heatmap targets need format: heatmap")
            if t.get("exemplar") and (t.get("datasource") or p.get("datasource") or {}).get("type") != "prometheus":
                problem(rel, f"{twhere}: exemplars need the Prometheus datasource")
            if t.get("exemplar") and t.get("instant"):
                problem(rel, f"{twhere}: exemplars are shown on range queries, not instant ones")
        if p.get("type") == "heatmap":
            if (p.get("options") or {}).get("calculate") is not False:
                problem(rel, f"{where}: heatmap of Prometheus buckets needs options.calculate=false")
        promises = re.search(r"trace|exemplar", (p.get("description") or "") + " " + title, re.I)
        latency_buckets = any("iotedge_exchange_latency_seconds_bucket" in (t.get("expr") or "")
                              and not t.get("instant") for t in targets)
        if (promises or latency_buckets) and not any(t.get("exemplar") for t in targets):
            problem(rel, f"{where}: shows latency buckets or promises trace links but no target has exemplar: true")
    for name in variables:
        if name not in used_vars:
            problem(rel, f"template variable `{name}` is defined but used nowhere")
    if not any(p.get("type") == "heatmap" for p in panels_of(d)):
        problem(rel, "no heatmap panel")
    check_runtime_row(rel, d)
    check_promql_parses(rel, d)
    return metrics


def row_members(dashboard: dict) -> list[tuple[dict | None, dict]]:
    """(row, panel) for every non-row panel: a collapsed row holds its panels, an open row owns the
    panels after it up to the next row."""
    out, row = [], None
    for p in dashboard.get("panels") or []:
        if p.get("type") == "row":
            row = p
            out += [(p, inner) for inner in p.get("panels") or []]
        else:
            out.append((row, p))
    return out


def check_runtime_row(rel: str, d: dict) -> None:
    """The Runtime row: edgeAgent's restarts and time running correctly vs expected, per module,
    each panel saying that it needs edgeAgent; no edgeAgent query elsewhere."""
    members = row_members(d)
    rows = [p for p in d.get("panels") or [] if p.get("type") == "row" and "edgeAgent" in (p.get("title") or "")]
    if len(rows) != 1:
        problem(rel, "expected one row titled with edgeAgent (the Runtime row), got "
                     f"{[r.get('title') for r in rows]}")
        return
    row = rows[0]
    seen: set[str] = set()
    for owner, p in members:
        where = f'panel {p.get("id")} "{p.get("title", "")}"'
        exprs = [t.get("expr") or "" for t in p.get("targets") or []]
        uses = {m for e in exprs for m in re.findall(r"\bedgeAgent_\w+", e)}
        if owner is not row:
            if uses:
                problem(rel, f"{where}: queries {sorted(uses)} outside the Runtime row")
            continue
        if not uses:
            problem(rel, f"{where}: in the Runtime row without an edgeAgent query")
        desc = p.get("description") or ""
        if not (re.search(r"\bedgeAgent\b", desc) and re.search(r"real IoT Edge device", desc)):
            problem(rel, f"{where}: its description should say that it needs edgeAgent (a real IoT Edge device)")
        for e in exprs:
            for agg in re.finditer(r"\b(sum|max|min|avg|count)\s+by\s*\(([^)]*)\)", e):
                if "module_name" not in agg.group(2):
                    problem(rel, f"{where}: {agg.group(0)} loses edgeAgent's module_name (the panels are per module)")
            if "edgeAgent_" in e and not re.search(r"\bby\s*\([^)]*\bmodule_name\b", e):
                problem(rel, f"{where}: {e!r} is not per module (by (module_name))")
        seen |= uses
    missing = EDGE_AGENT_METRICS - seen
    if missing:
        problem(rel, f"the Runtime row does not show {sorted(missing)}")

    # The restart panel draws the alert's threshold over the alert's window.
    expr, threshold = alert_rule(RESTART_ALERT)
    window = re.search(r"edgeAgent_module_start_total\{[^}]*\}\[(\w+)\]", expr)
    if not window or threshold is None:
        problem("prometheus-rules.yml", f"no {RESTART_ALERT} over edgeAgent_module_start_total[...] with {RESTART_THRESHOLD}")
        return
    panels = [p for owner, p in members if owner is row and any(
        f"[{window.group(1)}]" in (t.get("expr") or "") and "edgeAgent_module_start_total" in (t.get("expr") or "")
        for t in p.get("targets") or [])]
    if not panels:
        problem(rel, f"no Runtime panel counts edgeAgent_module_start_total over the alert's [{window.group(1)}]")
    for p in panels:
        steps = ((((p.get("fieldConfig") or {}).get("defaults") or {}).get("thresholds") or {}).get("steps")) or []
        values = [s.get("value") for s in steps if s.get("value") is not None]
        if values != [threshold]:
            problem(rel, f'panel {p.get("id")}: threshold steps {values} should be the alert\'s {RESTART_THRESHOLD} '
                         f"= {threshold:g} (prometheus-rules.yml)")


def check_promql_parses(rel: str, d: dict) -> None:
    """Every expression (and every label_values selector), with Grafana's variables substituted as
    the live check does, must parse: each becomes a recording rule for `promtool check rules`."""
    promtool = tool("promtool")
    if not promtool:
        return
    template_vars = {v.get("name") for v in (d.get("templating") or {}).get("list") or []}
    rules, where = [], []
    for q in query_dashboard.extract(d):
        text, unknown = query_dashboard.substitute(q.raw, template_vars)
        if unknown:
            continue  # reported by check_dashboard
        if q.kind == "variable":
            m = query_dashboard.LABEL_VALUES_RE.match(text)
            if not m or not m.group("sel"):
                continue
            text = m.group("sel")
        rules.append({"record": f"dashboard:expr_{len(rules)}", "expr": text})
        where.append(q.where)
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "dashboard-exprs.yml"
        f.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
        r = subprocess.run([promtool, "check", "rules", str(f)], capture_output=True, text=True)
    if r.returncode != 0:
        out = r.stdout + r.stderr
        bad = {int(n) for n in re.findall(r"dashboard:expr_(\d+)", out)}
        for n in sorted(bad):
            problem(rel, f"{where[n]}: does not parse: {rules[n]['expr']}")
        if not bad:
            problem(rel, f"promtool check rules on the dashboard's expressions failed:\n    {out.strip()}")


def check_selectors(rel: str, where: str, expr: str) -> None:
    """Every selector filters on $device; module metrics (iotedge_*, process_*) also on $module,
    edgeAgent's (about a module) on module_name."""
    selectors = SELECTOR_RE.findall(expr)
    if not selectors:
        problem(rel, f"{where}: no label selector (every query filters device=~\"$device\")")
    for metric, matchers in selectors:
        m = matchers.replace(" ", "")
        if 'device=~"$device"' not in m:
            problem(rel, f'{where}: {metric}{{...}} does not filter device=~"$device"')
        if metric.startswith(("iotedge_", "process_")) and 'module=~"$module"' not in m:
            problem(rel, f'{where}: {metric}{{...}} does not filter module=~"$module"')
        if metric.startswith("edgeAgent_") and 'module_name=~"$module"' not in m:
            problem(rel, f'{where}: {metric}{{...}} does not filter module_name=~"$module"')
    for m in OUR_METRIC_RE.finditer(expr):
        problem(rel, f"{where}: {m.group(1)} without a label selector")


# ---------------------------------------------------------------------------------------------
# deployment.template.json (a real device's manifest, once `manifest` fills in its placeholders)

DEPLOYMENT = "deployment.template.json"

def parse_create_options(where: str, value) -> dict:
    if not isinstance(value, str):
        problem(DEPLOYMENT, f"{where}: createOptions must be a string of JSON")
        return {}
    try:
        opts = json.loads(value)
    except ValueError as e:
        problem(DEPLOYMENT, f"{where}: createOptions is not JSON: {e}")
        return {}
    if not isinstance(opts, dict):
        problem(DEPLOYMENT, f"{where}: createOptions must be a JSON object")
        return {}
    if len(value) > 4096:
        problem(DEPLOYMENT, f"{where}: createOptions longer than 4 KiB must be split (createOptions01...)")
    return opts


def host_ports(opts: dict) -> dict[str, list[str]]:
    bindings = (opts.get("HostConfig") or {}).get("PortBindings") or {}
    return {k: [b.get("HostPort") for b in v or []] for k, v in bindings.items()}


def check_metrics_not_published(where: str, opts: dict) -> None:
    """/metrics (and the consumer's /report) have no authentication: as IoT Edge does by default,
    nothing publishes 9600 on the host unless on the loopback."""
    bindings = ((opts.get("HostConfig") or {}).get("PortBindings") or {}).get("9600/tcp") or []
    for b in bindings:
        if (b or {}).get("HostIp") not in ("127.0.0.1", "::1"):
            problem(DEPLOYMENT, f"{where}: publishes its metrics port 9600 on {(b or {}).get('HostIp') or 'every interface'}")


def check_env(where: str, env) -> dict[str, str]:
    out = {}
    if not isinstance(env, dict):
        problem(DEPLOYMENT, f"{where}: env must be an object")
        return out
    for k, v in env.items():
        if not re.match(r"^[^+#$\s.]+$", k):
            problem(DEPLOYMENT, f"{where}: env name {k!r} is not allowed by edgeAgent")
        if not isinstance(v, dict) or set(v) != {"value"} or not isinstance(v["value"], (str, int, float, bool)):
            problem(DEPLOYMENT, f'{where}: env {k} must be {{"value": string|number|bool}}')
            continue
        out[k] = str(v["value"])
    return out


def check_deployment() -> dict:
    rel = DEPLOYMENT
    m = load_json(rel)
    if m is None:
        return {}
    mc = m.get("modulesContent")
    if not isinstance(mc, dict):
        problem(rel, "no modulesContent")
        return {}
    agent = (mc.get("$edgeAgent") or {}).get("properties.desired")
    hub = (mc.get("$edgeHub") or {}).get("properties.desired")
    if not isinstance(agent, dict) or not isinstance(hub, dict):
        problem(rel, "needs $edgeAgent and $edgeHub properties.desired")
        return {}
    if agent.get("schemaVersion") != "1.1":
        problem(rel, '$edgeAgent schemaVersion must be "1.1"')
    runtime = agent.get("runtime") or {}
    if runtime.get("type") != "docker" or not isinstance(runtime.get("settings"), dict):
        problem(rel, "$edgeAgent runtime must be {type: docker, settings: {...}}")
    enums = {"status": {"running", "stopped"}, "restartPolicy": {"never", "on-failure", "on-unhealthy", "always"},
             "type": {"docker"}}
    system = agent.get("systemModules") or {}
    for name, required in (("edgeAgent", ("type", "settings")),
                           ("edgeHub", ("type", "settings", "status", "restartPolicy"))):
        sm = system.get(name)
        if not isinstance(sm, dict):
            problem(rel, f"systemModules.{name} missing")
            continue
        for key in required:
            if key not in sm:
                problem(rel, f"systemModules.{name}.{key} missing")
        for key, allowed in enums.items():
            if key in sm and sm[key] not in allowed:
                problem(rel, f"systemModules.{name}.{key}={sm[key]!r} not one of {sorted(allowed)}")
        settings = sm.get("settings") or {}
        if not settings.get("image"):
            problem(rel, f"systemModules.{name}.settings.image missing")
        opts = parse_create_options(f"systemModules.{name}", settings.get("createOptions", "{}"))
        check_metrics_not_published(f"systemModules.{name}", opts)
        if name == "edgeHub":
            ports = host_ports(opts)
            for port in ("8883/tcp", "443/tcp"):
                if port not in ports:
                    problem(rel, f"edgeHub createOptions does not publish {port} (MQTT and HTTPS for the device's clients)")
    modules = agent.get("modules") or {}
    envs = {}
    for name in ("producer", "consumer"):
        mod = modules.get(name)
        where = f"modules.{name}"
        if not isinstance(mod, dict):
            problem(rel, f"{where} missing")
            continue
        for key in ("version", "type", "status", "restartPolicy", "settings"):
            if key not in mod:
                problem(rel, f"{where}.{key} missing")
        for key, allowed in enums.items():
            if key in mod and mod[key] not in allowed:
                problem(rel, f"{where}.{key}={mod[key]!r} not one of {sorted(allowed)}")
        settings = mod.get("settings") or {}
        image = settings.get("image")
        if image != f"${{{name.upper()}_IMAGE}}":
            problem(rel, f"{where}.settings.image should be the placeholder ${{{name.upper()}_IMAGE}}, got {image!r}")
        opts = parse_create_options(where, settings.get("createOptions"))
        check_metrics_not_published(where, opts)
        env = check_env(where, mod.get("env"))
        envs[name] = env
        need = ["METRICS_ADDR", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL",
                "OTEL_SERVICE_NAME", "OTEL_TRACES_SAMPLER_ARG"]
        if name == "consumer":
            need += ["EnableMethod", "EnableMessage", "SUMMARY_INTERVAL", "EXCHANGE_TIMEOUT"]
        for key in need:
            if key not in env:
                problem(rel, f"{where}: env {key} missing")
        if env.get("METRICS_ADDR") not in (None, "0.0.0.0:9600"):
            problem(rel, f"{where}: METRICS_ADDR should be 0.0.0.0:9600 in a container")
        if env.get("OTEL_EXPORTER_OTLP_PROTOCOL") not in (None, "grpc", "http/protobuf"):
            problem(rel, f"{where}: OTEL_EXPORTER_OTLP_PROTOCOL must be grpc or http/protobuf")
        if env.get("OTEL_SERVICE_NAME") not in (None, name):
            problem(rel, f"{where}: OTEL_SERVICE_NAME should be {name}")
        if "OTEL_TRACES_SAMPLER_ARG" in env:
            try:
                ratio = float(env["OTEL_TRACES_SAMPLER_ARG"])
                if not 0 <= ratio <= 1:
                    raise ValueError
            except ValueError:
                problem(rel, f"{where}: OTEL_TRACES_SAMPLER_ARG must be a ratio in [0, 1]")
        for key in ("EnableMethod", "EnableMessage"):
            if key in env and env[key].strip().lower() not in SEED_FLAG_TRUE | {"false", "no", "off", "0", "n"}:
                problem(rel, f"{where}: {key}={env[key]!r} is neither a seed true (y|yes|true|on|1) nor false")
        for key in ("SUMMARY_INTERVAL", "EXCHANGE_TIMEOUT"):
            if key in env and not HUMANTIME_RE.match(env[key]):
                problem(rel, f"{where}: {key}={env[key]!r} is not a duration like 60s")
    if modules.get("producer", {}).get("startupOrder", 0) > modules.get("consumer", {}).get("startupOrder", 2**32):
        problem(rel, "producer should start before consumer (startupOrder)")
    if hub.get("schemaVersion") not in ("1.0", "1.1", "1.2", "1.3"):
        problem(rel, "$edgeHub schemaVersion must be 1.0..1.3")
    routes = hub.get("routes") or {}
    for name, route in SEED_ROUTES.items():
        got = routes.get(name)
        got = got.get("route") if isinstance(got, dict) else got
        if got != route:
            problem(rel, f"route {name} must be exactly the seed's {route!r}, got {got!r}")
    ttl = (hub.get("storeAndForwardConfiguration") or {}).get("timeToLiveSecs")
    if not isinstance(ttl, int) or ttl <= 0:
        problem(rel, "$edgeHub storeAndForwardConfiguration.timeToLiveSecs must be a positive integer")
    return envs


# ---------------------------------------------------------------------------------------------
# docker-compose.yml (+ compose/identities.json)

def parse_connection_string(cs: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in cs.split(";") if "=" in part)


def check_identities() -> dict:
    rel = "compose/identities.json"
    ids = load_json(rel)
    if ids is None:
        return {}
    if "DEV-ONLY" not in json.dumps(ids):
        problem(rel, "must be labelled DEV-ONLY")
    for name in ("producer", "consumer"):
        keys = (ids.get("modules") or {}).get(name) or {}
        for which in ("primaryKey", "secondaryKey"):
            if which not in keys:
                if which == "primaryKey":
                    problem(rel, f"{name}.primaryKey missing")
                continue
            try:
                if len(base64.b64decode(keys[which], validate=True)) != 32:
                    problem(rel, f"{name}.{which} should be 32 random bytes")
            except (binascii.Error, ValueError):
                problem(rel, f"{name}.{which} is not base64")
    return ids


def flag_value(command: list[str], flag: str) -> str | None:
    for i, arg in enumerate(command):
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
        if arg == flag and i + 1 < len(command):
            return command[i + 1]
    return None


def check_compose(ids: dict, dashboard_path: str | None, deployment_env: dict) -> None:
    rel = "docker-compose.yml"
    cj = tool("check-jsonschema")
    if cj:
        run([cj, "--builtin-schema", "vendor.compose-spec", rel], rel)
    doc = load_yaml(rel) or {}
    services = doc.get("services") or {}
    for name in ("hub", "producer", "consumer", "prometheus", "grafana", "jaeger"):
        if name not in services:
            problem(rel, f"service {name} missing")
    named_volumes = set((doc.get("volumes") or {}).keys())
    for name, svc in services.items():
        where = f"service {name}"
        build = svc.get("build")
        if build:
            dockerfile = (REPO / (build.get("context") or ".") / (build.get("dockerfile") or "Dockerfile"))
            if not dockerfile.exists():
                problem(rel, f"{where}: build dockerfile {dockerfile.relative_to(REPO)} does not exist")
            if (build.get("context") or ".") not in (".", "./"):
                problem(rel, f"{where}: the build context must be the repository root")
            if name in ("hub", "producer", "consumer") and build.get("target") != name:
                problem(rel, f"{where}: build target should be `{name}` (a stage of the shared Dockerfile)")
        else:
            image = svc.get("image") or ""
            tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
            if not tag or tag == "latest":
                problem(rel, f"{where}: image {image!r} is not pinned to a version")
        hc = svc.get("healthcheck")
        if not hc:
            problem(rel, f"{where}: no healthcheck")
        elif "test" not in hc and not build:
            problem(rel, f"{where}: healthcheck without test needs an image with HEALTHCHECK (one we build)")
        for vol in svc.get("volumes") or []:
            src = (vol.split(":")[0] if isinstance(vol, str) else vol.get("source")) or ""
            if src.startswith((".", "/")):
                if not (REPO / src).exists():
                    problem(rel, f"{where}: bind-mount source {src} does not exist")
            elif src and src not in named_volumes:
                problem(rel, f"{where}: volume {src} is not declared under volumes:")
        for dep, cond in (svc.get("depends_on") or {}).items() if isinstance(svc.get("depends_on"), dict) else []:
            if dep not in services:
                problem(rel, f"{where}: depends on unknown service {dep}")
            elif (cond or {}).get("condition") == "service_healthy" and not services[dep].get("healthcheck"):
                problem(rel, f"{where}: waits for {dep} to be healthy, but {dep} has no healthcheck")

    # hub <-> identities <-> modules
    hub = services.get("hub") or {}
    command = hub.get("command") or []
    if isinstance(command, str):
        command = command.split()
    hostname = flag_value(command, "--hostname")
    identities_path = flag_value(command, "--identities")
    https_port = flag_value(command, "--https-port") or "443"
    mqtt_port = flag_value(command, "--mqtt-port") or "8883"
    if flag_value(command, "--state-dir") != "/var/lib/hub":
        problem(rel, "hub: --state-dir should be /var/lib/hub (the shared volume with ca.pem)")
    mounts = {(v.split(":")[1] if isinstance(v, str) else v.get("target")): (v.split(":")[0] if isinstance(v, str) else v.get("source"))
              for v in hub.get("volumes") or []}
    if identities_path and mounts.get(identities_path) not in ("./compose/identities.json", "compose/identities.json"):
        problem(rel, f"hub: --identities {identities_path} is not a mount of ./compose/identities.json")
    if not identities_path:
        problem(rel, "hub: no --identities (the modules' connection strings need fixed keys)")
    if ids:
        if ids.get("gatewayHostname") != hostname:
            problem(rel, f"hub --hostname {hostname!r} != identities gatewayHostname {ids.get('gatewayHostname')!r}")
        iothub = flag_value(command, "--iothub-hostname") or "local-hub.azure-devices.net"
        if ids.get("iothubHostname") != iothub:
            problem(rel, f"identities iothubHostname {ids.get('iothubHostname')!r} != the hub's {iothub!r}")
        device = flag_value(command, "--device-id") or "local-edge-device"
        if ids.get("deviceId") != device:
            problem(rel, f"identities deviceId {ids.get('deviceId')!r} != the hub's {device!r}")
    prom_ports = {"producer": "9601", "consumer": "9602"}
    for name in ("producer", "consumer"):
        svc = services.get(name) or {}
        env = {k: str(v) for k, v in (svc.get("environment") or {}).items()} if isinstance(svc.get("environment"), dict) else {}
        where = f"service {name}"
        cs = parse_connection_string(env.get("EdgeHubConnectionString", ""))
        if not cs:
            problem(rel, f"{where}: no EdgeHubConnectionString")
        elif ids:
            key = ((ids.get("modules") or {}).get(name) or {}).get("primaryKey")
            expect = {"HostName": ids.get("iothubHostname"), "DeviceId": ids.get("deviceId"), "ModuleId": name,
                      "SharedAccessKey": key, "GatewayHostName": ids.get("gatewayHostname")}
            for k, v in expect.items():
                if cs.get(k) != v:
                    problem(rel, f"{where}: EdgeHubConnectionString {k}={cs.get(k)!r}, compose/identities.json says {v!r}")
        if env.get("EdgeModuleCACertificateFile") != "/var/lib/hub/ca.pem":
            problem(rel, f"{where}: EdgeModuleCACertificateFile should be /var/lib/hub/ca.pem")
        if not any(isinstance(v, str) and v.startswith("hub-state:/var/lib/hub") and v.endswith(":ro")
                   for v in svc.get("volumes") or []):
            problem(rel, f"{where}: should mount hub-state:/var/lib/hub read-only")
        if env.get("EDGEHUB_HTTPS_PORT", "443") != https_port:
            problem(rel, f"{where}: EDGEHUB_HTTPS_PORT {env.get('EDGEHUB_HTTPS_PORT')} != hub --https-port {https_port}")
        if env.get("EDGEHUB_MQTT_PORT", "8883") != mqtt_port:
            problem(rel, f"{where}: EDGEHUB_MQTT_PORT {env.get('EDGEHUB_MQTT_PORT')} != hub --mqtt-port {mqtt_port}")
        port = env.get("METRICS_ADDR", "").rsplit(":", 1)[-1]
        if port != prom_ports[name]:
            problem(rel, f"{where}: METRICS_ADDR port {port!r} != prometheus.yml target {name}:{prom_ports[name]}")
        if env.get("OTEL_SERVICE_NAME") != name:
            problem(rel, f"{where}: OTEL_SERVICE_NAME should be {name}")
        if not env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").startswith("http://jaeger:"):
            problem(rel, f"{where}: OTEL_EXPORTER_OTLP_ENDPOINT should point at the jaeger service")
        # Everything the device deployment sets (but addresses) is set here too.
        for k in deployment_env.get(name, {}):
            if k not in env and k not in ("METRICS_ADDR",):
                problem(rel, f"{where}: env {k} from {DEPLOYMENT} is not set")
        if (svc.get("depends_on") or {}).get("hub", {}).get("condition") != "service_healthy":
            problem(rel, f"{where}: should wait for the hub to be healthy (it writes ca.pem first)")

    prom = services.get("prometheus") or {}
    pcmd = prom.get("command") or []
    if "--enable-feature=exemplar-storage" not in pcmd:
        problem(rel, "prometheus: needs --enable-feature=exemplar-storage")
    if not any(str(v).startswith("./prometheus.yml:") for v in prom.get("volumes") or []):
        problem(rel, "prometheus: should mount ./prometheus.yml")

    graf = services.get("grafana") or {}
    genv = graf.get("environment") or {}
    if str(genv.get("GF_AUTH_ANONYMOUS_ENABLED")).lower() != "true" or genv.get("GF_AUTH_ANONYMOUS_ORG_ROLE") != "Viewer":
        problem(rel, "grafana: anonymous access should be on with the Viewer role")
    home = genv.get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    gmounts = {(v.split(":")[1]): v.split(":")[0] for v in graf.get("volumes") or [] if isinstance(v, str)}
    if gmounts.get("/etc/grafana/provisioning") != "./grafana/provisioning":
        problem(rel, "grafana: ./grafana/provisioning must be mounted at /etc/grafana/provisioning")
    if dashboard_path and gmounts.get(dashboard_path) != "./grafana/dashboards":
        problem(rel, f"grafana: ./grafana/dashboards must be mounted at the provider path {dashboard_path}")
    if not home:
        problem(rel, "grafana: GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH not set")
    else:
        for target, src in gmounts.items():
            if home.startswith(target.rstrip("/") + "/"):
                local = REPO / src / home[len(target.rstrip("/")) + 1:]
                if not local.exists():
                    problem(rel, f"grafana: home dashboard {home} is {local.relative_to(REPO)}, which does not exist")
                break
        else:
            problem(rel, f"grafana: home dashboard {home} is not inside a mounted directory")

    jaeger = services.get("jaeger") or {}
    if not str(jaeger.get("image", "")).startswith("jaegertracing/jaeger:2"):
        problem(rel, "jaeger: expected Jaeger v2 (jaegertracing/jaeger:2.x)")


# ---------------------------------------------------------------------------------------------
# Alerting: prometheus.yml's rule_files and alertmanager target against the files and the compose
# services (the rules themselves: promtool check/test rules and amtool in tests/alerts.rs)

def check_alerting() -> None:
    rel = "prometheus.yml"
    cfg = load_yaml(rel) or {}
    compose = load_yaml("docker-compose.yml") or {}
    services = compose.get("services") or {}
    rule_files = cfg.get("rule_files") or []
    if not rule_files:
        problem(rel, "no rule_files (prometheus-rules.yml)")
    prom = services.get("prometheus") or {}
    prom_mounts = {v.split(":")[1]: v.split(":")[0] for v in prom.get("volumes") or [] if isinstance(v, str)}
    config_dir = str(Path(flag_value(prom.get("command") or [], "--config.file") or "/etc/prometheus/prometheus.yml").parent)
    for rf in rule_files:
        # Prometheus takes globs and silently loads nothing when one matches no file.
        if not sorted((REPO / Path(rel).parent).glob(rf)):
            problem(rel, f"rule_files entry {rf!r} matches no file next to prometheus.yml")
        elif not any(Path(c).match(f"{config_dir}/{rf}") for c in prom_mounts):
            problem("docker-compose.yml", f"prometheus: rule file {rf} is not mounted next to the config ({config_dir}/{rf})")
    targets = [t for am in (cfg.get("alerting") or {}).get("alertmanagers") or []
               for sc in am.get("static_configs") or [] for t in sc.get("targets") or []]
    if not targets:
        problem(rel, "alerting: no alertmanager target")
    am = services.get("alertmanager")
    if not am:
        problem("docker-compose.yml", "no alertmanager service")
        return
    for t in targets:
        host, _, port = t.partition(":")
        if host != "alertmanager" or port != "9093":
            problem(rel, f"alerting target {t} is not the compose service alertmanager:9093")
    am_config = flag_value(am.get("command") or [], "--config.file")
    am_mounts = {v.split(":")[1]: v.split(":")[0] for v in am.get("volumes") or [] if isinstance(v, str)}
    if not am_config or am_mounts.get(am_config) != "./alertmanager.yml":
        problem("docker-compose.yml", f"alertmanager: --config.file {am_config} is not a mount of ./alertmanager.yml")


# ---------------------------------------------------------------------------------------------
# Dockerfiles and .dockerignore

def check_dockerfiles() -> None:
    try:
        import dockerfile  # BuildKit's own parser, via PyPI `dockerfile`
    except ImportError:
        problem("Dockerfiles", "PyPI package `dockerfile` not installed (tests/python/requirements.txt)")
        dockerfile = None
    hadolint = tool("hadolint")
    rel = "Dockerfile"
    if not (REPO / rel).exists():
        problem(rel, "missing")
        return
    for old in ("hub", "producer", "consumer"):
        if (REPO / old / "Dockerfile").exists():
            problem(f"{old}/Dockerfile", "the images share the root Dockerfile (one build stage)")
    if hadolint:
        run([hadolint, "--no-color", "--failure-threshold", "warning", rel], rel)
    if dockerfile is not None:
        try:
            cmds = dockerfile.parse_file(str(REPO / rel))
        except dockerfile.GoParseError as e:
            problem(rel, f"BuildKit's parser rejects it: {e}")
            cmds = []
        # Stages by name: FROM <image> AS <name>.
        stages: dict[str, list] = {}
        current = None
        for c in cmds:
            if c.cmd.upper() == "FROM":
                current = c.value[-1] if len(c.value) >= 3 and c.value[-2].upper() == "AS" else c.value[0]
                stages[current] = [c]
            elif current is not None:
                stages[current].append(c)
        froms = [c for c in cmds if c.cmd.upper() == "FROM"]
        if cmds and (not froms[0].value[0].startswith("rust:") or not any(f.value[0].startswith("debian:") for f in froms)):
            problem(rel, "expected a rust:* builder stage and a debian:* stage that gathers the runtime's files")
        args = {c.value[0].split("=")[0] for c in cmds if c.cmd.upper() == "ARG"}
        for arg in ("CONFIG", "BASE_TAG"):
            if cmds and arg not in args:
                problem(rel, f"build arg {arg} missing")
        runs = " ".join(" ".join(c.value) for c in cmds if c.cmd.upper() == "RUN")
        if cmds and "--locked" not in runs:
            problem(rel, "cargo build should use --locked (Cargo.lock pins the dependencies)")
        if cmds and "--profile" not in runs:
            problem(rel, "the images should use the stripped `dist` profile")
        runtime = stages.get("runtime", [])
        users = [c.value[0] for c in runtime if c.cmd.upper() == "USER"]
        if cmds and (not users or users[-1].split(":")[0] in ("root", "0")):
            problem(rel, "the runtime stage must switch to a non-root USER")
        for name in ("hub", "producer", "consumer"):
            if not cmds:
                break
            stage = stages.get(name)
            if not stage:
                problem(rel, f"no `{name}` target")
                continue
            if stage[0].value[0] != "runtime":
                problem(rel, f"the `{name}` target should build FROM the shared runtime stage")
            if f"-p {name} --bin {name}" not in runs:
                problem(rel, f"does not build `-p {name} --bin {name}`")
            # The binary's own `healthcheck` subcommand (the runtime has no shell), in the target or
            # inherited from the runtime stage.
            checks = [c.value for c in runtime + stage if c.cmd.upper() == "HEALTHCHECK"]
            if not checks or list(checks[-1]) != ["CMD", f"/usr/local/bin/{name}", "healthcheck"]:
                problem(rel, f"the `{name}` target's HEALTHCHECK should be CMD [\"/usr/local/bin/{name}\", \"healthcheck\"], "
                             f"got {checks[-1] if checks else None}")
            entry = [c.value for c in stage if c.cmd.upper() == "ENTRYPOINT"]
            if not entry or entry[-1][0] != f"/usr/local/bin/{name}":
                problem(rel, f"the `{name}` target's ENTRYPOINT should be /usr/local/bin/{name}")
    rel = ".dockerignore"
    try:
        lines = {l.strip() for l in (REPO / rel).read_text().splitlines() if l.strip() and not l.startswith("#")}
    except OSError as e:
        problem(rel, f"cannot read: {e}")
        return
    for needed in (".git", ".venv", ".state"):
        if needed not in lines and f"**/{needed}" not in lines:
            problem(rel, f"should exclude {needed}")
    if "target" not in lines and "**/target" not in lines:
        problem(rel, "should exclude target")
    for kept in ("Cargo.toml", "Cargo.lock", "src", "hub", "producer", "consumer", "edge", "telemetry"):
        if kept in lines:
            problem(rel, f"excludes {kept}, which the image build needs")


def main() -> int:
    check_prometheus()
    uids, dashboard_path = check_provisioning()
    dashboards = sorted((REPO / "grafana/dashboards").glob("*.json"))
    if not dashboards:
        problem("grafana/dashboards", "no dashboards")
    dashboard_metrics: set[str] = set()
    for f in dashboards:
        dashboard_metrics |= check_dashboard(str(f.relative_to(REPO)), uids)
    check_prometheus_agent(dashboard_metrics)
    deployment_env = check_deployment()
    ids = check_identities()
    check_compose(ids, dashboard_path, deployment_env)
    check_alerting()
    check_dockerfiles()
    if PROBLEMS:
        print(f"{len(PROBLEMS)} problem(s):")
        for p in PROBLEMS:
            print(f"- {p}")
        return 1
    print(f"stack files OK: docker-compose.yml, prometheus.yml, prometheus-agent.yml, alerting, grafana/, {DEPLOYMENT}, Dockerfiles")
    return 0


if __name__ == "__main__":
    sys.exit(main())
