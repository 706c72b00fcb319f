"""contrib/: the Grafana dashboard and the Prometheus alert rules parse, and the metric names
their expressions use (checked against a running gateway in test_metrics.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).parents[2] / "contrib"
DASHBOARD = ROOT / "grafana" / "smsgw.json"
ALERTS = ROOT / "prometheus" / "alerts.yml"

# PromQL words that are not metric names: functions, aggregations, keywords, Grafana variables.
_NOT_METRICS = {
    "sum", "rate", "irate", "increase", "histogram_quantile", "max", "min", "avg", "count",
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "bool", "offset", "time", "absent", "clamp_min", "clamp_max", "topk", "bottomk", "le",
    "max_over_time", "min_over_time", "avg_over_time", "delta", "deriv", "changes", "vector",
    "label_replace", "sort_desc", "inf", "nan",
}  # fmt: skip


def _expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", ())]
    rules = yaml.safe_load(ALERTS.read_text())
    exprs += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    return exprs


def metric_names(expr: str) -> set[str]:
    """Identifiers in an expression that name metrics: not inside {labels}, [ranges] or
    strings, not a function (followed by "(") or keyword, and not a grouping label list."""
    expr = re.sub(r'"[^"]*"', "", expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for m in re.finditer(r"(?<![\w:.$])([a-zA-Z_:][\w:]*)\b(?!\s*\()", expr):
        if m[1] not in _NOT_METRICS:
            names.add(m[1])
    return names


def contrib_metric_names() -> set[str]:
    return set().union(*(metric_names(e) for e in _expressions()))


def test_the_name_extraction() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le) (rate(smsgw_x_bucket{a="b"}[5m]))) > 1 '
        "and on (upstream) smsgw_y == 0 or absent(smsgw_z)"
    )
    assert metric_names(expr) == {"smsgw_x_bucket", "smsgw_y", "smsgw_z"}


def test_contrib_files_parse_and_use_only_smsgw_metrics() -> None:
    exprs = _expressions()
    assert len(exprs) >= 10
    rules = yaml.safe_load(ALERTS.read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    assert {
        "SmsgwUpstreamDown",
        "SmsgwModemNotReady",
        "SmsgwQueueOld",
        "SmsgwDeliveryRateDrop",
        "SmsgwReloadFailed",
    } <= alerts
    names = contrib_metric_names()
    assert names and all(n.startswith("smsgw_") for n in names), names
