"""``imagegate test``: policy regression suites, run as a user runs them (a real subprocess)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import GRANTS_HEADER, POLICY_HEADER, run_imagegate
from tests.test_ci_formats import MANIFESTS

POLICY = (
    POLICY_HEADER
    + """\
trusted: [docker-registry.svc.toolforge.org]
namespaces: {exclude: [kube-system]}
podSecurity: {level: restricted, mode: warn, mutate: false}
"""
)
SUITE = """\
apiVersion: imagegate.toolforge.org/v1
kind: PolicyTest
name: web pods
policy: policy.yaml
resources: [pods.yaml]
now: 2026-12-07
results:
  - {object: Pod/web/bad, result: denied}
  - {object: Pod/web/bad, rule: untrusted-registry, result: enforce}
  - {object: Pod/web/bad, rule: blocked-registry, result: pass}
  - {object: Pod/web/ok, result: warn}
  - {object: Pod/web/ok, rule: untrusted-registry, result: pass}
  - {object: Pod/web/ok, rule: "pod-security:runAsNonRoot", result: warn}
  - {object: Pod/kube-system/quiet, result: exempt}
"""


def _suite(root: Path, suite: str) -> Path:
    (root / "pods.yaml").write_text(MANIFESTS.replace("namespace: logs", "namespace: web"))
    (root / "policy.yaml").write_text(POLICY)
    (root / "imagegate-test.yaml").write_text(suite)
    return root


def test_every_expectation_holds(tmp_path: Path) -> None:
    nested = tmp_path / "suites" / "web"
    nested.mkdir(parents=True)
    _suite(nested, SUITE)
    result = run_imagegate("test", str(tmp_path / "suites"))  # found in a directory, recursively
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 suite: 7 held, 0 failed" in result.stdout
    assert "pass web pods: Pod/web/bad untrusted-registry: enforce" in result.stdout


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (
            ("{object: Pod/web/bad, result: denied}", "{object: Pod/web/bad, result: allowed}"),
            "FAIL web pods: Pod/web/bad: expected allowed, got denied",
        ),
        (
            ("rule: blocked-registry, result: pass", "rule: blocked-registry, result: enforce"),
            "FAIL web pods: Pod/web/bad blocked-registry: expected enforce, got pass",
        ),
    ],
)
def test_a_broken_expectation_exits_1(tmp_path: Path, change: tuple[str, str], said: str) -> None:
    assert change[0] in SUITE
    result = run_imagegate("test", str(_suite(tmp_path, SUITE.replace(*change))))
    assert result.returncode == 1, result.stdout + result.stderr
    assert said in result.stdout
    assert "1 suite: 6 held, 1 failed" in result.stdout


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (("Pod/web/ok, result: warn", "Pod/web/gone, result: warn"), "Pod/web/gone: no such object"),
        (("rule: blocked-registry", "rule: blocked-registri"), "no rule 'blocked-registri'"),
        (("result: exempt", "result: skipped"), "result 'skipped' is not one of"),
        (("name: web pods", "nmae: web pods"), "not a policy test suite"),
        (("policy: policy.yaml", "policy: missing.yaml"), "missing.yaml"),
        (("kind: PolicyTest", "kind: Pod"), "kind PolicyTest expected"),
    ],
)
def test_bad_input_exits_2(tmp_path: Path, change: tuple[str, str], said: str) -> None:
    assert change[0] in SUITE
    result = run_imagegate("test", str(_suite(tmp_path, SUITE.replace(*change)) / "imagegate-test.yaml"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert said in result.stderr
    assert "Traceback" not in result.stderr


def test_no_suite_exits_2(tmp_path: Path) -> None:
    result = run_imagegate("test", str(tmp_path))
    assert result.returncode == 2
    assert "no imagegate-test.yaml under" in result.stderr


GRANTED = """\
apiVersion: imagegate.toolforge.org/v1
kind: PolicyTest
name: granted until {expires}
policy: ../policy.yaml
grants: ../grants.yaml
resources: [../pods.yaml]
now: {now}
results:
  - {{object: Pod/web/bad, rule: untrusted-registry, result: {result}}}
"""


def test_grants_and_the_date_are_the_suites(tmp_path: Path) -> None:
    _suite(tmp_path, SUITE)
    (tmp_path / "grants.yaml").write_text(
        GRANTS_HEADER
        + "grants:\n  - {namespace: web, registries: [docker.io/library/busybox, quay.io/other], expires: 2026-12-01}\n"
    )
    for name, now, expected in (("before", "2026-11-30", "pass"), ("after", "2026-12-02", "enforce")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "imagegate-test.yaml").write_text(
            GRANTED.format(expires="2026-12-01", now=now, result=expected)
        )
    result = run_imagegate("test", str(tmp_path / "before"), str(tmp_path / "after"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 suites: 2 held, 0 failed" in result.stdout
