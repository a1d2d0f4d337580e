"""What operators watch imagegate with: the ServiceMonitor, the alerts and the Grafana dashboard.

The chart (rendered by Helm's engine) and deploy/monitoring ship the same objects. Every alert
expression and dashboard query is parsed by a PromQL parser (promql-parser, the Rust
``promql-parser`` crate GreptimeDB uses), and every metric they name must be one that a
running ``imagegate serve`` declares on /metrics: an alert on a metric nobody exports is an
alert that never fires.

Prometheus' own promtool (Debian's prometheus package) checks the rule file and runs every
alert over series that should make it fire and series that should not.

The Prometheus Operator's CRDs are not available here (not in ../shared/crds, and not
vendored): the ServiceMonitor and PrometheusRule are checked against the part of the
``monitoring.coreos.com/v1`` schema they use, written out below, not against the CRDs.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import promql_parser
import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from imagegate.shell.cluster.reports import ReportsMetrics
from tests.conftest import REPO_ROOT
from tests.shipped import CHART, MONITORING, kustomize_build, one, render_chart
from tests.test_chart import KUBERNETES_VERSION, without_helm_labels
from tests.webhook_process import run_webhook

FILES = CHART / "files"
ALL_ON = {
    "metrics": {
        "serviceMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
        "dashboard": {"enabled": True},
    }
}
MONITORING_KINDS = ("ServiceMonitor", "PrometheusRule")

# Prometheus' duration (its CRD's pattern for `for` and `interval`)
_DURATION = r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
_STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}
_METADATA = {
    "type": "object",
    "required": ["name", "namespace"],
    "properties": {"name": {"type": "string"}, "namespace": {"type": "string"}, "labels": _STRINGS},
    "additionalProperties": False,
}
# The fields of monitoring.coreos.com/v1 these objects use, as its CRDs type them; any other
# field (a typo) is refused, as the API server's structural schema would prune or refuse it.
SCHEMAS: dict[str, dict[str, Any]] = {
    "ServiceMonitor": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": "ServiceMonitor"},
            "metadata": _METADATA,
            "spec": {
                "type": "object",
                "required": ["selector", "endpoints"],
                "additionalProperties": False,
                "properties": {
                    "selector": {
                        "type": "object",
                        "properties": {"matchLabels": _STRINGS},
                        "additionalProperties": False,
                    },
                    "endpoints": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "port": {"type": "string"},
                                "scheme": {"enum": ["http", "https"]},
                                "path": {"type": "string"},
                                "interval": {"type": "string", "pattern": _DURATION},
                                "tlsConfig": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "properties": {
                                        "serverName": {"type": "string"},
                                        "ca": {
                                            "type": "object",
                                            "additionalProperties": False,
                                            "properties": {
                                                "secret": {
                                                    "type": "object",
                                                    "required": ["key"],
                                                    "additionalProperties": False,
                                                    "properties": {
                                                        "name": {"type": "string"},
                                                        "key": {"type": "string"},
                                                    },
                                                }
                                            },
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
        "additionalProperties": False,
    },
    "PrometheusRule": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": "PrometheusRule"},
            "metadata": _METADATA,
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "groups": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name", "rules"],
                            "additionalProperties": False,
                            "properties": {
                                "name": {"type": "string", "minLength": 1},
                                "rules": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "required": ["alert", "expr"],
                                        "additionalProperties": False,
                                        "properties": {
                                            "alert": {"type": "string"},
                                            "expr": {"type": "string"},
                                            "for": {"type": "string", "pattern": _DURATION},
                                            "labels": _STRINGS,
                                            "annotations": _STRINGS,
                                        },
                                    },
                                },
                            },
                        },
                    }
                },
            },
        },
        "additionalProperties": False,
    },
}


@pytest.fixture(scope="module")
def chart() -> Iterator[helm.Chart]:
    with helm.Chart.load(CHART) as loaded:
        yield loaded


def monitoring_objects(chart: helm.Chart) -> list[dict[str, Any]]:
    rendered = render_chart(chart, ALL_ON)
    return [d for d in rendered if d["kind"] in MONITORING_KINDS or d["metadata"]["name"].endswith("-dashboard")]


def test_off_by_default_and_the_chart_renders_deploy_monitoring(chart: helm.Chart) -> None:
    names = {(d["kind"], d["metadata"]["name"]) for d in render_chart(chart)}
    assert not {kind for kind, _name in names} & set(MONITORING_KINDS)
    assert ("ConfigMap", "imagegate-dashboard") not in names
    rendered = {(d["kind"], d["metadata"]["name"]): without_helm_labels(d) for d in monitoring_objects(chart)}
    built = {(d["kind"], d["metadata"]["name"]): d for d in kustomize_build(MONITORING)}
    assert (
        sorted(rendered)
        == sorted(built)
        == [
            ("ConfigMap", "imagegate-dashboard"),
            ("PrometheusRule", "imagegate"),
            ("ServiceMonitor", "imagegate"),
            ("ServiceMonitor", "imagegate-reports"),  # selects nothing without imagegate reports
        ]
    )
    for key, expected in built.items():
        assert rendered[key] == expected, key


def test_deploy_monitoring_is_written_from_the_charts_files() -> None:
    spec = importlib.util.spec_from_file_location("sync_monitoring", REPO_ROOT / "scripts" / "sync_monitoring.py")
    assert spec is not None and spec.loader is not None
    sync = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sync)
    for path, text in sync.expected().items():
        assert path.read_text() == text, f"{path}: run python scripts/sync_monitoring.py"


def test_values_label_and_place_the_objects(chart: helm.Chart) -> None:
    values = {
        "metrics": {
            "serviceMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "kps"}},
            "prometheusRule": {"enabled": True, "labels": {"release": "kps"}},
            "dashboard": {"enabled": True, "namespace": "grafana", "labels": {"grafana_dashboard": "imagegate"}},
        }
    }
    rendered = render_chart(chart, values)
    monitor = one(rendered, "ServiceMonitor", "imagegate")
    assert monitor["metadata"]["labels"]["release"] == "kps"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["interval"] == "15s" and endpoint["tlsConfig"]["ca"]["secret"]["name"] == "imagegate-tls"
    # the webhook's Service, selected by its labels, on its HTTPS port
    service = one(rendered, "Service", "imagegate")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert one(rendered, "PrometheusRule")["metadata"]["labels"]["release"] == "kps"
    # the controller's: plain HTTP on its metrics port, on its Service
    rendered = render_chart(chart, {**values, "reports": {"enabled": True}})
    (endpoint,) = one(rendered, "ServiceMonitor", "imagegate-reports")["spec"]["endpoints"]
    service = one(rendered, "Service", "imagegate-reports")
    assert endpoint["scheme"] == "http" and endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    selector = one(rendered, "ServiceMonitor", "imagegate-reports")["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    dashboard = one(rendered, "ConfigMap", "imagegate-dashboard")
    assert dashboard["metadata"]["namespace"] == "grafana"
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "imagegate"


def test_every_object_validates(chart: helm.Chart) -> None:
    for doc in [*monitoring_objects(chart), *kustomize_build(MONITORING)]:
        if doc["kind"] in SCHEMAS:
            jsonschema.validate(doc, SCHEMAS[doc["kind"]])
            with pytest.raises(kubernetes_validate.SchemaNotFoundError):
                kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        else:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_schemas_refuse_a_misspelled_field(chart: helm.Chart) -> None:
    rule = one(monitoring_objects(chart), "PrometheusRule")
    rule["spec"]["groups"][0]["rules"][0]["fro"] = "5m"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(rule, SCHEMAS["PrometheusRule"])


# --- the queries -------------------------------------------------------------------------

# Grafana's variables, replaced by what Grafana would send, so the query parses as PromQL.
_GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$namespace": ".*"}


def alert_rules() -> list[dict[str, Any]]:
    spec = yaml.safe_load((FILES / "alerts.yaml").read_text())
    return [rule for group in spec["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((FILES / "grafana-dashboard.json").read_text())
    return document


def dashboard_queries() -> list[str]:
    """Every PromQL query of the dashboard, Grafana's variables replaced."""
    queries = [target["expr"] for panel in dashboard()["panels"] for target in panel.get("targets", [])]
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            # label_values(METRIC_SELECTOR, label): Grafana's, around a selector
            (selector,) = re.fullmatch(r"label_values\((.+), *\w+\)", variable["definition"]).groups()  # type: ignore[union-attr]
            queries.append(selector)
    replaced = []
    for query in queries:
        text = query
        for name, value in _GRAFANA_VARIABLES.items():
            text = text.replace(name, value)
        assert "$" not in text, query  # a variable this test does not know
        replaced.append(text)
    return replaced


