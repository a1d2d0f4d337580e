"""Every image of issue 25 item 6, end to end: real images pushed by skopeo to docker-registry,
judged by one running ``imagegate serve`` (real HTTPS AdmissionReviews to ``/validate``, one at a
time and 200 at once over 20 connections) and by ``imagegate check --registry`` (the command, as a
user runs it), with the built-in policy's ``toolforge-integration`` rule.

The images (built once for the module; the root filesystems are mmdebstrap's, cached between runs
by tests/debian_rootfs.py, and their compressed blobs beside them):

* the trusted base: Debian bookworm minbase with libnss-sss (the rootfs the other content tests
  use), in ``baseImages.trusted``; an app on it, as gzip layers and again as zstd layers (the same
  base tar zstd-compressed: the same diff_ids, another blob), and as a Docker v2 schema 2 image;
* on the base, a later layer that purges libnss-sss (every file of its dpkg ``.list`` whited out,
  dpkg's status without it), and one whose opaque ``/etc`` (``.wh..wh..opq``) brings an
  nsswitch.conf that says ``files`` only, each as gzip and as zstd; and one that deletes its
  library by a whiteout only, dpkg's database untouched (denied: its files are proved too);
* another Debian (trixie minbase with libnss-sss: its own nsswitch.conf names sss), judged by
  content where the grant accepts content, refused where it asks for the trusted base too;
* Python distributions and npm packages with the metadata installed on this machine, under a
  licences rule (OSI-approved, GPL-2.0-or-later denied, for PyPI and npm);
* hostile layers on the trusted base (a zstd bomb, ``../`` and absolute names, a symlink loop, a
  symlink and a hard link out of the tree, truncated gzip, zstd and tar streams, a gzip CRC error,
  an unknown layer media type) and a layer whose stored bytes were altered in the registry's own
  storage after the push (a digest mismatch served by docker-registry).

Grants: ``tool-both`` (``proof: both``: the trusted base and the content rules) and
``tool-content`` (``proof: content``). One more rule covers a trusted repository with
``onError: allow``: its hostile image is admitted, unverified, with the error said.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import re
import ssl
import subprocess
import tarfile
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from imagegate.core.contents import dpkg
from imagegate.core.contents.files import ImageFiles
from imagegate.core.contents.inventory import read_inventory
from imagegate.core.contents.layers import ContentErrorKind
from imagegate.core.contents.limits import ContentLimits
from imagegate.core.contents.policy import BEING_READ
from imagegate.core.records import Verdict
from imagegate.shell.builtin_policy import DEFAULT_POLICY_YAML
from tests.conftest import POLICY_HEADER, admission_review, run_imagegate
from tests.content_layers import (
    OCI_GZIP,
    OCI_ZSTD,
    Blob,
    Entry,
    compressed,
    directory,
    file,
    hostile_layers,
    in_layout,
    layer,
    push_by_skopeo,
    tar_digest,
)
from tests.debian_rootfs import rootfs
from tests.oci_images import OciLayout
from tests.registry_process import UNHURRIED_LOOKUP, UNHURRIED_REQUEST, Registry, run_registry
from tests.test_metrics import scrape, value
from tests.webhook_process import WebhookProcess, run_webhook

# the trusted base: the rootfs tests/test_registry_contents_debian.py and test_content_rules.py use
TRUSTED = {"include": ("libnss-sss", "unrar"), "components": ("main", "contrib", "non-free")}
OTHER = {"suite": "trixie", "include": ("libnss-sss",)}
FILES_ONLY = b"passwd:         files\ngroup:          files\nshadow:         files\nhosts:          files dns\n"
SSS = b"passwd: files sss\ngroup: files sss\n"
PYTHON = {"open": ("msgspec", "PyYAML"), "mixed": ("msgspec", "PyYAML", "python-debian", "atheris")}
NPM = ("semver", "ms", "glob")
# where npm's own node_modules are: NodeSource's nodejs, Debian's npm
NPM_ROOTS = (Path("/usr/lib/node_modules/npm/node_modules"), Path("/usr/share/nodejs"))
# tests/content_layers.hostile_layers's that item 6 names, and the end of what their denial says
HOSTILE = {
    "bomb": "over 100 times its compressed size (registry.contents.maxRatio): a decompression bomb",
    "traversal": "the entry '../../etc/cron.d/evil' is absolute or climbs out with '..'",
    "absolute": "the entry '/etc/evil' is absolute or climbs out with '..'",
    "symlink-loop": "the symlink /etc/nsswitch.conf: more than 40 symlinks (a loop)",
    "hardlink-out": "the hard link /etc/nsswitch.conf points at '../../etc/shadow', outside the image's tree",
    "gzip-truncated": "the gzip stream ends before it is complete",
    "symlink-out": "the symlink /etc/nsswitch.conf: its symlinks lead above the image's root",
    "gzip-crc": "the gzip stream is corrupt",
    "zstd-truncated": "the zstd stream ends inside a frame",
    "tar-truncated": "the tar stream ends inside /etc/nsswitch.conf",
    "unknown-type": "application/vnd.example.layer.v1+tar is not a layer type",
}
MERGED = {"symlink-loop", "symlink-out"}  # found in the merged tree, not in one layer
# a plain tar layer is gzip-compressed by skopeo on its way to a registry: another digest
RECOMPRESSED = {"tar-truncated"}
INTEGRATION = "fails the content rule toolforge-integration: "
REPOSITORY = "tool/app"  # every case's image, by tag
BASE = "toolforge/bookworm-sssd:latest"  # the trusted base
UNREAD = INTEGRATION + "its content could not be read "


@dataclass(frozen=True)
class Case:
    image: str  # repository:tag in the module's registry
    namespace: str
    allowed: bool
    says: tuple[str, ...] = ()  # what the denial (or, when allowed, a warning) says, in order


CASES = (
    "on-base-gzip",
    "on-base-zstd",
    "on-base-docker-v2s2",
    "purged-gzip",
    "purged-zstd",
    "library-deleted",
    "opaque-etc-gzip",
    "opaque-etc-zstd",
    "other-debian-content-proof",
    "other-debian-both-proofs",
    "licences-open",
    "licences-denied",
    *(f"hostile-{name}" for name in HOSTILE),
    "hostile-digest-mismatch",
    "hostile-on-error-allow",
)


@dataclass
class World:
    registry: Registry
    policy: Path
    webhook: WebhookProcess
    cases: dict[str, Case] = field(default_factory=dict)
    # `check --registry` runs, started with the webhook (each reads every image cold): by label
    checks: dict[str, Future[subprocess.CompletedProcess[str]]] = field(default_factory=dict)

    def image(self, name: str) -> str:
        return f"{self.registry.host}/{self.cases[name].image}"

    def pod(self, name: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": self.cases[name].namespace},
            "spec": {"containers": [{"name": "app", "image": self.image(name)}]},
        }

    def review(self, name: str) -> dict[str, Any]:
        return admission_review(self.pod(name), self.cases[name].namespace)


def _base(tar_path: Path, compression: str) -> Blob:
    data = compressed(tar_path, compression).read_bytes()
    return Blob(data, OCI_GZIP if compression == "gzip" else OCI_ZSTD, tar_digest(tar_path))


def _purge(tar_path: Path, package: str) -> tuple[list[Entry], int]:
    """A layer as ``apt-get purge package`` leaves it: each of its files whited out where it is
    (its dpkg ``.list``, through usrmerge's symlinked directories), its dpkg info files too, dpkg's
    status without it, nsswitch.conf as libnss-sss's postrm leaves it; and how many packages dpkg
    lists then."""
    kinds: dict[str, tarfile.TarInfo] = {}
    wanted: dict[str, bytes] = {}
    with tarfile.open(tar_path) as archive:
        for member in archive:
            path = member.name.removeprefix(".")
            kinds[path] = member
            info = path.startswith("/var/lib/dpkg/info/") and path[19:].split(".")[0].split(":")[0] == package
            if (info and path.endswith(".list")) or path in (dpkg.STATUS, "/etc/nsswitch.conf"):
                extracted = archive.extractfile(member)
                assert extracted is not None
                wanted["list" if info else path] = extracted.read()
    links = {path: member.linkname for path, member in kinds.items() if member.issym()}

    def physical(path: str) -> str:
        """``path`` with its directories' symlinks followed (dpkg lists /lib/..., usrmerge keeps it in /usr/lib)."""
        parts, done = path.strip("/").split("/"), ""
        for part in parts[:-1]:
            here = f"{done}/{part}"
            target = links.get(here)
            done = here if target is None else target if target.startswith("/") else f"{done}/{target}"
        return f"{done}/{parts[-1]}"

    paths = [p for p in wanted["list"].decode().splitlines() if p != "/."]
    folders = {p.rpartition("/")[0] for p in paths}  # directories to dpkg, even where they are symlinks (/lib)
    info_files = sorted(
        p for p in kinds if p.startswith("/var/lib/dpkg/info/") and p[19:].split(".")[0].split(":")[0] == package
    )
    gone = sorted({physical(p) for p in paths if p not in folders} & {p for p, m in kinds.items() if not m.isdir()})
    left = b"\n\n".join(
        s for s in wanted[dpkg.STATUS].split(b"\n\n") if not s.startswith(f"Package: {package}\n".encode())
    )
    # its postrm takes sss out of nsswitch.conf's databases (dh_installnss), and an empty automount line
    nsswitch = re.sub(
        rb"(?m)^((?:passwd|group|shadow|gshadow|services|netgroup|automount):.*?)\s+sss\b",
        rb"\1",
        wanted["/etc/nsswitch.conf"],
    )
    nsswitch = re.sub(rb"(?m)^automount:\s*\n", b"", nsswitch)
    entries = [file("var/lib/dpkg/status", left), file("etc/nsswitch.conf", nsswitch)]
    for path in gone + info_files:
        folder, _, base = path.rpartition("/")
        entries.append(file(f"{folder.lstrip('/')}/.wh.{base}", b""))
    count = len(read_inventory(ImageFiles({dpkg.STATUS: left})).packages)
    return entries, count


def _npm_package(name: str) -> bytes:
    for root in NPM_ROOTS:
        found = root / name / "package.json"
        if found.is_file():
            return found.read_bytes()
    pytest.fail(f"npm's {name} is not installed under {', '.join(map(str, NPM_ROOTS))} (install nodejs or npm)")


def _packages(python: tuple[str, ...]) -> list[Entry]:
    """Python distributions' METADATA and npm packages' package.json, as installed on this machine."""
    entries = []
    for name in python:
        dist = importlib.metadata.distribution(name)
        metadata = dist.read_text("METADATA")
        assert metadata is not None, name
        folder = dist._path.name  # type: ignore[attr-defined]
        entries.append(file(f"usr/local/lib/python3.11/site-packages/{folder}/METADATA", metadata.encode()))
    entries += [file(f"srv/app/node_modules/{name}/package.json", _npm_package(name)) for name in NPM]
    return entries


def _corrupt_stored_blob(registry_dir: Path, digest: str) -> None:
    """Flip a byte of a blob in docker-registry's filesystem storage: it then serves other bytes
    under the digest (the same size), as a damaged disk or a tampered store would."""
    hexdigest = digest.split(":")[1]
    stored = registry_dir / "data/docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest / "data"
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stored.write_bytes(bytes(data))


def _policy(reg: Registry, workdir: Path) -> Path:
    built_in = yaml.safe_load(DEFAULT_POLICY_YAML)["content"]["rules"]
    assert [rule["name"] for rule in built_in] == ["toolforge-integration"]
    host = reg.host
    document = {
        "registry": {
            "caFile": str(reg.tls.ca_cert),
            "credentialsFile": str(reg.docker_config(workdir / "config.json")),
            "contact": [host],
            # time is not what these tests are about: a lookup on a machine busy with the suite's
            # workers may take longer than production's limits (the answer would be a timeout)
            "timeoutSeconds": UNHURRIED_REQUEST,
            "lookupTimeoutSeconds": UNHURRIED_LOOKUP,
        },
        "trusted": [f"{host}/{REPOSITORY}:hostile-on-error-allow"],
        "baseImages": {"trusted": [f"{host}/{BASE}"]},
        "content": {
            "rules": [
                *built_in,
                {
                    "name": "open-source",
                    "images": [f"{host}/{REPOSITORY}:licences-open", f"{host}/{REPOSITORY}:licences-denied"],
                    "licenses": {"allow": ["osi"], "deny": ["GPL-2.0-or-later"], "ecosystems": ["pypi", "npm"]},
                },
                {
                    "name": "lenient-integration",
                    "images": [f"{host}/{REPOSITORY}:hostile-on-error-allow"],
                    "requirePackages": [{"name": "libnss-sss"}],
                    "onError": "allow",
                },
            ]
        },
        "byoc": {
            "grants": [{"namespace": "tool-both", "proof": "both"}, {"namespace": "tool-content", "proof": "content"}]
        },
    }
    path = workdir / "policy.yaml"
    path.write_text(POLICY_HEADER + yaml.safe_dump(document, sort_keys=False))
    return path


@dataclass(frozen=True)
class _Push:
    name: str
    blobs: list[Blob]
    case: Case
    damage: str = ""  # a blob whose stored bytes are altered after the push
    docker: bool = False  # pushed as a Docker v2 schema 2 manifest (skopeo converts it)


def _plan(trusted_tar: Path, other_tar: Path) -> list[_Push]:
    """Every case's image (its blobs) and what it must get; all under one repository (each
    repository holds its own copy of the base blob), told apart by tag."""
    purge, purged_count = _purge(trusted_tar, "libnss-sss")
    opaque = [directory("etc"), file("etc/.wh..wh..opq", b""), file("etc/nsswitch.conf", FILES_ONLY)]
    # `RUN rm` of libnss-sss's library (where usrmerge keeps it), dpkg's database untouched: a whiteout only
    deleted = [file("usr/lib/x86_64-linux-gnu/.wh.libnss_sss.so.2", b"")]
    app = [directory("srv"), directory("srv/app"), file("srv/app/main.py", b"print('hello')\n")]
    hostile = hostile_layers(SSS)
    plan: list[_Push] = []

    def add(
        name: str, blobs: list[Blob], namespace: str, allowed: bool, *says: str, damage: str = "", docker: bool = False
    ) -> None:
        plan.append(_Push(name, blobs, Case(f"{REPOSITORY}:{name}", namespace, allowed, says), damage, docker))

    for compression in ("gzip", "zstd"):
        base = _base(trusted_tar, compression)
        add(f"on-base-{compression}", [base, layer(app, compression)], "tool-both", True)
        add(
            f"purged-{compression}",
            [base, layer(purge, compression)],
            "tool-both",
            False,
            f"{INTEGRATION}libnss-sss is not installed (dpkg lists {purged_count} packages); "
            r"/etc/nsswitch.conf: passwd: files (no line matches ^passwd:.*\bsss\b); "
            r"/etc/nsswitch.conf: group: files (no line matches ^group:.*\bsss\b)",
        )
        add(
            f"opaque-etc-{compression}",
            [base, layer(opaque, compression)],
            "tool-both",
            False,
            INTEGRATION + r"/etc/nsswitch.conf: passwd: files (no line matches ^passwd:.*\bsss\b); "
            r"/etc/nsswitch.conf: group: files (no line matches ^group:.*\bsss\b)",
        )
    base = _base(trusted_tar, "gzip")
    add("on-base-docker-v2s2", [base, layer(app)], "tool-both", True, docker=True)
    add(
        "library-deleted",
        [base, layer(deleted)],
        "tool-both",
        False,
        # dpkg's path for it (its .list and md5sums say /lib: usrmerge's symlink)
        f"{INTEGRATION}libnss-sss is installed but 1 of its files is missing: /lib/x86_64-linux-gnu/libnss_sss.so.2",
    )
    other = [_base(other_tar, "gzip"), layer(app)]
    add("other-debian-content-proof", other, "tool-content", True)
    add("other-debian-both-proofs", other, "tool-both", False, "is not built on a trusted base image")
    add("licences-open", [base, layer(_packages(PYTHON["open"]))], "tool-content", True)
    add(
        "licences-denied",
        [base, layer(_packages(PYTHON["mixed"]))],
        "tool-content",
        False,
        "fails the content rule open-source: 2 packages under licences that are not OSI-approved: "
        "atheris (unknown), python-debian (GPL-2.0-or-later denied)",
    )
    for name, why in HOSTILE.items():
        item, kind = hostile[name]
        where = "" if name in MERGED else "layer sha256:" if name in RECOMPRESSED else f"layer {item.digest}: "
        said = why
        if kind is ContentErrorKind.BOMB:
            said = f"unpacks to more than {ContentLimits().unpacked_allowance(len(item.data))} bytes, {why}"
        add(f"hostile-{name}", [base, item], "tool-both", False, f"{UNREAD}({kind.value}): {where}", f": {said}")
    tampered = layer([file("etc/nsswitch.conf", SSS)])
    add(
        "hostile-digest-mismatch",
        [base, tampered],
        "tool-both",
        False,
        f"{UNREAD}(digest-mismatch): layer {tampered.digest}: the bytes sent have the digest sha256:",
        damage=tampered.digest,
    )
    bomb = hostile["bomb"][0]
    add(
        "hostile-on-error-allow",
        [base, bomb],
        "tool-content",
        True,
        f"lenient-integration: its content could not be read (bomb): layer {bomb.digest[:19]}",
    )
    return plan


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    workdir = tmp_path_factory.mktemp("content-e2e")
    plan = _plan(rootfs(**TRUSTED), rootfs(**OTHER))  # type: ignore[arg-type]
    cases = {push.name: push.case for push in plan}
    assert sorted(cases) == sorted(CASES)
    layout = OciLayout(workdir / "layout")
    in_layout(layout, plan[0].blobs[:1], "base")
    for item in plan:
        in_layout(layout, item.blobs, item.name)
    damaged = [item.damage for item in plan if item.damage]
    docker = {item.name for item in plan if item.docker}
    del plan  # the blobs are in the layout: their bytes need not stay in memory
    with run_registry(workdir / "registry") as reg:

        def push(name: str) -> None:
            push_by_skopeo(reg, layout, name, f"{REPOSITORY}:{name}", docker_format=name in docker)

        # the base alone (the trusted base image), then the images whose big blobs are new, then
        # the rest side by side (skopeo finds their big blobs in the repository by then)
        push_by_skopeo(reg, layout, "base", BASE)
        first = ["on-base-gzip", "on-base-zstd", "other-debian-content-proof"]
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(push, first))
            list(pool.map(push, [name for name in CASES if name not in first]))
        for digest in damaged:
            _corrupt_stored_blob(workdir / "registry", digest)
        policy = _policy(reg, workdir)
        with run_webhook(workdir / "webhook", policy=policy) as webhook, ThreadPoolExecutor(3) as checks:
            world = World(reg, policy, webhook, cases)
            # `check --registry` in two runs, the admitted cases and the denied ones, beside the
            # webhook's tests (each process reads every layer it needs once)
            for label, allowed in (("admitted", True), ("denied", False)):
                manifests = workdir / f"{label}.yaml"
                pods = [world.pod(name) for name in CASES if cases[name].allowed is allowed]
                manifests.write_text(yaml.safe_dump_all(pods, sort_keys=False))
                args = ("check", str(manifests), "-p", str(policy), "--registry", "-o", "json")
                world.checks[label] = checks.submit(run_imagegate, *args)
            licensed = [world.image(name) for name in ("licences-open", "licences-denied")]
            world.checks["scan"] = checks.submit(run_imagegate, "scan", *licensed, "-p", str(policy), "-o", "json")
            yield world
            assert "Traceback" not in webhook.logs()


