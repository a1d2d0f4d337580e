"""The built-in policy: the Toolforge policy, shipped as a YAML file in the package
(src/imagegate/policies/toolforge.yaml) so that deploy/ and the Helm chart carry the very same
document (scripts/sync_policy.py, tests/test_toolforge.py). Read here, in the shell, once at
import; the core only parses the text (core/policy.py's ``load_policy``).
"""

from __future__ import annotations

from importlib import resources

from imagegate.core.policy import Policy, load_policy

__all__ = ["BUILT_IN", "DEFAULT_POLICY_YAML", "default_policy"]

BUILT_IN = "<built-in>"  # the policy's source, in messages
DEFAULT_POLICY_YAML = (resources.files("imagegate") / "policies" / "toolforge.yaml").read_text(encoding="utf-8")


def default_policy() -> Policy:
    """The built-in policy (``DEFAULT_POLICY_YAML``)."""
    return load_policy(DEFAULT_POLICY_YAML, BUILT_IN)
