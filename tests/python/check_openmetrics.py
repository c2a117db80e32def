"""Parses an OpenMetrics exposition with the reference parser (prometheus_client's) and prints a
summary; exits non-zero, with the parser's message, if the text is not valid OpenMetrics."""
import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families


def main(path: str) -> int:
    text = open(path, encoding="utf-8").read()
    try:
        families = list(text_string_to_metric_families(text))
    except Exception as e:  # the parser raises ValueError and friends
        print(f"{path}: invalid OpenMetrics: {e}", file=sys.stderr)
        return 1
    exemplars = [
        s.exemplar.labels.get("trace_id")
        for f in families
        for s in f.samples
        if s.exemplar is not None
    ]
    print(json.dumps({"families": sorted(f.name for f in families), "exemplar_trace_ids": exemplars}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