def _settled(client: httpx.Client, review: dict[str, Any], timeout: float = 90) -> dict[str, Any]:
    """The response to ``review`` once the image is read: "being read, retry shortly" is sent
    again, as Kubernetes' controllers do."""
    deadline = time.monotonic() + timeout
    while True:
        reply = client.post("/validate", json=review)
        assert reply.status_code == 200, reply.text
        response: dict[str, Any] = reply.json()["response"]
        if BEING_READ not in json.dumps(response) or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


def _said(response: dict[str, Any]) -> str:
    """What a /validate response says: the denial's message, or the warnings of an admission."""
    return str(response.get("status", {}).get("message", "")) + "\n".join(response.get("warnings", []))


def _as_expected(case: Case, image: str, response: dict[str, Any]) -> None:
    said = _said(response)
    assert response["allowed"] is case.allowed, said
    assert "Traceback" not in said and BEING_READ not in said
    if not case.allowed:
        assert response["status"]["code"] == 403
        assert said.startswith("imagegate denied Pod ") and ": 1 violation: " in said, said
        assert f"container \"app\" image '{image}' " in said, said
    for part in case.says:
        assert part in said, (part, said)
    if case.allowed and not case.says:
        assert said == "", said


@pytest.mark.parametrize("name", CASES)
def test_validate(world: World, name: str) -> None:
    """Each case through /validate (a review sent again while its image is being read)."""
    _as_expected(world.cases[name], world.image(name), _settled(world.webhook.client(), world.review(name)))


