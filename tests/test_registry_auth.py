"""Registry auth: challenges, the token cache's bound and expiry, and a credential source of
our own, against the real docker-registry with token auth and with htpasswd (Basic) auth."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from imagegate.core.reference import parse_docker_ref
from imagegate.shell.registry.auth import (
    Challenge,
    CredentialSource,
    DockerConfigCredentials,
    Login,
    TokenCache,
    parse_challenges,
    token_lifetime,
)
from imagegate.shell.registry.client import RegistryClient, RegistryError, RegistrySettings
from tests.oci_images import OciLayout, layers
from tests.registry_process import PASSWORD, UNHURRIED_CLIENT, USER, Registry, run_registry

REPOSITORIES = ("tool-t/a", "tool-t/b", "tool-t/c")

# --- WWW-Authenticate --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (  # distribution and Docker Hub
            ['Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull"'],
            [
                Challenge(
                    "bearer",
                    {
                        "realm": "https://auth.docker.io/token",
                        "service": "registry.docker.io",
                        "scope": "repository:a/b:pull",
                    },
                )
            ],
        ),
        (['Basic realm="imagegate-test"'], [Challenge("basic", {"realm": "imagegate-test"})]),
        # several challenges in one value; a comma and an escaped quote inside quotes
        (
            ['Bearer realm="https://t/x,y", Basic realm="say \\"hi\\""'],
            [Challenge("bearer", {"realm": "https://t/x,y"}), Challenge("basic", {"realm": 'say "hi"'})],
        ),
        # one challenge per header value, as distribution's client reads them
        (
            ['Basic realm="a"', 'Bearer realm="b"'],
            [Challenge("basic", {"realm": "a"}), Challenge("bearer", {"realm": "b"})],
        ),
        # schemes and parameter names are case-insensitive; spaces around '='; bare tokens
        (['BEARER Realm = "https://t" , Service=reg'], [Challenge("bearer", {"realm": "https://t", "service": "reg"})]),
        # a token68 (Negotiate) before a challenge we can use
        (["Negotiate YWJj==, Basic realm=x"], [Challenge("negotiate"), Challenge("basic", {"realm": "x"})]),
        ([""], []),
        (["Basic"], [Challenge("basic")]),
        # malformed: what came before stays, the rest is dropped
        (['Bearer realm="unterminated'], [Challenge("bearer")]),
        (['Basic realm="a", =x, Bearer realm="b"'], [Challenge("basic", {"realm": "a"})]),
        (['Bearer realm="a", realm="second"'], [Challenge("bearer", {"realm": "a"})]),  # the first one counts
    ],
)
def test_parse_challenges(values: list[str], expected: list[Challenge]) -> None:
    assert parse_challenges(values) == expected


# --- the token cache ------------------------------------------------------------------------


def test_token_cache_is_bounded_least_recently_used_first() -> None:
    cache = TokenCache(2)
    cache.put(("a",), "token-a", expires=100, now=0)
    cache.put(("b",), "token-b", expires=100, now=0)
    assert cache.get(("a",), now=1) == "token-a"  # a is now the most recently used
    cache.put(("c",), "token-c", expires=100, now=1)
    assert len(cache) == 2
    assert cache.get(("b",), now=2) is None
    assert cache.get(("a",), now=2) == "token-a" and cache.get(("c",), now=2) == "token-c"


def test_token_cache_expiry() -> None:
    cache = TokenCache(10)
    cache.put(("a",), "token-a", expires=50, now=0)
    assert cache.get(("a",), now=49.9) == "token-a"
    assert cache.get(("a",), now=50) is None and len(cache) == 0
    cache.put(("b",), "token-b", expires=10, now=10)  # expired on arrival: not kept
    assert cache.get(("b",), now=10) is None and len(cache) == 0


NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("answer", "seconds"),
    [
        ({}, 60),  # the token spec's default
        ({"expires_in": 300}, 300),
        ({"expires_in": 300, "issued_at": "2026-12-02T11:58:00Z"}, 180),  # issued two minutes ago
        ({"expires_in": 300, "issued_at": "2026-12-02T11:58:00.5+00:00"}, 180.5),
        ({"expires_in": 300, "issued_at": "2026-12-02T11:58:00"}, 180),  # no zone: UTC
        ({"expires_in": 300, "issued_at": "2026-12-02T12:05:00Z"}, 300),  # a clock ahead does not lengthen it
        ({"expires_in": 300, "issued_at": "2026-12-02T11:00:00Z"}, -3300),  # long expired
        ({"expires_in": 300, "issued_at": "yesterday"}, 300),  # optional, unreadable: ignored
        ({"expires_in": 300, "issued_at": 5}, 300),
    ],
)
def test_token_lifetime(answer: dict[str, object], seconds: float) -> None:
    assert token_lifetime(answer, NOW) == seconds


@pytest.mark.parametrize("expires_in", ["300", True, float("nan"), float("inf"), [300]])
def test_token_lifetime_refuses_what_is_not_seconds(expires_in: object) -> None:
    with pytest.raises(ValueError, match="expires_in"):
        token_lifetime({"expires_in": expires_in}, NOW)


# --- against the real registry --------------------------------------------------------------


@dataclasses.dataclass
class MappedCredentials:
    """A credential source that is not a docker config: a plain mapping, asked per host.

    The shape of a credential helper's or a cloud provider's source: one async method.
    """

    logins: dict[str, Login]
    asked: list[str] = dataclasses.field(default_factory=list)

    async def login(self, host: str) -> Login | None:
        self.asked.append(host)
        return self.logins.get(host)


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    workdir = tmp_path_factory.mktemp("token-registry")
    with run_registry(workdir / "registry", "token") as reg:
        layout = OciLayout(workdir / "layout")
        for repository in REPOSITORIES:
            reg.push(layout, "img", layers("auth-test", 2), f"{repository}:1")
            reg.push(layout, "img", layers("auth-test", 2), f"{repository}:2")
        yield reg


@pytest.fixture
def answer(token_registry: Registry) -> Iterator[dict[str, object]]:
    """The token server's answer for one test (then back to its default)."""
    yield token_registry.token_answer
    token_registry.token_answer.clear()


