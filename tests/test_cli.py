"""``imagegate check`` and ``imagegate policy`` as a user runs them (a real subprocess)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import GRANTS_HEADER, IDENTITIES_HEADER, POLICY_HEADER, REPO_ROOT, run_imagegate

POD = """
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: tool-a}
spec:
  containers:
    - {name: app, image: docker-registry.svc.toolforge.org/python311:latest}
"""
BAD_POD = """
apiVersion: v1
kind: Pod
metadata: {name: bad, namespace: tool-a}
spec:
  initContainers:
    - {name: init, image: busybox}
  containers:
    - {name: app, image: docker-registry.svc.toolforge.org/python311:latest}
"""


def test_examples_from_readme(tmp_path: Path) -> None:
    result = run_imagegate("check", str(REPO_ROOT / "examples"))
    assert result.returncode == 1, result.stderr
    assert "denied" in result.stdout and "untrusted-registry" in result.stdout
    assert "objects" in result.stdout.splitlines()[-1]


def test_allowed_exits_zero(tmp_path: Path) -> None:
    (tmp_path / "pod.yaml").write_text(POD)
    # the built-in (Toolforge) policy runs tool pods as the tool: it needs to know tool-a's uid
    (tmp_path / "identities.yaml").write_text(IDENTITIES_HEADER + "identities:\n  tool-a: {uid: 51234}\n")
    result = run_imagegate("check", str(tmp_path / "pod.yaml"), "--identities", str(tmp_path / "identities.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 object: 0 denied, 0 with warnings, 0 audited, 1 allowed, 0 exempt; 1 image: 0 denied" in result.stdout


def test_multi_document_and_json_output(tmp_path: Path) -> None:
    (tmp_path / "all.yaml").write_text(POD + "---\n" + BAD_POD)
    result = run_imagegate("check", str(tmp_path), "--output", "json")
    assert result.returncode == 1
    payload = json.loads(result.stdout)
    assert payload["allowed"] is False
    bad = payload["objects"][1]
    assert bad["source"].endswith("all.yaml:10")  # the line where the second document's object starts
    assert bad["violations"][0]["containerKind"] == "initContainer"
    assert bad["violations"][0]["rule"] == "untrusted-registry"


def test_kubectl_list_from_stdin() -> None:
    listing = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "kind": "Deployment",
                "metadata": {"name": "d", "namespace": "tool-a"},
                "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
            }
        ],
    }
    result = run_imagegate("check", "-", "-o", "json", stdin=json.dumps(listing))
    assert result.returncode == 1
    assert json.loads(result.stdout)["objects"][0]["kind"] == "Deployment"


def test_policy_and_grants_files(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(
        POLICY_HEADER + "trusted: [docker-registry.svc.toolforge.org]\nbyoc:\n  grantsFile: g.yaml\n"
    )
    (tmp_path / "g.yaml").write_text(GRANTS_HEADER + "grants:\n  - namespace: tool-a\n    expires: 2030-01-01\n")
    (tmp_path / "bad.yaml").write_text(BAD_POD)
    ok = run_imagegate("check", str(tmp_path / "bad.yaml"), "-p", str(tmp_path / "policy.yaml"))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    later = run_imagegate(
        "check",
        str(tmp_path / "bad.yaml"),
        "-p",
        str(tmp_path / "policy.yaml"),
        "--now",
        "2030-01-02",
        "-o",
        "json",
    )
    assert later.returncode == 1
    assert "expired on 2030-01-01" in json.loads(later.stdout)["objects"][0]["message"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("kind: Pod\nspec: [unclosed\n", "invalid manifest"),
        ('{"kind": "Pod",\n "spec": }', "invalid JSON"),
        ("just a string\n", "expected a Kubernetes object"),
        ("metadata: {name: x}\n", "not a Kubernetes object"),
    ],
)
def test_bad_manifest_exits_two_with_the_place(tmp_path: Path, content: str, message: str) -> None:
    target = tmp_path / ("m.json" if content.startswith("{") else "m.yaml")
    target.write_text(content)
    result = run_imagegate("check", str(target))
    assert result.returncode == 2
    assert message in result.stderr and str(target) in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_policy_exits_two_naming_line_and_key(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text("trusted:\n  - docker.io/library/nginx\n  - nginx\n" + POLICY_HEADER)
    (tmp_path / "pod.yaml").write_text(POD)
    result = run_imagegate("check", str(tmp_path / "pod.yaml"), "--policy", str(tmp_path / "policy.yaml"))
    assert result.returncode == 2
    assert "policy.yaml:3: trusted[1]:" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_file_and_binary_input(tmp_path: Path) -> None:
    assert run_imagegate("check", str(tmp_path / "nope.yaml")).returncode == 2
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00kind: Pod")
    result = run_imagegate("check", str(tmp_path / "bin.yaml"))
    assert result.returncode == 2 and "not UTF-8" in result.stderr


def test_policy_validate_and_default(tmp_path: Path) -> None:
    default = run_imagegate("policy", "default")
    assert default.returncode == 0 and "kind: ImagePolicy" in default.stdout
    (tmp_path / "p.yaml").write_text(default.stdout)
    validated = run_imagegate("policy", "validate", "--policy", str(tmp_path / "p.yaml"))
    assert validated.returncode == 0 and "valid" in validated.stdout
