"""Every admission warning fits the API server's rule, the essential first (issue 22 item 5).

The rule (k8s.io/apiserver endpoints/filters/warning.go): past 4,096 runes of warnings in one
response every warning is cut to 256 runes and later ones are dropped. Each kind of warning
imagegate gives (a finding in warn mode on an image or a pod, a grant about to end, the
dropped supplementalGroupsPolicy under ``whenDropped: warn``, an image left unpinned) is made
long on purpose here; each comes out whole, at most 256 runes, with its end (which layer
differs, what to do) kept, and together within imagegate's half of the total. Through a real
API server, kubectl prints exactly what /validate answered. Tenants never read the operator's
paths (the grants file).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imagegate.core.admission import decode_review, review
from imagegate.core.policy import load_policy
from imagegate.core.questions import BaseQuestion
from imagegate.core.records import NO_ANSWERS, Answers, BaseImageVerdict, Webhook
from imagegate.core.reference import parse_docker_ref
from imagegate.core.tenant_warnings import BUDGET_RUNES, ITEM_RUNES, fit, tenant_warnings
from imagegate.core.webhooks import webhook_configurations
from tests.conftest import POLICY_HEADER, admission_review
from tests.webhook_process import run_webhook

if TYPE_CHECKING:
    from tests.kube_cluster import KubeCluster

NOW = dt.datetime(2027, 3, 20, 12, tzinfo=dt.UTC)
LONG_REPO = "ghcr.io/example-organisation-with-a-long-name/" + "/".join(["deeply-nested-project"] * 4)
LONG = f"{LONG_REPO}/application:v1.2.3-build.4567"
BASE = "docker-registry.svc.toolforge.org/toolforge-python311-sssd-base"
MISMATCH = (  # as core/baseimage.py words it
    "linux/amd64: layer 4 differs (sha256:aaaaaaaaaaaa vs sha256:bbbbbbbbbbbb), against the nearest trusted "
    f"base {BASE}:latest (sha256:0123456789ab, 3 of 5 layers shared)"
)

POLICY = POLICY_HEADER + textwrap.dedent(
    """
    mode: warn
    trusted: [docker-registry.svc.toolforge.org]
    byoc:
      warnBeforeExpiryDays: 14
      grants:
        - namespace: tool-foo
          registries: [ghcr.io/example-organisation-with-a-long-name]
          expires: 2027-03-30
          ticket: T1234
          requireBaseImage: true
    podSecurity:
      level: restricted
      mode: warn
      mutate: false
      toolProfile:
        namespaces: ["tool-*"]
        identities: {tool-foo: {uid: 52503, gid: 52503}}
        supplementalGroupsPolicy: {whenDropped: warn}
    """
)


def _pod(images: list[str]) -> dict[str, Any]:
    containers = [{"name": f"container-with-a-long-name-{i}", "image": image} for i, image in enumerate(images)]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": containers}}


def _warnings(
    obj: dict[str, Any],
    answers: Answers = NO_ANSWERS,
    mutate: bool = False,
    policy_text: str = POLICY,
    now: dt.datetime = NOW,
) -> list[str]:
    policy = load_policy(policy_text)
    body = json.dumps(admission_review(obj, "tool-foo")).encode()
    outcome = review(
        policy, decode_review(body), now=now, webhook=Webhook.MUTATE if mutate else Webhook.VALIDATE, answers=answers
    )
    warnings: list[str] = json.loads(outcome.body)["response"].get("warnings", [])
    return warnings


def _fits(warnings: list[str]) -> None:
    assert warnings
    for warning in warnings:
        assert len(warning) <= ITEM_RUNES, warning
        assert warning.isprintable() and warning.startswith("imagegate: ")
        assert "imagegate: imagegate:" not in warning
    assert sum(map(len, warnings)) <= BUDGET_RUNES


def test_every_kind_of_warning_fits_with_its_end() -> None:
    verdicts = Answers({BaseQuestion(parse_docker_ref(LONG)): BaseImageVerdict(False, MISMATCH)})
    warnings = _warnings(_pod([LONG]), verdicts)
    _fits(warnings)
    text = "\n".join(warnings)
    # the grant about to end: first, its days left, its renewal; never the grants file
    assert warnings[0].startswith("imagegate: BYOC grant for tool-foo")
    assert "(10 days left)" in warnings[0] and "renewal: T1234" in warnings[0]
    assert "last day" not in warnings[0]
    # the base image: which layer differs survives, the long reference is elided in its middle
    (base,) = [w for w in warnings if "trusted base" in w]
    assert "layer 4 differs (sha256:aaaaaaaaaaaa vs sha256:bbbbbbbbbbbb)" in base, base
    assert "…" in base and "4567" in base  # the reference kept its start and its end
    # pod security and the tool profile, in warn mode
    assert "allowPrivilegeEscalation" in text and "runAsUser" in text
    (dropped,) = [w for w in warnings if "supplementalGroupsPolicy" in w]
    assert "would apply too" in dropped and "whenDropped" not in dropped and "podSecurity." not in dropped
    assert ".yaml" not in text and "/etc/" not in text.replace("/etc/group", "")


def test_an_unpinned_image_note_fits() -> None:
    note = f"imagegate: could not pin {LONG} to a digest (registry unavailable: timed out); it runs by tag"
    warnings = _warnings(_pod([LONG]), Answers(notes=(note,)), mutate=True)
    _fits(warnings)
    assert warnings[0].endswith("; it runs by tag")


def test_many_warnings_keep_to_the_budget_and_say_how_many_more() -> None:
    warnings = _warnings(_pod([f"quay.io/untrusted-{i}/{'x' * 60}:1" for i in range(40)]))
    _fits(warnings)
    assert warnings[-1].startswith("imagegate: ") and "more warnings not shown" in warnings[-1]
    assert warnings[0].startswith("imagegate: BYOC grant")  # the essential first


def test_fit_cuts_at_a_word_and_never_returns_control_characters() -> None:
    assert fit("a\nb\tc\x00d") == "a b c d"
    words = " ".join(["word"] * 100)
    cut = fit(words, 50)
    assert len(cut) <= 50 and cut.endswith("word…")
    assert tenant_warnings(["same", "same", " "]) == ["imagegate: same"]


def test_the_expired_grant_denial_names_no_file(tmp_path: Path) -> None:
    grants = tmp_path / "grants.yaml"
    grants.write_text(
        "apiVersion: imagegate.toolforge.org/v1\nkind: ImageGrants\ngrants:\n"
        "  - {namespace: tool-foo, registries: [ghcr.io/x], expires: 2027-01-01, ticket: T9}\n"
    )
    policy = load_policy(POLICY_HEADER + "trusted: [docker-registry.svc.toolforge.org]\n").with_grants(
        __import__("imagegate.core.policy", fromlist=["load_grants"]).load_grants(grants.read_text(), str(grants))
    )
    body = json.dumps(admission_review(_pod(["ghcr.io/x/app:1"]), "tool-foo")).encode()
    message = json.loads(review(policy, decode_review(body), now=NOW).body)["response"]["status"]["message"]
    assert "expired on 2027-01-01 (ticket T9)" in message
    assert str(tmp_path) not in message and "grants.yaml" not in message


def test_kubectl_prints_each_warning_whole(kube_cluster: KubeCluster, tmp_path: Path) -> None:
    """Through a real API server (the session's: its own cost a cluster start), what kubectl
    prints is what /validate answered, word for word."""
    policy_text = POLICY.replace("requireBaseImage: true", "requireBaseImage: false")  # no registry here
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(policy_text)
    pod = _pod([LONG, *(f"quay.io/untrusted-{i}/{'x' * 60}:1" for i in range(6))])
    cluster = kube_cluster
    with run_webhook(tmp_path, policy=policy_file) as webhook:
        ca = base64.b64encode(webhook.tls.ca_cert.read_bytes()).decode()
        validating = webhook_configurations(load_policy(policy_text))[1]
        validating["metadata"].pop("annotations", None)
        validating["webhooks"][0]["clientConfig"] = {"url": f"{webhook.url}/validate", "caBundle": ca}
        cluster.namespace("tool-foo")
        cluster.apply(validating)
        try:
            done = cluster.create(pod, "--dry-run=server", "-n", "tool-foo")
        finally:
            cluster.kubectl("delete", "validatingwebhookconfiguration", "imagegate", check=False)
        expected = _warnings(pod, policy_text=policy_text, now=dt.datetime.now(dt.UTC))
    assert done.returncode == 0, done.stderr
    printed = [line.removeprefix("Warning: ") for line in done.stderr.splitlines() if line.startswith("Warning: ")]
    _fits(expected)
    assert [w for w in printed if w.startswith("imagegate: ")] == expected
