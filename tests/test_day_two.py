"""Day two (issue 23): what an operator is told when the input or the deployment is not what it seems."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.conftest import GRANTS_HEADER, REPO_ROOT, run_imagegate
from tests.registry_process import UNHURRIED
from tests.webhook_process import run_webhook

TOOLFORGE = REPO_ROOT / "tests" / "fixtures" / "toolforge"
IDENTITIES = TOOLFORGE / "identities.yaml"
MISSING = "no tool identities are loaded"


def _pod(namespace: str = "tool-foo") -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "containers": [{"name": "web", "image": "docker-registry.tools.wmflabs.org/toolforge-python311:latest"}]
        },
    }


def test_missing_identities_are_said_once_up_front(tmp_path: Path) -> None:
    (tmp_path / "pod.json").write_text(json.dumps(_pod()))
    without = run_imagegate("check", str(tmp_path / "pod.json"))
    assert without.returncode == 1
    assert without.stderr.count(MISSING) == 1 and "every pod in a tool namespace (tool-*) is denied" in without.stderr
    audit = run_imagegate("audit", "--from", str(tmp_path / "pod.json"))
    assert audit.stderr.count(MISSING) == 1
    given = run_imagegate("check", str(tmp_path / "pod.json"), "--identities", str(IDENTITIES))
    assert MISSING not in given.stderr


def test_the_webhook_without_identities_says_so_in_readyz_metrics_and_log(tmp_path: Path) -> None:
    with run_webhook(tmp_path) as webhook:
        ready = webhook.client().get("/readyz").json()
        assert ready["ready"] is True and MISSING in ready["identitiesWarning"]
        assert "imagegate_identities 0.0" in webhook.client().get("/metrics").text
        assert webhook.logs().count('"event": "no tool identities"') == 1
    with run_webhook(tmp_path / "with", "--identities", str(IDENTITIES)) as webhook:
        assert webhook.client().get("/readyz").json()["identitiesWarning"] is None
        assert "imagegate_identities 2.0" in webhook.client().get("/metrics").text


def test_one_broken_file_is_reported_and_the_others_judged(tmp_path: Path) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "a-pod.json").write_text(json.dumps(_pod()))
    (manifests / "b-broken.yaml").write_text("kind: Pod\nmetadata: {name: [\n")
    (manifests / "c-not-utf8.yaml").write_bytes(b"kind: Pod\n\xff\xfe\n")
    (manifests / "d-pod.json").write_text(json.dumps(_pod("tool-bar")))
    result = run_imagegate("check", str(manifests), "--identities", str(IDENTITIES), "-o", "json")
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2
    assert "b-broken.yaml:3" in errors[0] and "c-not-utf8.yaml: not UTF-8" in errors[1]
    assert "2 files could not be read; the others were judged" in result.stderr
    judged = json.loads(result.stdout)
    assert [o["source"].rsplit("/", 1)[-1] for o in judged["objects"]] == ["a-pod.json", "d-pod.json"]
    assert "Traceback" not in result.stderr


def test_documents_that_carry_no_pod_are_not_counted_as_objects(tmp_path: Path) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "pod.json").write_text(json.dumps(_pod()))
    shutil.copy(IDENTITIES, manifests / "identities.yaml")
    shutil.copy(TOOLFORGE / "namespaces.yaml", manifests / "namespaces.yaml")
    result = run_imagegate("check", str(manifests), "--identities", str(IDENTITIES), "-o", "json")
    counts = json.loads(result.stdout)["counts"]["objects"]
    assert sum(counts.values()) == 1 and counts["exempt"] == 0, counts
    assert "not judged, as they carry no pod:" in result.stderr and "1 ToolIdentities" in result.stderr
    assert "Namespace" in result.stderr


def test_errors_name_the_file_that_is_wrong(tmp_path: Path) -> None:
    grants = tmp_path / "grants.yaml"
    grants.write_text(GRANTS_HEADER + "grants: [{namespace: 5}]\n")
    (tmp_path / "pod.json").write_text(json.dumps(_pod()))
    bad_grants = run_imagegate("check", str(tmp_path / "pod.json"), "--grants", str(grants))
    assert bad_grants.returncode == 2 and bad_grants.stderr.startswith("error: invalid grants file:")
    swapped = run_imagegate("check", str(tmp_path / "pod.json"), "--identities", str(grants))
    assert swapped.returncode == 2 and swapped.stderr.startswith("error: invalid identities file:")
    assert "got 'ImageGrants' (a grants file: is it given in the wrong place?)" in swapped.stderr
    as_policy = run_imagegate("check", str(tmp_path / "pod.json"), "--policy", str(IDENTITIES))
    assert as_policy.stderr.startswith("error: invalid policy:") and "(a identities file" not in as_policy.stderr
    assert "(an identities file: is it given in the wrong place?)" in as_policy.stderr


def test_policy_validate_names_what_cannot_work(tmp_path: Path) -> None:
    from tests.conftest import POLICY_HEADER  # noqa: PLC0415

    keyed = tmp_path / "keyed.yaml"
    keyed.write_text(
        POLICY_HEADER
        + "trusted: [registry.example.org]\n"
        + "signatures:\n  rules:\n    - images: [registry.example.org]\n      keys: [keys/missing.pub]\n"
    )
    missing_key = run_imagegate("policy", "validate", "-p", str(keyed))
    assert missing_key.returncode == 2, missing_key.stdout
    assert "error: signatures: cannot read the public key" in missing_key.stderr
    assert str(tmp_path / "keys" / "missing.pub") in missing_key.stderr
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "missing.pub").write_text("not a key\n")
    assert "is not a PEM public key" in run_imagegate("policy", "validate", "-p", str(keyed)).stderr

    odd = tmp_path / "odd.yaml"
    odd.write_text(
        POLICY_HEADER
        + "trusted: [registry.example.org/team, quay.io]\n"
        + "blocked: [registry.example.org]\n"
        + "registry: {timeoutSeconds: 8}\n"
        + "namespaces: {include: ['tool-*']}\n"
        + "byoc:\n  default: deny\n  requireBaseImage: true\n"
        + "  grants:\n"
        + "    - {namespace: tool-a, expires: 2099-01-01, registries: [quay.io/tool-a]}\n"
        + "    - {namespace: kube-system, expires: 2099-01-01}\n"
        + "    - {namespace: tool-old, expires: 2020-01-01}\n"
    )
    result = run_imagegate("policy", "validate", "-p", str(odd))
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    text = "\n".join(warnings)
    assert "trusted registry.example.org/team: every image it covers is also blocked by 'registry.example.org'" in text
    assert "registry.timeoutSeconds: 8 s is not shorter than the webhook's timeoutSeconds (5 s)" in text
    assert "byoc.requireBaseImage: baseImages.trusted names no base image" in text
    assert "grant kube-system" in text and "does not govern this namespace" in text
    assert "grant tool-old" in text and "ended on 2020-01-01" in text
    assert "grant tool-a" in text and "trusted anyway" in text
    assert len(warnings) == 6, text
    strict = run_imagegate("policy", "validate", "-p", str(odd), "--strict")
    assert strict.returncode == 1
    builtin = run_imagegate("policy", "validate", "--identities", str(IDENTITIES), "--strict")
    assert builtin.returncode == 0 and "warning:" not in builtin.stderr  # the built-in policy is clean


def test_output_at_platform_scale_never_wraps_a_name(tmp_path: Path) -> None:
    from tests.test_compare import _dump_module  # noqa: PLC0415 (bench/toolforge_dump.py, the generated platform)

    files = _dump_module().write(tmp_path, 300)
    dump, identities = str(files["dump"]), str(files["identities"])
    # too many rows for a table: one line per finding, each whole however narrow the terminal
    lines = run_imagegate("check", dump, "--identities", identities, columns=80)
    assert lines.returncode == 1
    body = [
        line
        for line in lines.stdout.splitlines()
        if "  " in line and line.split("  ", 1)[0] in {"denied", "allowed", "warn", "audit", "exempt"}
    ]
    judged = json.loads(run_imagegate("check", dump, "--identities", identities, "-o", "json").stdout)
    images = {
        use
        for o in judged["objects"]
        for use in ("docker.io/library/python:3.11-slim", "ghcr.io/example/bot:2.1")
        if use in json.dumps(o)
    }
    assert images and all(any(image in line for line in body) for image in images)
    assert "│" not in lines.stdout  # no table borders
    assert len(body) >= sum(len(o["violations"]) for o in judged["objects"])
    summary = run_imagegate("check", dump, "--identities", identities, "--summary", columns=80)
    assert summary.stdout.strip().startswith(f"{len(judged['objects']):,} objects:")
    table = run_imagegate("check", dump, "--identities", identities, "--layout", "table")
    assert "│" in table.stdout

    audit_lines = run_imagegate("audit", "--from", dump, "--identities", identities, "--layout", "lines", columns=80)
    assert audit_lines.returncode == 1
    assert "findings by namespace, once per top owner:" in audit_lines.stdout
    assert any(
        "untrusted-registry" in line and "ghcr.io/example/bot:2.1" in line for line in audit_lines.stdout.splitlines()
    )
    audit_summary = run_imagegate("audit", "--from", dump, "--identities", identities, "--summary")
    assert "cluster-wide totals by rule" in audit_summary.stdout
    assert "once per top owner" not in audit_summary.stdout
    assert len(audit_summary.stdout.splitlines()) < len(audit_lines.stdout.splitlines()) / 3


def test_a_restarted_webhook_and_check_still_know_the_previous_base(tmp_path: Path) -> None:
    """Issue 23 item 3: `latest` moved 36 days ago; an image on the previous version passes within rememberDays."""
    import datetime as dt  # noqa: PLC0415

    from tests.conftest import POLICY_HEADER, admission_review  # noqa: PLC0415
    from tests.oci_images import OciLayout, layers  # noqa: PLC0415
    from tests.registry_process import run_registry  # noqa: PLC0415

    now = dt.datetime.now(dt.UTC)

    def stamp(days_ago: int) -> str:
        return (now - dt.timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")

    with run_registry(tmp_path / "registry", "htpasswd") as reg:
        layout = OciLayout(tmp_path / "layout")
        previous, current = layers("bookworm-previous", 2), layers("bookworm-current", 2)
        pushes = [
            ("toolforge/bookworm:20261001", previous, stamp(36)),
            ("toolforge/bookworm:20261106", current, stamp(1)),
            ("toolforge/bookworm:latest", current, stamp(1)),
            ("toolforge/bookworm:2025", layers("bookworm-2025", 2), stamp(400)),  # older than rememberDays
            ("tool-a/app:on-previous", [*previous, *layers("app", 1)], stamp(30)),
            ("tool-a/app:on-2025", [*layers("bookworm-2025", 2), *layers("old-app", 1)], stamp(300)),
        ]
        for dest, image_layers, created in pushes:
            reg.push(layout, dest.replace("/", "-").replace(":", "-"), image_layers, dest, created=created)

        def policy(remember: int) -> Path:
            path = tmp_path / f"policy-{remember}.yaml"
            path.write_text(
                f"{POLICY_HEADER}trusted: [{reg.host}/toolforge]\n"
                f"byoc:\n  grants:\n    - {{namespace: tool-a, registries: ['{reg.host}/tool-a'], requireBaseImage: true}}\n"
                f"registry: {{caFile: {reg.tls.ca_cert}, credentialsFile: {reg.docker_config(tmp_path / 'config.json')}, "
                f"{UNHURRIED}}}\n"
                f"baseImages: {{trusted: ['{reg.host}/toolforge/bookworm:latest'], rememberDays: {remember}}}\n"
            )
            return path

        def pod(tag: str) -> dict[str, object]:
            return {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "app", "namespace": "tool-a"},
                "spec": {"containers": [{"name": "app", "image": f"{reg.host}/tool-a/app:{tag}"}]},
            }

        (tmp_path / "previous.json").write_text(json.dumps(pod("on-previous")))
        (tmp_path / "ancient.json").write_text(json.dumps(pod("on-2025")))
        remembered = run_imagegate(
            "check", str(tmp_path / "previous.json"), "-p", str(policy(90)), "--registry", "-o", "json"
        )
        assert remembered.returncode == 0, remembered.stdout + remembered.stderr
        forgotten = run_imagegate(
            "check", str(tmp_path / "previous.json"), "-p", str(policy(30)), "--registry", "-o", "json"
        )
        assert forgotten.returncode == 1 and "base-image-mismatch" in forgotten.stdout
        ancient = run_imagegate(
            "check", str(tmp_path / "ancient.json"), "-p", str(policy(90)), "--registry", "-o", "json"
        )
        assert ancient.returncode == 1 and "base-image-mismatch" in ancient.stdout

        # a webhook started now (a restart, a new replica) knows the same versions from the registry
        with run_webhook(tmp_path / "webhook", policy=policy(90)) as webhook:
            http = webhook.client()
            allowed = http.post("/validate", json=admission_review(pod("on-previous"), "tool-a")).json()["response"]
            assert allowed["allowed"] is True, allowed
            denied = http.post("/validate", json=admission_review(pod("on-2025"), "tool-a")).json()["response"]
            assert denied["allowed"] is False
            assert http.get("/readyz").json()["baseImageVersions"] == 2  # current and previous; 2025 forgotten
