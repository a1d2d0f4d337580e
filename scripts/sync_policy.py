"""Copy the built-in Toolforge policy into deploy/base and the Helm chart.

The package's ``src/imagegate/policies/toolforge.yaml`` is the one document; deploy/base's
policy ConfigMap and the chart's ``files/policy.yaml`` carry it verbatim, and
tests/test_toolforge.py fails when they drift. It also writes what `imagegate webhooks` prints
for it: deploy/base/webhooks.yaml and the chart's ``files/mutate-condition.cel``
(tests/test_webhook_conditions.py fails when they drift). Run ``python scripts/sync_policy.py`` after
editing the policy.
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
CHART_CONDITION = ROOT / "deploy" / "chart" / "imagegate" / "files" / "mutate-condition.cel"

# The policy ConfigMap's block: from "  policy.yaml: |" to the document separator.
_BLOCK_RE = re.compile(r"(  policy\.yaml: \|\n)(.*?)(?=^---$)", re.S | re.M)


def configmaps_text(policy: str, current: str) -> str:
    indented = "".join(f"    {line}" if line.strip() else line for line in policy.splitlines(keepends=True))
    if not _BLOCK_RE.search(current):
        raise SystemExit(f"{CONFIGMAPS}: no 'policy.yaml: |' block followed by '---'")
    return _BLOCK_RE.sub(lambda m: m.group(1) + indented, current, count=1)


def main() -> int:
    policy = POLICY.read_text()
    CONFIGMAPS.write_text(configmaps_text(policy, CONFIGMAPS.read_text()))
    CHART_POLICY.write_text(policy)
    # The webhook configurations: the mutating one's needs-mutation condition follows the policy.
    for args, target in (([], WEBHOOKS), (["--mutate-condition"], CHART_CONDITION)):
        made = subprocess.run(
            [sys.executable, "-m", "imagegate", "webhooks", "-p", str(POLICY), *args],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        target.write_text(made.stdout)
    written = (CONFIGMAPS, CHART_POLICY, WEBHOOKS, CHART_CONDITION)
    print("wrote " + ", ".join(str(path.relative_to(ROOT)) for path in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
