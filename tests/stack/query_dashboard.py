#!/usr/bin/env python3
"""Runs every PromQL expression of the Grafana dashboards against a real Prometheus.

Extracts each panel target's `expr` and each template variable's query, substitutes Grafana's
variables (template variables -> `.+`, `$__rate_interval` -> 30s, `$__interval` -> 15s,
`$__range` -> 5m), then checks that the expression parses (`/api/v1/format_query`) and, unless
`--parse-only`, that it returns a non-empty result (`/api/v1/query`; for `label_values(...)`
variable queries, the label values API). Prints one line per expression; exits 1 on any failure.

    .venv/bin/python tests/stack/query_dashboard.py --prometheus http://127.0.0.1:9090
    .venv/bin/python tests/stack/query_dashboard.py --prometheus http://127.0.0.1:9090 --parse-only
    .venv/bin/python tests/stack/query_dashboard.py --prometheus http://127.0.0.1:9090 --var device=edge-1

`--var NAME=REGEX` gives a template variable a value instead of `.+` (the fleet test selects one
device so that every expression proves data for it). `--without-edge-agent` accepts an empty result
from the expressions over edgeAgent's metrics (the Runtime row): they still have to parse and run,
but a Prometheus with no IoT Edge runtime behind it (the local run) has no edgeAgent series.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DASHBOARDS = sorted((REPO / "grafana" / "dashboards").glob("*.json"))

# Grafana's built-in variables and what a 5 s scrape interval and a 5-minute range give them.
BUILTINS = {
    "__rate_interval": "30s",
    "__interval": "15s",
    "__interval_ms": "15000",
    "__range": "5m",
    "__range_s": "300",
    "__range_ms": "300000",
}
TEMPLATE_VALUE = ".+"  # every template variable: proves the label exists on the series
VALUES: dict[str, str] = {}  # --var NAME=REGEX overrides

# Expressions that may legitimately return nothing from a live Prometheus: they must still parse
# and run, but an empty result is not a failure. The firing-alerts table is empty whenever nothing
# is wrong (and a Prometheus that does not load prometheus-rules.yml, like the local run's
# --with-prometheus one, has no ALERTS series at all).
MAY_BE_EMPTY = {
    'ALERTS{alertstate="firing",device=~"$device"}',
}
# Expressions that only edgeAgent (a real IoT Edge device) feeds; empty allowed with --without-edge-agent.
EDGE_AGENT_RE = re.compile(r"\bedgeAgent_\w+")
WITHOUT_EDGE_AGENT = False

# $name, ${name}, ${name:format}, [[name]]
VAR_RE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)(?::[^\]]*)?\]\]|\$(\w+)")


@dataclass
class Query:
    where: str  # e.g. 'panel 7 "Percentiles per leg" target A' or 'variable module'
    raw: str
    kind: str  # "expr" or "variable"


def panels_of(dashboard: dict):
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # collapsed rows keep their panels inside


def extract(dashboard: dict) -> list[Query]:
    queries = []
    for panel in panels_of(dashboard):
        for target in panel.get("targets", []):
            expr = target.get("expr")
            if expr:
                where = f'panel {panel.get("id")} "{panel.get("title", "")}" target {target.get("refId")}'
                queries.append(Query(where, expr, "expr"))
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        q = var.get("query")
        if isinstance(q, dict):
            q = q.get("query")
        if q:
            queries.append(Query(f'variable {var.get("name")}', q, "variable"))
    return queries


def substitute(text: str, template_vars: set[str]) -> tuple[str, list[str]]:
    unknown = []

    def repl(m: re.Match) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name in BUILTINS:
            return BUILTINS[name]
        if name in template_vars:
            return VALUES.get(name, TEMPLATE_VALUE)
        unknown.append(name)
        return m.group(0)

    return VAR_RE.sub(repl, text), unknown


class Prometheus:
    def __init__(self, base: str, timeout: float):
        self.base = base.rstrip("/")
        self.timeout = timeout

    def call(self, path: str, params: list[tuple[str, str]], post: bool = True) -> dict:
        data = urllib.parse.urlencode(params).encode()
        if post:
            req = urllib.request.Request(self.base + path, data=data, method="POST")
            req.add_header("Content-Type", "application/x-www-form-urlencoded")
        else:
            req = urllib.request.Request(f"{self.base}{path}?{data.decode()}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.load(resp)
        except urllib.error.HTTPError as e:  # Prometheus answers 400/422 with a JSON error body
            try:
                return json.load(e)
            except ValueError:
                return {"status": "error", "error": f"HTTP {e.code}"}

    def parse(self, expr: str) -> str | None:
        r = self.call("/api/v1/format_query", [("query", expr)])
        return None if r.get("status") == "success" else r.get("error", str(r))

    def query(self, expr: str) -> tuple[bool, str]:
        r = self.call("/api/v1/query", [("query", expr)])
        if r.get("status") != "success":
            return False, r.get("error", str(r))
        data = r["data"]
        result = data.get("result")
        if data.get("resultType") in ("scalar", "string"):
            return True, f"{data['resultType']} {result[1]}"
        n = len(result or [])
        return n > 0, f"{n} series" if n else "empty result"

    def label_values(self, label: str, selector: str | None) -> tuple[bool, str]:
        params = [("match[]", selector)] if selector else []
        r = self.call(f"/api/v1/label/{urllib.parse.quote(label)}/values", params, post=False)
        if r.get("status") != "success":
            return False, r.get("error", str(r))
        values = r.get("data") or []
        return bool(values), f"{len(values)} values {values[:5]}" if values else "no values"


LABEL_VALUES_RE = re.compile(r"^\s*label_values\(\s*(?:(?P<sel>.*\S)\s*,\s*)?(?P<label>[a-zA-Z_]\w*)\s*\)\s*$", re.S)
QUERY_RESULT_RE = re.compile(r"^\s*query_result\((?P<expr>.*)\)\s*$", re.S)


def check(prom: Prometheus, q: Query, template_vars: set[str], parse_only: bool) -> tuple[bool, str, str]:
    text, unknown = substitute(q.raw, template_vars)
    if unknown:
        return False, text, f"unknown variable(s) {sorted(set(unknown))}"
    if q.kind == "variable":
        m = LABEL_VALUES_RE.match(text)
        if m:
            sel = m.group("sel")
            if sel:
                err = prom.parse(sel)
                if err:
                    return False, text, f"selector does not parse: {err}"
            if parse_only:
                return True, text, "parses"
            ok, detail = prom.label_values(m.group("label"), sel)
            return ok, text, detail
        m = QUERY_RESULT_RE.match(text)
        if m:
            text = m.group("expr")
        elif re.match(r"^\s*(label_names|metrics)\(", text):
            return False, text, "label_names()/metrics() variable queries are not checked; use label_values()"
    err = prom.parse(text)
    if err:
        return False, text, f"does not parse: {err}"
    if parse_only:
        return True, text, "parses"
    ok, detail = prom.query(text)
    if not ok and detail == "empty result" and q.raw in MAY_BE_EMPTY:
        return True, text, "empty result (allowed: may be empty when all is well)"
    if not ok and detail == "empty result" and WITHOUT_EDGE_AGENT and EDGE_AGENT_RE.search(q.raw):
        return True, text, "empty result (allowed: --without-edge-agent)"
    return ok, text, detail


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prometheus", required=True, help="base URL, e.g. http://127.0.0.1:9090")
    ap.add_argument("--parse-only", action="store_true", help="only check that every expression parses")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per HTTP request")
    ap.add_argument("--var", action="append", default=[], metavar="NAME=REGEX",
                    help="value of a template variable instead of .+ (repeatable)")
    ap.add_argument("--without-edge-agent", action="store_true",
                    help="no edgeAgent behind this Prometheus: edgeAgent_* expressions may return nothing")
    ap.add_argument("dashboards", nargs="*", type=Path, default=DEFAULT_DASHBOARDS,
                    help="dashboard JSON files (default: grafana/dashboards/*.json)")
    args = ap.parse_args()
    global WITHOUT_EDGE_AGENT
    WITHOUT_EDGE_AGENT = args.without_edge_agent
    for v in args.var:
        name, sep, value = v.partition("=")
        if not sep:
            ap.error(f"--var {v!r}: expected NAME=REGEX")
        VALUES[name] = value
    if not args.dashboards:
        print("no dashboards found", file=sys.stderr)
        return 1

    prom = Prometheus(args.prometheus, args.timeout)
    failures = total = 0
    for path in args.dashboards:
        try:
            dashboard = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            print(f"FAIL {path}: {e}")
            failures += 1
            continue
        template_vars = {v.get("name") for v in dashboard.get("templating", {}).get("list", [])}
        queries = extract(dashboard)
        print(f"{path.relative_to(REPO) if path.is_absolute() and REPO in path.parents else path}: "
              f"{len(queries)} expressions against {args.prometheus}"
              f"{' (parse only)' if args.parse_only else ''}")
        if not queries:
            print("FAIL no expressions found")
            failures += 1
        for q in queries:
            total += 1
            try:
                ok, text, detail = check(prom, q, template_vars, args.parse_only)
            except (urllib.error.URLError, OSError, ValueError) as e:
                ok, text, detail = False, q.raw, f"request failed: {e}"
            failures += 0 if ok else 1
            print(f"{'ok  ' if ok else 'FAIL'} {q.where}: {detail}\n       {text}")
    print(f"{total - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
