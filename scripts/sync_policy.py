"""Copy the built-in Toolforge policy into deploy/base and the Helm chart.

The package's ``src/imagegate/policies/toolforge.yaml`` is the one document; deploy/base's
policy ConfigMap and the chart's ``files/policy.yaml`` carry it verbatim, and
tests/test_toolforge.py fails when they drift. Run ``python scripts/sync_policy.py`` after
editing the policy.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POLICY = ROOT / "src" / "imagegate" / "policies" / "toolforge.yaml"
CONFIGMAPS = ROOT / "deploy" / "base" / "configmaps.yaml"
CHART_POLICY = ROOT / "deploy" / "chart" / "imagegate" / "files" / "policy.yaml"

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
    print(f"wrote {CONFIGMAPS.relative_to(ROOT)} and {CHART_POLICY.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