def test_content_verdicts_are_counted(world: World) -> None:
    """imagegate_verdicts_total{check="content"} counts each content rule's verdict a decision was
    made with (the metric's code names no question type: ContentQuestion declares its check)."""
    client = world.webhook.client()
    # licences-denied (a content grant): toolforge-integration passes, open-source fails;
    # hostile-on-error-allow: lenient-integration cannot read it and its onError allows
    names = ("licences-denied", "hostile-on-error-allow")
    for name in names:
        _settled(client, world.review(name))  # read and judged (a failed read is read again: unverified still)

    def counted() -> dict[str, float]:
        series = scrape(world.webhook)
        return {v: value(series, "imagegate_verdicts_total", check="content", verdict=v) for v in Verdict}

    before = counted()
    for name in names:
        assert client.post("/validate", json=world.review(name)).status_code == 200
    after = counted()
    assert {v: after[v] - before[v] for v in Verdict} == {"pass": 1, "fail": 1, "unverified": 1}


@pytest.mark.parametrize("name", CASES)
def test_check_registry(checked: dict[str, Any], world: World, name: str) -> None:
    """Each case through ``check --registry``: the same verdict and words as /validate."""
    case, found = world.cases[name], checked[name]
    assert found["allowed"] is case.allowed, found
    said = found["message"] + "\n".join(found["notices"])
    for part in case.says:
        assert part in said, (part, said)
    if case.allowed:
        assert not found["violations"] and not found["warnings"]
        assert bool(found["notices"]) is bool(case.says)  # onError: allow says what was not verified
    else:
        (violation,) = found["violations"]
        assert violation["mode"] == "enforce" and violation["message"] in found["message"]