def _scopes_fetched(reg: Registry, since: int) -> list[str]:
    return [parse_qs(urlparse(path).query)["scope"][0] for path in reg.token_requests[since:]]


def _resolve_all(reg: Registry, credentials: CredentialSource, refs: list[str], token_cache_size: int = 1024) -> None:
    settings = RegistrySettings(
        ca_file=reg.tls.ca_cert, credentials=credentials, token_cache_size=token_cache_size, **UNHURRIED_CLIENT
    )

    async def go() -> None:
        async with RegistryClient(settings) as c:
            for ref in refs:
                await c.resolve(parse_docker_ref(f"{reg.host}/{ref}"))

    asyncio.run(go())


def _docker_config(reg: Registry, tmp_path: Path) -> DockerConfigCredentials:
    return DockerConfigCredentials.from_docker_config(reg.docker_config(tmp_path / "config.json"))


@pytest.mark.parametrize(("size", "fetched"), [(3, ["a", "b", "c"]), (2, ["a", "b", "c", "a"])])
def test_token_cache_bound_with_the_registry(
    token_registry: Registry, tmp_path: Path, size: int, fetched: list[str]
) -> None:
    """Three repositories, then the first again: with room for two tokens, its token was evicted."""
    before = len(token_registry.token_requests)
    refs = ["tool-t/a:1", "tool-t/b:1", "tool-t/c:1", "tool-t/a:2"]
    _resolve_all(token_registry, _docker_config(token_registry, tmp_path), refs, token_cache_size=size)
    assert _scopes_fetched(token_registry, before) == [f"repository:tool-t/{name}:pull" for name in fetched]


@pytest.mark.parametrize(
    ("expires_in", "issued_ago", "tokens"),
    [
        (300, None, 1),  # the manifest's token is reused for the config blob
        (5, None, 2),  # too short to be worth keeping (10 s margin): fetched for each request
        (300, 295, 2),  # issued almost five minutes ago: five seconds left, not kept either
        (300, 60, 1),
    ],
)
def test_token_expiry_with_the_registry(
    token_registry: Registry,
    tmp_path: Path,
    answer: dict[str, object],
    expires_in: int,
    issued_ago: int | None,
    tokens: int,
) -> None:
    answer["expires_in"] = expires_in
    if issued_ago is not None:
        answer["issued_at"] = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=issued_ago)).isoformat()
    before = len(token_registry.token_requests)
    _resolve_all(token_registry, _docker_config(token_registry, tmp_path), ["tool-t/b:1"])
    assert _scopes_fetched(token_registry, before) == ["repository:tool-t/b:pull"] * tokens


