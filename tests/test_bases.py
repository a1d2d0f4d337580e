"""``imagegate bases``: the proved base version of each running image, its age, newer versions."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Iterator
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from imagegate.core.bases import (
    RunningImage,
    TaggedBase,
    bases_report,
    is_artifact_tag,
    parse_created,
    tagged_bases,
    tools_to_rebuild,
)
from imagegate.core.oci import PlatformImage, parse_config
from imagegate.core.reference import parse_docker_ref
from imagegate.shell.registry.client import RegistryClient, RegistrySettings
from imagegate.shell.webhook.certs import make_certificates
from tests.conftest import POLICY_HEADER, run_imagegate
from tests.oci_images import OciLayout, layers
from tests.registry_process import (
    UNHURRIED,
    UNHURRIED_CLIENT,
    Registry,
    fault_handler,
    https_server,
    reply,
    run_registry,
)

UTC = dt.UTC


def _image(name: str, diff_ids: list[str], created: str = "", platform: str = "linux/amd64") -> PlatformImage:
    return PlatformImage(platform, f"sha256:{name * 64}"[:71], (), tuple(diff_ids), {}, created)


# --- pure core ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-02T03:04:05Z", dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2024-01-02T03:04:05.123456789Z", dt.datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)),  # Go's nanoseconds
        ("2024-01-02T03:04:05+02:00", dt.datetime(2024, 1, 2, 1, 4, 5, tzinfo=UTC)),
        ("2024-01-02T03:04:05-01:30", dt.datetime(2024, 1, 2, 4, 34, 5, tzinfo=UTC)),
        ("2024-02-30T00:00:00Z", None),
        ("2024-01-02", None),
        ("yesterday", None),
        ("", None),
    ],
)
def test_created_times(text: str, expected: dt.datetime | None) -> None:
    assert parse_created(text) == expected


def test_a_config_with_a_created_that_is_not_text_is_still_an_image() -> None:
    body = json.dumps({"created": 12, "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    assert parse_config(body).created == ""
    assert parse_config(b'{"created": "2024-01-02T03:04:05Z"}').created == "2024-01-02T03:04:05Z"


def test_artifact_tags_are_not_versions() -> None:
    assert is_artifact_tag("sha256-" + "a" * 64 + ".sig")
    assert is_artifact_tag("sha256-" + "a" * 64)
    assert not is_artifact_tag("latest") and not is_artifact_tag("sha256-abc.sig")


def _versions() -> list[TaggedBase]:
    old = _image("1", ["b1", "b2"], "2024-01-01T00:00:00Z")
    new = _image("2", ["b1", "b3"], "2024-06-01T00:00:00Z")
    arm = _image("5", ["a1"], "2025-01-01T00:00:00Z", platform="linux/arm64")
    python = _image("3", ["b1", "b3", "p1"], "2024-07-01T00:00:00Z")
    return [
        *tagged_bases("reg/base", [("2024-01", old), ("2024-06", new), ("latest", new), ("arm", arm)]),
        *tagged_bases("reg/python", [("latest", python)]),
    ]


def test_tags_of_one_version_are_merged() -> None:
    versions = _versions()
    assert sorted(v.tags for v in versions) == [("2024-01",), ("2024-06", "latest"), ("arm",), ("latest",)]


def test_report_proves_the_base_and_finds_newer_versions_oldest_first() -> None:
    now = dt.datetime(2024, 8, 1, tzinfo=UTC)
    running = [
        RunningImage("reg/tool-b:1", _image("b", ["b1", "b3", "x"]), ("tool-b",)),
        RunningImage("reg/tool-a:1", _image("a", ["b1", "b2", "y"]), ("tool-a", "tool-z")),
        RunningImage("reg/tool-p:1", _image("c", ["b1", "b3", "p1", "z"]), ("tool-p",)),
        RunningImage("reg/tool-c:1", _image("d", ["c1", "b2"]), ("tool-c",)),
    ]
    rows = bases_report(running, _versions(), now)
    assert [r.image for r in rows] == ["reg/tool-a:1", "reg/tool-b:1", "reg/tool-p:1", "reg/tool-c:1"]
    a, b, p, c = rows
    assert a.base is not None and a.base.name == "reg/base:2024-01" and a.age_days == 213
    assert a.newer is not None and a.newer.name == "reg/base:2024-06"  # the arm64 version is not newer for amd64
    assert b.base is not None and b.base.name == "reg/base:2024-06" and b.newer is None and not b.rebuild
    # built on a base that is built on another base: the longer chain is its base
    assert p.base is not None and p.base.name == "reg/python:latest" and p.newer is None
    assert c.base is None and "layer 1 differs" in c.note
    assert tools_to_rebuild(rows) == {"tool-a": ["reg/tool-a:1"], "tool-z": ["reg/tool-a:1"]}


def test_a_base_without_created_time_has_no_age_and_no_newer_claim() -> None:
    versions = tagged_bases(
        "reg/base", [("old", _image("1", ["b1"])), ("new", _image("2", ["b2"], "2024-01-01T00:00:00Z"))]
    )
    rows = bases_report(
        [RunningImage("reg/x:1", _image("x", ["b1", "x"]), ("tool-x",))], versions, dt.datetime.now(UTC)
    )
    assert rows[0].base is not None and rows[0].age_days is None and rows[0].newer is None
    assert "no valid created time" in rows[0].note


def test_no_known_base_says_so() -> None:
    rows = bases_report([RunningImage("reg/x:1", _image("x", ["x"]), ())], [], dt.datetime.now(UTC))
    assert rows[0].base is None and rows[0].note == "no tagged version of a trusted base is known"


# --- against a real registry ---------------------------------------------------------------


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, Path]]:
    workdir = tmp_path_factory.mktemp("bases")
    with run_registry(workdir / "registry", "htpasswd") as reg:
        layout = OciLayout(workdir / "layout")
        base_old, base_new = layers("base-old", 3), layers("base-new", 3)
        python = [*base_new, *layers("python", 1)]
        pushes = [
            ("toolforge/base:2024-01", base_old, "2024-01-01T00:00:00Z"),
            ("toolforge/base:2024-06", base_new, "2024-06-01T00:00:00.5Z"),
            ("toolforge/base:latest", base_new, "2024-06-01T00:00:00.5Z"),
            # a cosign signature's tag in the base's repository: not a version
            ("toolforge/base:sha256-" + "0" * 64 + ".sig", layers("sig", 1), "2030-01-01T00:00:00Z"),
            ("toolforge/python:latest", python, "2024-07-01T00:00:00Z"),
            ("tool-a/app:1", [*base_old, *layers("a", 1)], "2024-02-01T00:00:00Z"),
            ("tool-b/app:1", [*base_new, *layers("b", 1)], "2024-06-02T00:00:00Z"),
            ("tool-p/app:1", [*python, *layers("p", 1)], "2024-07-02T00:00:00Z"),
            ("tool-c/app:1", [*layers("alpine", 2), *layers("c", 1)], "2024-03-01T00:00:00Z"),
        ]
        for dest, image_layers, created in pushes:
            reg.push(layout, dest.replace("/", "-").replace(":", "-"), image_layers, dest, created=created)
        policy = workdir / "policy.yaml"
        policy.write_text(
            f"{POLICY_HEADER}trusted: [{reg.host}/toolforge]\n"
            f"registry: {{caFile: {reg.tls.ca_cert}, credentialsFile: {reg.docker_config(workdir / 'config.json')}, {UNHURRIED}}}\n"
            f"baseImages: {{trusted: ['{reg.host}/toolforge/base:latest', '{reg.host}/toolforge/python:latest']}}\n"
        )
        yield reg, policy


def _deployment(namespace: str, image: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": namespace, "uid": f"uid-{namespace}"},
        "spec": {"template": {"spec": {"containers": [{"name": "web", "image": image}]}}},
    }


class _Rows(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.classes: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
            self.classes.append(dict(attrs).get("class") or "")

    def handle_data(self, data: str) -> None:
        if self.rows and data.strip():
            self.rows[-1].append(data.strip())


def test_bases_of_a_dump_oldest_first_with_tools_to_rebuild(registry: tuple[Registry, Path], tmp_path: Path) -> None:
    reg, policy = registry
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web-1",
            "namespace": "tool-a",
            "ownerReferences": [{"kind": "Deployment", "name": "web", "uid": "uid-tool-a", "controller": True}],
        },
        "spec": {"containers": [{"name": "web", "image": f"{reg.host}/tool-a/app:1"}]},
    }
    items = [_deployment(f"tool-{x}", f"{reg.host}/tool-{x}/app:1") for x in "abpc"]
    items.append(_deployment("tool-a2", f"{reg.host}/tool-a/app:1"))  # a second tool on the same image
    items.append(pod)
    items.append(_deployment("tool-gone", f"{reg.host}/tool-gone/app:1"))  # not in the registry
    dump = tmp_path / "dump.json"
    dump.write_text(json.dumps({"kind": "List", "items": items}))
    html = tmp_path / "bases.html"
    result = run_imagegate(
        "bases", "--from", str(dump), "-p", str(policy), "-o", "json", "--now", "2024-08-01", "--html", str(html)
    )
    # an image runs on a base with a newer version (1), but one could not be read: only part was done (2)
    assert result.returncode == 2, result.stderr
    assert f"error: {reg.host}: 1 image not read (not-found)" in result.stderr
    report = json.loads(result.stdout)
    rows = report["images"]
    assert [r["image"].split("/", 1)[1] for r in rows] == [
        "tool-a/app:1",
        "tool-b/app:1",
        "tool-p/app:1",
        "tool-c/app:1",
    ]
    a, b, p, c = rows
    assert a["base"]["tags"] == ["2024-01"] and a["ageDays"] == 213 and a["rebuild"]
    assert a["newerBase"]["tags"] == ["2024-06", "latest"]
    assert a["newerBase"]["created"] == "2024-06-01T00:00:00.500000+00:00"
    assert a["tools"] == ["tool-a", "tool-a2"] and a["owners"] == ["Deployment tool-a/web", "Deployment tool-a2/web"]
    assert b["base"]["tags"] == ["2024-06", "latest"] and b["newerBase"] is None and b["ageDays"] == 60
    assert p["base"]["repository"].endswith("toolforge/python") and not p["rebuild"]
    assert c["base"] is None and "not built on any tagged version" in c["note"]
    assert report["toolsToRebuild"] == {"tool-a": [a["image"]], "tool-a2": [a["image"]]}
    # the signature tag is not a version of the base
    assert all(not t.startswith("sha256-") for v in report["baseVersions"] for t in v["tags"])
    assert any("tool-gone/app:1" in s and "does not exist" in s for s in report["skipped"])

    page = _Rows()
    page.feed(html.read_text())
    body = page.rows[1:]
    assert [r[0].split("/", 1)[1] for r in body] == ["tool-a/app:1", "tool-b/app:1", "tool-p/app:1", "tool-c/app:1"]
    assert page.classes[1:] == ["rebuild", "", "", "unknown"]
    assert body[0][-1] == "tool-a, tool-a2" and body[0][4] == f"{reg.host}/toolforge/base:2024-06 (2024-06-01)"
    assert body[3][-1] == "tool-c"  # an image on no known base still names its tools (the ones to ask)
    table = run_imagegate("bases", "--from", str(dump), "-p", str(policy), "--now", "2024-08-01")
    unknown = next(line for line in table.stdout.splitlines() if "tool-c/app:1" in line)
    assert "none known" in unknown and "tool-c" in unknown.split("│")[-2]
    assert "run by 2 tools" in table.stdout


def test_bases_table_for_named_images(registry: tuple[Registry, Path]) -> None:
    reg, policy = registry
    result = run_imagegate("bases", f"{reg.host}/tool-b/app:1", "-p", str(policy), "--now", "2024-08-01")
    assert result.returncode == 0, result.stderr  # its base is the newest
    assert "toolforge/base:2024-06" in result.stdout and " 60 " in result.stdout
    assert "0 on a base with a newer version" in result.stdout


def test_bases_reads_at_most_max_tags_and_says_so(registry: tuple[Registry, Path]) -> None:
    reg, policy = registry
    result = run_imagegate(
        "bases", f"{reg.host}/tool-a/app:1", "-p", str(policy), "--max-tags", "1", "-o", "json", "--now", "2024-08-01"
    )
    report = json.loads(result.stdout)
    assert result.returncode == 2  # a partial read of the base's versions: said, and not a success
    assert any("only its first 1 tags were read" in s for s in report["skipped"])
    assert report["images"][0]["base"]["tags"] == ["2024-01"]  # the first in order


def test_bases_without_trusted_bases_is_bad_input(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY_HEADER)
    result = run_imagegate("bases", "example.org/a:1", "-p", str(policy))
    assert result.returncode == 2 and "baseImages.trusted" in result.stderr and "Traceback" not in result.stderr


def test_tag_list_follows_pages(tmp_path: Path) -> None:
    """Registries that page (``n``, ``Link: <...?last=>; rel="next"``): every page is read, a link
    to another repository is not followed. (Debian's docker-registry answers in one page.)"""
    pages: dict[str, tuple[list[str | None], str]] = {
        "/v2/tool/app/tags/list?n=1000": (["b"], '</v2/tool/app/tags/list?last=b&n=1000>; rel="next"'),
        "/v2/tool/app/tags/list?last=b&n=1000": (
            ["a", None],
            '<https://elsewhere/v2/tool/app/tags/list?last=a&n=1000>; rel="next"',
        ),
        "/v2/tool/app/tags/list?last=a&n=1000": (["c"], '</v2/tool/other/tags/list?last=c>; rel="next"'),
    }
    hits: list[str] = []

    def behave(handler: BaseHTTPRequestHandler) -> None:
        tags, link = pages[handler.path or ""]
        body = json.dumps({"name": "tool/app", "tags": [t for t in tags if t]}).encode()
        reply(handler, 200, body, {"Content-Type": "application/json", "Link": link})

    tls = make_certificates(tmp_path / "tls", ["127.0.0.1"])
    with https_server(fault_handler(behave, hits), tls) as host:

        async def run() -> tuple[list[str], bool]:
            async with RegistryClient(RegistrySettings(ca_file=tls.ca_cert, **UNHURRIED_CLIENT)) as client:
                return await client.tags(parse_docker_ref(f"{host}/tool/app"))

        assert asyncio.run(run()) == (["a", "b", "c"], True)
    assert hits == list(pages)