def test_check_registry_exit_codes(checked: dict[str, Any]) -> None:
    """The admitted cases' run exits 0, the denied cases' 1 (none 2: every image was judged)."""
    assert checked["exit codes"] == {"admitted": 0, "denied": 1}


def test_validate_under_load(world: World) -> None:
    """200 reviews over 20 connections, every case in turn: each answer is its case's, and none
    is a 500. A hostile image's failed read is its answer, kept by digest for
    registry.contents.failureTtlSeconds, so a repeat gets the same named error without a read;
    a registry's timeout or outage would not be kept, and is not what these cases are."""
    client = world.webhook.client()
    for name in CASES:  # every case read once (the tests above may not have run: -k, xdist)
        _settled(client, world.review(name))
    order = [CASES[i % len(CASES)] for i in range(200)]

    async def load() -> list[tuple[str, int, dict[str, Any]]]:
        limits = httpx.Limits(max_connections=20, max_keepalive_connections=20)
        verify = ssl.create_default_context(cafile=str(world.webhook.tls.ca_cert))
        async with httpx.AsyncClient(base_url=world.webhook.url, verify=verify, limits=limits, timeout=60) as http:
            gate = asyncio.Semaphore(20)

            async def one(name: str) -> tuple[str, int, dict[str, Any]]:
                async with gate:
                    reply = await http.post("/validate", json=world.review(name))
                    return name, reply.status_code, reply.json()["response"] if reply.status_code == 200 else {}

            return await asyncio.gather(*(one(name) for name in order))

    started = time.monotonic()
    results = asyncio.run(load())
    print(f"200 reviews in {time.monotonic() - started:.2f}s")
    assert [status for _, status, _ in results if status != 200] == []
    for name, _, response in results:
        _as_expected(world.cases[name], world.image(name), response)


