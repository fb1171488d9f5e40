"""Must-shows 2 and 3: alert rules pass promtool (each alert fired by a unit test), and the
Grafana dashboard is valid JSON whose every query names only metrics the orchestrator exports.

The exported set comes from the code's registry (orchestrator.metrics.exported_names),
never from a hand-written list.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.observability.prom import PROMTOOL

yaml = pytest.importorskip("yaml", reason="pyyaml is in the dev extra")
pytest.importorskip("prometheus_client", reason="the metrics extra is not installed")

from orchestrator import metrics  # noqa: E402 - after the skip for a missing extra

MONITORING = REPO / "k8s" / "monitoring"
DASHBOARD = MONITORING / "dashboards" / "speedrun.json"
RULE_TESTS = MONITORING / "tests" / "alerts.test.yml"
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is absent (.ci/setup-prometheus.sh installs the Debian package)"
)

_KEYWORDS = {
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
}
_KEYWORDS |= {"inf", "nan", "atan2"}
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (not functions, labels or keywords)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges and subqueries
    text = _GROUPING.sub("", text)
    text = re.sub(r"\$\{?\w+\}?", "", text)  # Grafana variables
    text = re.sub(r"\b\d+(\.\d+)?([eE][+-]?\d+)?\b", "", text)  # numbers
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        following = text[m.end() :].lstrip()
        if following.startswith("(") or m.group() in _KEYWORDS:
            continue
        names.add(m.group())
    return names


def _dashboard_queries(node: Any) -> list[str]:
    """Every PromQL query in the dashboard: panel targets and templating queries."""
    found: list[str] = []
    if isinstance(node, dict):
        if isinstance(node.get("expr"), str):
            found.append(node["expr"])
        query = node.get("query")
        if node.get("type") == "query" and isinstance(query, dict):
            m = re.fullmatch(r"label_values\((\w+),\s*\w+\)", query["query"])
            assert m, f"unexpected templating query {query['query']!r}"
            found.append(m.group(1))
        for value in node.values():
            found += _dashboard_queries(value)
    elif isinstance(node, list):
        for value in node:
            found += _dashboard_queries(value)
    return found


def _rule_groups() -> list[dict[str, Any]]:
    rule = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    assert rule["kind"] == "PrometheusRule"
    return rule["spec"]["groups"]


def _grafana_expr(expr: str) -> str:
    """Grafana variables replaced by values Prometheus accepts, for a syntax check."""
    return (
        expr.replace("$__rate_interval", "5m")
        .replace("$__range", "1h")
        .replace("$task", ".*")
        .replace("$agent", ".*")
    )


def test_metric_name_extraction() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (le, operation) (rate(speedrun_tool_call_duration_seconds_bucket"
        '{code!~"2..", task=~"$task"}[$__rate_interval]))) / on (task) group_left speedrun_x_total * 3600'
    )
    assert metric_names(expr) == {"speedrun_tool_call_duration_seconds_bucket", "speedrun_x_total"}
    assert metric_names("up == 0 and bool 1e3") == {"up"}


def test_dashboard_is_valid_and_names_only_exported_metrics(tmp_path: Path) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["panels"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    queries = _dashboard_queries(dashboard)
    assert len(queries) >= 20
    exported = metrics.exported_names()
    for query in queries:
        names = metric_names(query)
        assert names, f"query names no metric: {query}"
        assert names <= exported, f"{sorted(names - exported)} not exported by the orchestrator: {query}"
    # every panel query is valid PromQL: promtool parses them as recording rules
    if PROMTOOL:
        rules = {"groups": [{"name": "dashboard", "rules": [
            {"record": f"dashboard:query_{i}", "expr": _grafana_expr(q)} for i, q in enumerate(queries)
        ]}]}  # fmt: skip
        path = tmp_path / "dashboard.rules.yml"
        path.write_text(yaml.safe_dump(rules))
        result = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def test_every_exported_metric_is_watched() -> None:
    """Each metric family appears on the dashboard or in an alert: nothing exported goes unseen."""
    watched = {n for q in _dashboard_queries(json.loads(DASHBOARD.read_text())) for n in metric_names(q)}
    watched |= {n for g in _rule_groups() for r in g["rules"] for n in metric_names(r["expr"])}
    for family in metrics.REGISTRY.collect():
        series = {n for n in metrics.exported_names() if n.startswith(family.name)}
        assert series & watched, f"{family.name} is on neither the dashboard nor an alert"


def test_rules_name_only_exported_metrics() -> None:
    exported = metrics.exported_names()
    recorded = {r["record"] for g in _rule_groups() for r in g["rules"] if "record" in r}
    for group in _rule_groups():
        for rule in group["rules"]:
            names = metric_names(rule["expr"]) - recorded - {"up"}  # up: Prometheus's own, per target
            assert names <= exported, f"{rule.get('alert') or rule.get('record')}: {sorted(names - exported)}"


def test_configmap_provisions_the_dashboard() -> None:
    kustomization = yaml.safe_load((MONITORING / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Component"
    for resource in kustomization["resources"]:
        assert (MONITORING / resource).is_file(), resource
    [generator] = kustomization["configMapGenerator"]
    assert generator["options"]["labels"]["grafana_dashboard"] == "1"
    assert [MONITORING / f for f in generator["files"]] == [DASHBOARD]
    monitor = yaml.safe_load((MONITORING / "servicemonitor.yaml").read_text())
    service = yaml.safe_load((MONITORING / "service.yaml").read_text())
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


@needs_promtool
def test_promtool_check_and_unit_tests_fire_every_alert(tmp_path: Path) -> None:
    rules = tmp_path / "speedrun.rules.yml"
    rules.write_text(yaml.safe_dump({"groups": _rule_groups()}))
    check = subprocess.run([PROMTOOL, "check", "rules", str(rules)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    alerts = {r["alert"] for g in _rule_groups() for r in g["rules"] if "alert" in r}
    assert len(alerts) >= 6
    tests = yaml.safe_load(RULE_TESTS.read_text())
    fired = {
        case["alertname"]
        for test in tests["tests"]
        for case in test.get("alert_rule_test", [])
        if case["exp_alerts"]
    }
    assert fired == alerts, f"alerts without a unit test that fires them: {sorted(alerts - fired)}"
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    result = subprocess.run(
        [PROMTOOL, "test", "rules", RULE_TESTS.name], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


@needs_promtool
def test_promtool_unit_tests_can_fail(tmp_path: Path) -> None:
    """The rules really decide: with the provisioning threshold raised, its alert no longer fires."""
    groups = _rule_groups()
    for group in groups:
        for rule in group["rules"]:
            if rule.get("alert") == "SpeedrunSandboxProvisioningFailing":
                rule["expr"] = rule["expr"].replace(">= 3", ">= 1000")
    (tmp_path / "speedrun.rules.yml").write_text(yaml.safe_dump({"groups": groups}))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    result = subprocess.run(
        [PROMTOOL, "test", "rules", RULE_TESTS.name], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode != 0
    assert "SpeedrunSandboxProvisioningFailing" in result.stdout + result.stderr
