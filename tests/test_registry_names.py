"""One registry, many spellings: every image and every policy entry meets in one canonical name.

The runtime decides where an image comes from: host names are case-insensitive, ``:443`` is
the HTTPS default, and containerd, CRI-O and Docker all reach Docker Hub under several names.
Whatever the spelling, the decision must be the one for the registry the node contacts.
"""

from __future__ import annotations

import datetime as dt
import ipaddress

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imagegate.core.decide import decide
from imagegate.core.patterns import parse_pattern
from imagegate.core.policy import Policy, load_policy
from imagegate.core.reference import ReferenceError, canonical_registry, parse_docker_ref, parse_normalized
from tests.conftest import POLICY_HEADER


def policy_of(text: str) -> Policy:
    """A policy document with its header (every document says what it is)."""
    return load_policy(POLICY_HEADER + text, "policy.yaml")


NOW = dt.datetime(2026, 11, 24, tzinfo=dt.UTC)
HUB_SPELLINGS = [
    "docker.io",
    "DOCKER.IO",
    "index.docker.io",
    "INDEX.docker.io",
    "Index.Docker.Io",
    "registry-1.docker.io",
    "Registry-1.Docker.IO",
    "registry.hub.docker.com",
    "docker.io:443",
    "index.docker.io:443",
    "registry-1.docker.io:0443",
]


def pod(*images: str) -> dict[str, object]:
    containers = [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]
    return {"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": containers}}


def allowed(policy: Policy, image: str, namespace: str = "tool-x") -> bool:
    return decide(policy, pod(image), namespace=namespace, now=NOW).allowed


@pytest.mark.parametrize("host", HUB_SPELLINGS)
def test_every_docker_hub_spelling_is_docker_hub(host: str) -> None:
    assert canonical_registry(host) == "docker.io"
    blocked = policy_of("trusted: [registry.org]\nblocked: [docker.io]\nbyoc: {default: allow}\n")
    assert not allowed(blocked, f"{host}/library/nginx:1")
    assert not allowed(blocked, f"{host}/someone/app:1")
    trusted = policy_of("trusted: [docker.io/library/nginx, docker.io/org]\n")
    assert allowed(trusted, f"{host}/library/nginx:1.25")
    assert allowed(trusted, f"{host}/org/app:1")
    assert not allowed(trusted, f"{host}/orgevil/app:1")


@pytest.mark.parametrize("host", ["registry-1.docker.io", "Registry-1.Docker.IO", "registry.hub.docker.com"])
def test_an_official_image_under_another_hub_name_is_the_official_image(host: str) -> None:
    """distribution/reference adds ``library/`` only for docker.io; Docker Hub has no other
    one-component repositories, so every Hub spelling is matched the same way."""
    trusted = policy_of("trusted: [docker.io/library/nginx]\n")
    assert allowed(trusted, f"{host}/nginx:1")
    blocked = policy_of("trusted: [registry.org]\nblocked: [docker.io/library]\nbyoc: {default: allow}\n")
    assert not allowed(blocked, f"{host}/nginx:1")


@pytest.mark.parametrize("entry", [*HUB_SPELLINGS[:3], "Index.Docker.IO", "registry-1.docker.io:443"])
def test_policy_entries_fold_the_same_way(entry: str) -> None:
    """Entries go through the same function: any spelling of Docker Hub in ``blocked``."""
    assert parse_pattern(entry).segments == ("docker.io",)
    policy = policy_of(f"trusted: [registry.org]\nblocked: ['{entry}']\nbyoc: {{default: allow}}\n")
    for host in HUB_SPELLINGS:
        assert not allowed(policy, f"{host}/x/y:1"), (entry, host)
    assert allowed(policy, "quay.io/x/y:1")
    grant = policy_of(
        f"trusted: [registry.org]\nbyoc: {{grants: [{{namespace: tool-a, registries: ['{entry}/org']}}]}}\n"
    )
    assert allowed(grant, "docker.io/org/app:1", "tool-a") and allowed(grant, "org/app:1", "tool-a")
    assert not allowed(grant, "docker.io/other/app:1", "tool-a")


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("Registry.Example.ORG", "registry.example.org"),
        ("registry.example.org:443", "registry.example.org"),
        ("registry.example.org:00443", "registry.example.org"),
        ("registry.example.org:5000", "registry.example.org:5000"),  # another port: another registry
        ("registry.example.org:05000", "registry.example.org:5000"),
        ("LOCALHOST:5000", "localhost:5000"),
        ("[0:0:0:0:0:0:0:1]:5000", "[::1]:5000"),
        ("[::ABCD]", "[::abcd]"),
        ("[::1]:443", "[::1]"),
        ("docker.io:5000", "docker.io:5000"),  # not Docker Hub: Hub answers on 443 only
    ],
)
def test_spellings_of_one_host_are_one_registry(spelling: str, canonical: str) -> None:
    assert canonical_registry(spelling) == canonical
    ref = parse_docker_ref(f"{spelling}/app:1")
    assert ref.registry_host == canonical
    assert ref.domain == spelling  # the parse output keeps upstream's form (conformance)