@pytest.fixture(scope="module")
def checked(world: World) -> dict[str, Any]:
    """The ``check --registry -o json`` runs' objects by case, and their exit codes under "exit codes"."""
    found: dict[str, Any] = {"exit codes": {}}
    for label in ("admitted", "denied"):
        running = world.checks[label]
        result = running.result()
        assert "Traceback" not in result.stderr, result.stderr
        found["exit codes"][label] = result.returncode
        found.update({o["name"]: o for o in json.loads(result.stdout)["objects"]})
    return found


def test_python_and_npm_packages_are_inventoried(world: World) -> None:
    """``imagegate scan`` of the licences cases: each distribution and npm package the layer
    holds, with the licence its metadata says (SPDX), and what the open-source rule made of it."""
    result = world.checks["scan"].result()
    assert result.returncode == 1, result.stderr  # the denied image fails an enforced rule
    report = {i["image"].rpartition(":")[2]: i for i in json.loads(result.stdout)["images"]}
    expected = {"msgspec": "BSD-3-Clause", "PyYAML": "MIT", "semver": "ISC", "ms": "MIT", "glob": "BlueOak-1.0.0"}
    mixed = {**expected, "python-debian": "GPL-2.0-or-later", "atheris": None}
    for tag, licences in (("licences-open", expected), ("licences-denied", mixed)):
        found = {p["name"]: p.get("licence") for p in report[tag]["packages"] if p["ecosystem"] != "deb"}
        assert found == licences, (tag, found)
        assert report[tag]["ecosystems"]["npm"] == len(NPM)
    assert report["licences-open"]["ok"] and not report["licences-denied"]["ok"]