def metric_names(query: str) -> set[str]:
    """The metric names a PromQL query reads (parsed: raises ValueError when it is not PromQL)."""
    found: set[str] = set()

    def visit(node: promql_parser.Expr) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            names = [m.value for m in node.matchers.matchers if m.name == "__name__"] if node.matchers else []
            found.update([node.name] if node.name else names)
            assert node.name or names, f"a selector without a metric name in {query}"
        return True

    promql_parser.walk(promql_parser.parse(query), visit)
    return found


def test_every_alert_parses_and_says_what_to_do() -> None:
    rules = alert_rules()
    assert len({r["alert"] for r in rules}) == len(rules)
    for rule in rules:
        assert metric_names(rule["expr"]), rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
        if "for" in rule:
            promql_parser.parse_duration(rule["for"])


def test_every_dashboard_query_parses() -> None:
    queries = dashboard_queries()
    assert len(queries) >= 10
    for query in queries:
        assert metric_names(query), query


def test_the_parser_does_refuse_what_prometheus_would() -> None:
    for broken in ("rate(imagegate_decisions_total[5m]", "sum by (result (x)", "imagegate_grants{state=}"):
        with pytest.raises(ValueError):
            metric_names(broken)


def exported_names(exposition: str) -> set[str]:
    """The series names /metrics declares, each family's samples named as Prometheus stores them."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",), "info": ("_info",)}
    return {
        family.name + suffix
        for family in text_string_to_metric_families(exposition)
        for suffix in suffixes[family.type]
    }


def test_every_metric_the_alerts_and_dashboard_read_is_exported(tmp_path: Path) -> None:
    """The webhook's names from a running ``imagegate serve``; the controller's from its one
    registry (``ReportsMetrics``, what its /metrics serves: tests/test_reports_controller.py
    scrapes it running against a real API server)."""
    with run_webhook(tmp_path) as webhook:
        exposition = webhook.client().get("/metrics").text
    exported = exported_names(exposition)
    assert "imagegate_decisions_total" in exported and "imagegate_request_duration_seconds_bucket" in exported
    controller = exported_names(generate_latest(ReportsMetrics().registry).decode())
    assert "imagegate_reports_written_total" in controller
    wanted = {
        name for query in [r["expr"] for r in alert_rules()] + dashboard_queries() for name in metric_names(query)
    }
    assert wanted - exported - controller == set()
    # and both are read: an alert or a panel for each part
    assert wanted & exported and wanted & controller


# --- the alerts fire when they should: Prometheus' own promtool ----------------------------

# Per alert: input series (promtool's expanding notation, one sample a minute from time 0; the
# denial spike's, a day of them, one each 5 minutes), when
# to look, and whether it fires there. Each alert has a case that fires and one that does not.
_DAY = 1440  # minutes
ALERT_CASES: dict[str, list[tuple[dict[str, str], str, bool]]] = {
    "ImagegateWebhookUnready": [
        ({'imagegate_policy_loaded{pod="a"}': "0x20"}, "10m", True),
        ({'imagegate_policy_loaded{pod="a"}': "1x20"}, "10m", False),
    ],
    "ImagegateWebhookMissing": [
        ({'imagegate_policy_valid{pod="a"}': "1x20"}, "15m", True),  # up, but no imagegate_policy_loaded
        ({'imagegate_policy_loaded{pod="a"}': "1x20"}, "15m", False),
    ],
    "ImagegatePolicyInvalid": [
        ({'imagegate_policy_valid{pod="a"}': "1 1 0x20"}, "10m", True),
        ({'imagegate_policy_valid{pod="a"}': "1x20"}, "10m", False),
    ],
    # the counters are there at 0 from the start: the first refusal is seen
    "ImagegatePolicyReloadRefused": [
        ({'imagegate_policy_reloads_total{pod="a",result="error"}': "0 0 0 1x10"}, "5m", True),
        ({'imagegate_policy_reloads_total{pod="a",result="error"}': "0x20"}, "5m", False),
    ],
    "ImagegateTLSReloadRefused": [
        ({'imagegate_tls_reloads_total{pod="a",result="error"}': "0 0 0 1x10"}, "5m", True),
        ({'imagegate_tls_reloads_total{pod="a",result="error"}': "0x20"}, "5m", False),
    ],
    "ImagegateTLSCertificateExpiring": [  # time() starts at 0 here
        ({'imagegate_tls_certificate_expiry_timestamp_seconds{pod="a"}': f"{10 * 86400}x90"}, "70m", True),
        ({'imagegate_tls_certificate_expiry_timestamp_seconds{pod="a"}': f"{30 * 86400}x90"}, "70m", False),
    ],
    "ImagegateGrantsExpiring": [
        ({'imagegate_grants{pod="a",state="expiring"}': "2x90"}, "70m", True),
        ({'imagegate_grants{pod="a",state="expiring"}': "0x90"}, "70m", False),
    ],
    "ImagegateGrantsExpired": [
        ({'imagegate_grants{pod="a",state="expired"}': "1x90"}, "70m", True),
        ({'imagegate_grants{pod="a",state="expired"}': "0x90"}, "70m", False),
    ],
    "ImagegateDenialSpike": [  # 0.6 denials a second for a day, then 10 a second (a sample each 5 minutes)
        (
            {
                'imagegate_decisions_total{endpoint="validate",pod="a",result="denied"}': f"0+180x{_DAY // 5} "
                f"{36 * _DAY}+3000x8"
            },
            f"{_DAY + 30}m",
            True,
        ),
        (
            {'imagegate_decisions_total{endpoint="validate",pod="a",result="denied"}': f"0+180x{_DAY // 5 + 8}"},
            f"{_DAY + 30}m",
            False,
        ),
    ],
    "ImagegateRegistryErrors": [
        (
            {
                'imagegate_registry_requests_total{pod="a",registry="r.example"}': "0+60x40",
                'imagegate_registry_errors_total{kind="timeout",pod="a",registry="r.example"}': "0+30x40",
            },
            "30m",
            True,
        ),
        (
            {
                'imagegate_registry_requests_total{pod="a",registry="r.example"}': "0+60x40",
                'imagegate_registry_errors_total{kind="timeout",pod="a",registry="r.example"}': "0x40",
            },
            "30m",
            False,
        ),
    ],
    "ImagegateReportsWriteFailing": [
        ({'imagegate_reports_write_failures_total{code="409",pod="c"}': "0 0+1x40"}, "20m", True),
        ({'imagegate_reports_write_failures_total{code="409",pod="c"}': "0x40"}, "20m", False),
    ],
    "ImagegateReportsStale": [
        ({'imagegate_reports_last_success_timestamp_seconds{pod="c"}': "0x90"}, "80m", True),
        ({'imagegate_reports_last_success_timestamp_seconds{pod="c"}': "0+60x90"}, "80m", False),
    ],
    "ImagegateReportsNoLeader": [
        ({'imagegate_reports_leader{pod="c"}': "0x20", 'imagegate_reports_leader{pod="d"}': "0x20"}, "15m", True),
        ({'imagegate_reports_leader{pod="c"}': "1x20", 'imagegate_reports_leader{pod="d"}': "0x20"}, "15m", False),
    ],
}


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, cwd=cwd, timeout=120, check=False)


def test_prometheus_itself_accepts_the_rules(tmp_path: Path) -> None:
    (tmp_path / "alerts.yaml").write_text((FILES / "alerts.yaml").read_text())
    checked = promtool("check", "rules", "alerts.yaml", cwd=tmp_path)
    assert checked.returncode == 0 and f"SUCCESS: {len(alert_rules())} rules found" in checked.stdout, checked


def test_every_alert_fires_when_it_should_and_only_then(tmp_path: Path) -> None:
    """Each case expects no alert: promtool then names, among its failures, every case that fired
    (it compares labels and rendered annotations exactly, so firing is read from what it got)."""
    assert set(ALERT_CASES) == {rule["alert"] for rule in alert_rules()}  # a new alert needs its cases
    (tmp_path / "alerts.yaml").write_text((FILES / "alerts.yaml").read_text())
    tests = [
        {
            "interval": "5m" if alert == "ImagegateDenialSpike" else "1m",  # a day of samples, fewer
            "input_series": [{"series": name, "values": values} for name, values in series.items()],
            "alert_rule_test": [{"eval_time": at, "alertname": alert, "exp_alerts": []}],
        }
        for alert, cases in ALERT_CASES.items()
        for series, at, _fires in cases
    ]
    document = {"rule_files": ["alerts.yaml"], "evaluation_interval": "5m", "tests": tests}  # fewer rule runs
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(document))
    done = promtool("test", "rules", "tests.yaml", cwd=tmp_path)
    assert done.returncode == 1 and "FAILED:" in done.stderr, done.stdout + done.stderr  # ran, some fired
    fired = re.findall(r"alertname: (\w+), time: ", done.stdout + done.stderr)
    expected = [alert for alert, cases in ALERT_CASES.items() for _series, _at, fires in cases if fires]
    assert sorted(fired) == sorted(expected), done.stdout + done.stderr
    # what fired says its severity and, where the series has one, which pod
    assert done.stdout.count('severity="') + done.stderr.count('severity="') == len(expected)