def test_trusted_entry_covers_its_default_port_and_case_but_not_another_port() -> None:
    policy = policy_of("trusted: [docker-registry.svc.toolforge.org, 'tools-harbor.wmcloud.org:443/toolforge']\n")
    for image in (
        "docker-registry.svc.toolforge.org:443/x:1",
        "DOCKER-REGISTRY.svc.toolforge.org:0443/x:1",
        "tools-harbor.wmcloud.org/toolforge/x:1",
        "Tools-Harbor.wmcloud.org:443/toolforge/x:1",
    ):
        assert allowed(policy, image), image
    for image in ("docker-registry.svc.toolforge.org:8443/x:1", "tools-harbor.wmcloud.org:5000/toolforge/x:1"):
        assert not allowed(policy, image), image


def test_tag_exemptions_and_base_requirements_fold_too() -> None:
    policy = policy_of(
        "trusted: [docker.io]\ntags: {disallow: [latest], exempt: [docker.io/library/pause]}\n"
        "baseImages: {requireFor: ['INDEX.DOCKER.IO/tools']}\n"
    )
    assert allowed(policy, "registry-1.docker.io/library/pause:latest")
    assert not allowed(policy, "registry-1.docker.io/library/nginx:latest")
    assert not allowed(policy, "Docker.IO:443/tools/app:1")  # base image required, not verified offline


# --- the property: what the runtime would contact decides -------------------------------------

# An independent model of where a runtime connects for a registry name: the host in lower
# case (DNS), the port (443 by default for HTTPS), and Docker Hub's names mapped to the API
# host containerd uses for docker.io.
HUB_API = ("registry-1.docker.io", 443)
HUB_NAMES = {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}


def contacted(domain: str) -> tuple[str, int]:
    if domain.startswith("["):
        host, _, port = domain[1:].partition("]")
        address = ipaddress.IPv6Address(host)
        return str(address), int(port[1:]) if port else 443
    host, _, port = domain.partition(":")
    where = (host.lower(), int(port) if port else 443)
    return HUB_API if where[0] in HUB_NAMES and where[1] == 443 else where


def respell(draw: st.DrawFn, host: str) -> str:
    cased = "".join(c.upper() if draw(st.booleans()) else c for c in host)
    return cased + draw(st.sampled_from(["", "", ":443", ":0443", ":5000", ":80"]))


HOSTS = [
    "docker.io",
    "index.docker.io",
    "registry-1.docker.io",
    "registry.hub.docker.com",
    "docker-registry.svc.toolforge.org",
    "evil.example",
    "quay.io",
]
TRUSTED_HOST = ("docker-registry.svc.toolforge.org", 443)


@st.composite
def images(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 9)) == 0:
        domain = draw(st.sampled_from(["[::1]", "[0:0::1]", "[::0001]:443", "[::1]:5000"]))
    else:
        domain = respell(draw, draw(st.sampled_from(HOSTS)))
    path = draw(st.sampled_from(["nginx", "library/nginx", "library/python", "org/app", "evil/library/python"]))
    tail = draw(st.sampled_from(["", ":1", "@sha256:" + "a" * 64]))
    return f"{domain}/{path}{tail}"


CLOSED = policy_of("trusted: [docker-registry.svc.toolforge.org, docker.io/library/python, '[::1]']\n")
OPEN = policy_of(
    "trusted: [docker-registry.svc.toolforge.org]\nblocked: [docker.io, 'evil.example:5000']\nbyoc: {default: allow}\n"
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(images())
def test_an_image_the_runtime_pulls_from_a_blocked_or_untrusted_registry_is_never_allowed(image: str) -> None:
    try:
        ref = parse_normalized(image)
    except ReferenceError:
        return  # an invalid name is denied on its own (test_decide)
    where = contacted(ref.domain)
    path = ref.path if where != HUB_API or "/" in ref.path else f"library/{ref.path}"
    if where in (HUB_API, ("evil.example", 5000)):
        assert not allowed(OPEN, image), image
    else:
        assert allowed(OPEN, image), image
    trusted = where in (TRUSTED_HOST, ("::1", 443)) or (where == HUB_API and path == "library/python")
    assert allowed(CLOSED, image) is trusted, image
