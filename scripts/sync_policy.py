"""Copy the built-in Toolforge policy into deploy/base and the Helm chart.

The package's ``src/imagegate/policies/toolforge.yaml`` is the one document; deploy/base's
policy ConfigMap and the chart's ``files/policy.yaml`` carry it verbatim, and
tests/test_toolforge.py fails when they drift. It also writes what `imagegate webhooks` prints
for it (deploy/base/webhooks.yaml), and the chart's conditions: ``files/template-changed.cel``
and one ``files/needs-mutation/SCOPE.cel`` per mutation scope, of which the chart picks the
one its rendered policy has (tests/test_webhook_conditions.py and tests/test_chart.py fail
when they drift). Run ``python scripts/sync_policy.py`` after editing the policy or
core/webhooks.py.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POLICY = ROOT / "src" / "imagegate" / "policies" / "toolforge.yaml"
CONFIGMAPS = ROOT / "deploy" / "base" / "configmaps.yaml"
CHART_POLICY = ROOT / "deploy" / "chart" / "imagegate" / "files" / "policy.yaml"
WEBHOOKS = ROOT / "deploy" / "base" / "webhooks.yaml"
CHART_FILES = ROOT / "deploy" / "chart" / "imagegate" / "files"

# The policy ConfigMap's block: from "  policy.yaml: |" to the next document or the end.
_BLOCK_RE = re.compile(r"(  policy\.yaml: \|\n)(.*?)(?=^---$|\Z)", re.S | re.M)


def configmaps_text(policy: str, current: str) -> str:
    indented = "".join(f"    {line}" if line.strip() else line for line in policy.splitlines(keepends=True))
    if not _BLOCK_RE.search(current):
        raise SystemExit(f"{CONFIGMAPS}: no 'policy.yaml: |' block")
    return _BLOCK_RE.sub(lambda m: m.group(1) + indented, current, count=1)


def main() -> int:
    policy = POLICY.read_text()
    CONFIGMAPS.write_text(configmaps_text(policy, CONFIGMAPS.read_text()))
    CHART_POLICY.write_text(policy)
    # The webhook configurations: the mutating one's needs-mutation condition follows the policy.
    made = subprocess.run(
        [sys.executable, "-m", "imagegate", "webhooks", "-p", str(POLICY)], check=True, capture_output=True, text=True
    )
    WEBHOOKS.write_text(made.stdout)
    sys.path.insert(0, str(ROOT / "src"))
    from imagegate.core.webhooks import MUTATION_SCOPES, TEMPLATE_CHANGED, scope_condition  # noqa: PLC0415

    written = [CONFIGMAPS, CHART_POLICY, WEBHOOKS, CHART_FILES / "template-changed.cel"]
    written[-1].write_text(TEMPLATE_CHANGED + "\n")
    (CHART_FILES / "needs-mutation").mkdir(exist_ok=True)
    for scope in MUTATION_SCOPES:
        written.append(CHART_FILES / "needs-mutation" / f"{scope.name}.cel")
        written[-1].write_text(scope_condition(scope) + "\n")
    print("wrote " + ", ".join(str(path.relative_to(ROOT)) for path in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