def test_referrers_ask_the_repository_token(token_registry: Registry, tmp_path: Path) -> None:
    """The referrers API is read with the repository's pull token, the one its manifests were read with."""
    settings = RegistrySettings(
        ca_file=token_registry.tls.ca_cert, credentials=_docker_config(token_registry, tmp_path), **UNHURRIED_CLIENT
    )
    ref = parse_docker_ref(f"{token_registry.host}/tool-t/c:1")

    async def go() -> None:
        async with RegistryClient(settings) as c:
            digest = await c.digest(ref)
            before = len(token_registry.token_requests)
            assert await c.referrers(ref, digest) is None  # docker-registry 2.8 has no referrers API
            assert len(token_registry.token_requests) == before  # the cached token was sent, no other fetched

    asyncio.run(go())


def test_malformed_token_answer_is_an_auth_error(
    token_registry: Registry, tmp_path: Path, answer: dict[str, object]
) -> None:
    answer["expires_in"] = "soon"
    with pytest.raises(RegistryError) as caught:
        _resolve_all(token_registry, _docker_config(token_registry, tmp_path), ["tool-t/a:1"])
    assert caught.value.kind == "auth" and "not a token" in str(caught.value)


def test_a_credential_source_of_our_own_with_token_auth(token_registry: Registry) -> None:
    credentials = MappedCredentials({token_registry.host: Login(USER, PASSWORD)})
    before = len(token_registry.token_requests)
    _resolve_all(token_registry, credentials, ["tool-t/c:2"])
    assert credentials.asked == [token_registry.host]  # asked once, for the one token
    assert len(token_registry.token_requests) - before == 1
    wrong = MappedCredentials({token_registry.host: Login(USER, "not-the-password")})
    with pytest.raises(RegistryError) as caught:
        _resolve_all(token_registry, wrong, ["tool-t/c:2"])
    assert caught.value.kind == "auth" and "refused" in str(caught.value)
    nobody = MappedCredentials({"elsewhere.example:5000": Login(USER, PASSWORD)})
    with pytest.raises(RegistryError) as caught:  # anonymous: a token without access, then a 401
        _resolve_all(token_registry, nobody, ["tool-t/c:2"])
    assert caught.value.kind == "auth" and "HTTP 401" in str(caught.value)


def test_a_credential_source_of_our_own_with_basic_auth(tmp_path: Path) -> None:
    with run_registry(tmp_path / "basic-registry", "htpasswd") as reg:
        reg.push(OciLayout(tmp_path / "layout"), "img", layers("auth-test", 2), "tool-b/app:1")
        credentials = MappedCredentials({reg.host: Login(USER, PASSWORD)})
        _resolve_all(reg, credentials, ["tool-b/app:1"])
        # manifest: anonymous, 401 Basic, then Basic; the config blob: Basic at once
        assert credentials.asked == [reg.host, reg.host]
        wrong = MappedCredentials({reg.host: Login(USER, "nope")})
        with pytest.raises(RegistryError) as caught:
            _resolve_all(reg, wrong, ["tool-b/app:1"])
        assert caught.value.kind == "auth" and "HTTP 401" in str(caught.value)
        assert wrong.asked == [reg.host]  # refused once, not asked again


def test_docker_config_forms(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    encoded = base64.b64encode(b"robot:s3cret").decode()
    auths = {
        "https://index.docker.io/v1/": {"auth": encoded},
        "Reg.Example:5000": {"username": "u", "password": "p"},
        "https://secure.example:443/": {"username": "s", "password": "p"},
        "empty.example": {},
    }
    config.write_text(json.dumps({"auths": auths}))
    credentials = DockerConfigCredentials.from_docker_config(config)

    async def logins() -> list[Login | None]:
        # hosts as httpx writes them: lower case, no :443
        hosts = ["registry-1.docker.io", "reg.example:5000", "secure.example", "empty.example", "other.example"]
        return [await credentials.login(host) for host in hosts]

    expected = [Login("robot", "s3cret"), Login("u", "p"), Login("s", "p"), None, None]
    assert asyncio.run(logins()) == expected
    for text in ("not json", '{"auths": {"x": {"auth": "abc"}}}', '{"auths": {"x": {"auth": "/w=="}}}'):
        config.write_text(text)
        with pytest.raises(RegistryError) as caught:
            DockerConfigCredentials.from_docker_config(config)
        assert caught.value.kind == "credentials"
