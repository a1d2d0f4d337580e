"""Write deploy/monitoring's PrometheusRule and Grafana dashboard from the chart's files.

The alerts (``deploy/chart/imagegate/files/alerts.yaml``, the PrometheusRule's spec) and the
dashboard (``files/grafana-dashboard.json``) are each one document; the chart reads them with
``.Files.Get`` and deploy/monitoring carries them in objects written here (kustomize cannot
read files outside its directory). tests/test_monitoring.py fails when they drift: run
``python scripts/sync_monitoring.py`` after editing either file.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FILES = ROOT / "deploy" / "chart" / "imagegate" / "files"
MONITORING = ROOT / "deploy" / "monitoring"
ALERTS = FILES / "alerts.yaml"
DASHBOARD = FILES / "grafana-dashboard.json"

_GENERATED = "# Written by scripts/sync_monitoring.py from deploy/chart/imagegate/files/{source}: edit that file.\n"


def indented(text: str, spaces: int) -> str:
    return "".join(f"{' ' * spaces}{line}" if line.strip() else line for line in text.splitlines(keepends=True))


def prometheus_rule(alerts: str) -> str:
    return (
        _GENERATED.format(source=ALERTS.name)
        + "apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata:\n  name: imagegate\nspec:\n"
        + indented(alerts, 2)
    )


def dashboard_configmap(dashboard: str) -> str:
    return (
        _GENERATED.format(source=DASHBOARD.name)
        + "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: imagegate-dashboard\n  labels:\n"
        + '    grafana_dashboard: "1"\ndata:\n  imagegate.json: |\n'
        + indented(dashboard, 4)
    )


def expected() -> dict[Path, str]:
    return {
        MONITORING / "prometheusrule.yaml": prometheus_rule(ALERTS.read_text()),
        MONITORING / "grafana-dashboard.yaml": dashboard_configmap(DASHBOARD.read_text()),
    }


def main() -> int:
    for path, text in expected().items():
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
