"""An image's files read from a real registry (docker-registry): layers streamed, verified, merged.

Hand-built layers (python tarfile; gzip, zstd and plain; OCI and Docker media types) are pushed by
blob upload and manifest PUT; hostile ones (bombs, traversal, link loops, cut or corrupt streams)
the same way, each read to its named error. A real HTTPS server that misbehaves sends a layer whose
bytes are not its digest's, and one that trickles it past the time limit.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from imagegate.core.contents.files import FileSelection
from imagegate.core.contents.layers import ContentErrorKind
from imagegate.core.contents.limits import ContentLimits
from imagegate.core.policy import load_policy
from imagegate.core.reference import parse_docker_ref
from imagegate.shell.registry.auth import DockerConfigCredentials
from imagegate.shell.registry.client import RegistryClient, RegistrySettings
from imagegate.shell.registry.contents import ContentReader, ContentReadError, read_files
from imagegate.shell.registry.errors import RegistryError
from imagegate.shell.webhook.certs import make_certificates
from tests.conftest import POLICY_HEADER, run_imagegate
from tests.content_layers import (
    ANY_DIFF_ID,
    DOCKER_GZIP,
    OCI_MANIFEST,
    Blob,
    blob,
    directory,
    file,
    flipped,
    hardlink,
    hostile_layers,
    image_documents,
    layer,
    push,
    symlink,
    tar,
)
from tests.oci_images import OciLayout, skopeo_copy
from tests.oci_images import layer as oci_layer
from tests.registry_process import (
    STALL_TIMEOUT,
    UNHURRIED,
    UNHURRIED_CLIENT,
    Registry,
    SteppedLoop,
    fault_handler,
    https_server,
    reply,
    run_registry,
)

SELECTION = FileSelection(
    frozenset({"/etc/nsswitch.conf", "/etc/os-release", "/var/lib/dpkg/status", "/etc/hard", "/lib/os-release"}),
    ("/usr/share/doc/*/copyright",),
)
SSS = b"passwd: files sss\ngroup: files sss\n"
FILES_ONLY = b"passwd: files\ngroup: files\n"
OS_RELEASE = b"ID=debian\nVERSION_ID=12\n"
STATUS = b"Package: libnss-sss\nStatus: install ok installed\n"

BASE = layer(
    [
        directory("etc"),
        file("etc/nsswitch.conf", SSS),
        # the target before its link: the reader keeps a link's later target at once, an earlier one
        # it reads again for
        file("usr/lib/os-release", OS_RELEASE),
        symlink("etc/os-release", "../usr/lib/os-release"),
        hardlink("etc/hard", "usr/lib/os-release"),
        symlink("lib", "usr/lib"),
        file("var/lib/dpkg/status", STATUS),
        file("usr/share/doc/libnss-sss/copyright", b"GPL-3+\n"),
        file("usr/share/doc/bash/copyright", b"GPL-3+ bash\n"),
        file("usr/bin/bash", b"\x7fELF" + bytes(4000)),
    ]
)
# a later layer removes libnss-sss's files and makes /etc opaque with its own nsswitch.conf (zstd)
REMOVING = layer(
    [
        file("usr/share/doc/.wh.libnss-sss", b""),
        file("etc/.wh..wh..opq", b""),
        file("etc/nsswitch.conf", FILES_ONLY),
    ],
    "zstd",
)
APP = layer([file("srv/app/main.py", b"print('hi')\n")], "none")
DOCKER_APP = layer([file("srv/app/README", b"docker\n")], media_type=DOCKER_GZIP)


HOSTILE = hostile_layers(SSS)


@dataclass
class Pushed:
    registry: Registry
    credentials: DockerConfigCredentials

    def ref(self, name: str) -> str:
        return f"{self.registry.host}/{name}"

    def client(self, **settings: Any) -> RegistryClient:
        settings = {**UNHURRIED_CLIENT, **settings}  # time is not what these tests are about
        return RegistryClient(
            RegistrySettings(ca_file=self.registry.tls.ca_cert, credentials=self.credentials, **settings)
        )


@pytest.fixture(scope="module")
def pushed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pushed]:
    workdir = tmp_path_factory.mktemp("contents")
    with run_registry(workdir / "registry", "htpasswd") as reg:
        push(reg, "toolforge/base", "1", [BASE])
        push(reg, "tool-a/app", "removing", [BASE, REMOVING])
        push(reg, "tool-a/app", "plain", [BASE, APP, DOCKER_APP])
        for name, (item, _kind) in HOSTILE.items():
            push(reg, "tool-b/hostile", name, [BASE, item])
        credentials = DockerConfigCredentials.from_docker_config(reg.docker_config(workdir / "config.json"))
        yield Pushed(reg, credentials)


def _run(pushed: Pushed, call: Any, limits: ContentLimits | None = None, **settings: Any) -> Any:
    async def go() -> Any:
        async with pushed.client(**settings) as client:
            return await call(ContentReader(client, limits))

    return asyncio.run(go())


def _files(pushed: Pushed, name: str, limits: ContentLimits | None = None) -> dict[str, bytes]:
    async def call(reader: ContentReader) -> dict[str, bytes]:
        (files,) = (await reader.read(pushed.ref(name), SELECTION)).values()
        return dict(files.files)

    result: dict[str, bytes] = _run(pushed, call, limits)
    return result


def test_base_files_links_and_hard_links(pushed: Pushed) -> None:
    files = _files(pushed, "toolforge/base:1")
    assert files == {
        "/etc/nsswitch.conf": SSS,
        "/etc/os-release": OS_RELEASE,  # a relative symlink to a file no pattern keeps: read again for it
        "/lib/os-release": OS_RELEASE,  # through the symlinked directory /lib
        "/etc/hard": OS_RELEASE,  # a hard link to that file
        "/var/lib/dpkg/status": STATUS,
        "/usr/share/doc/libnss-sss/copyright": b"GPL-3+\n",
        "/usr/share/doc/bash/copyright": b"GPL-3+ bash\n",
    }


def test_whiteouts_and_an_opaque_directory_hide_the_base(pushed: Pushed) -> None:
    files = _files(pushed, "tool-a/app:removing")
    assert files["/etc/nsswitch.conf"] == FILES_ONLY
    assert "/usr/share/doc/libnss-sss/copyright" not in files
    assert "/etc/os-release" not in files  # the opaque /etc hid the base's symlink
    assert "/etc/hard" not in files
    assert files["/lib/os-release"] == OS_RELEASE
    assert files["/usr/share/doc/bash/copyright"] == b"GPL-3+ bash\n"


def test_plain_and_docker_layers(pushed: Pushed) -> None:
    selection = SELECTION | FileSelection(frozenset({"/srv/app/main.py", "/srv/app/README"}))

    async def call(reader: ContentReader) -> dict[str, bytes]:
        (files,) = (await reader.read(pushed.ref("tool-a/app:plain"), selection)).values()
        assert files.entries == 12  # every entry of the three layers walked
        return dict(files.files)

    files = _run(pushed, call)
    assert files["/srv/app/main.py"] == b"print('hi')\n"
    assert files["/srv/app/README"] == b"docker\n"


def test_a_layer_is_read_once_for_every_image_and_reader(pushed: Pushed) -> None:
    async def call(reader: ContentReader) -> None:
        base = reader.read(pushed.ref("toolforge/base:1"), SELECTION)
        removing = reader.read(pushed.ref("tool-a/app:removing"), SELECTION)
        results = await asyncio.gather(*(base for base in [base, removing]))
        assert len(results) == 2
        # the base blob once, then once more for the file its symlinks need; the zstd layer once
        assert reader.layers_streamed == 3
        assert reader.client.fetches["layer"] == 3
        again = await asyncio.gather(*(reader.read(pushed.ref("tool-a/app:removing"), SELECTION) for _ in range(20)))
        assert all(result == again[0] for result in again)
        assert reader.client.fetches["layer"] == 3  # cached by image digest
        await reader.read(pushed.ref("tool-a/app:plain"), SELECTION)
        assert reader.client.fetches["layer"] == 5  # only the image's own two layers

    _run(pushed, call)


def test_concurrent_reads_of_one_image_share_one_stream_per_layer(pushed: Pushed) -> None:
    async def call(reader: ContentReader) -> None:
        reads = [reader.read(pushed.ref("tool-a/app:plain"), SELECTION) for _ in range(30)]
        results = await asyncio.gather(*reads)
        assert all(result == results[0] for result in results)
        assert reader.client.fetches["layer"] == 4  # three layers, the base once more for its links

    _run(pushed, call)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_layers_end_in_named_errors(pushed: Pushed, name: str) -> None:
    expected = HOSTILE[name][1]
    started = time.process_time()  # this process's CPU (the reader's threads too): not the machine's load
    with pytest.raises(ContentReadError) as caught:
        _files(pushed, f"tool-b/hostile:{name}")
    assert caught.value.content is expected, str(caught.value)
    digest = HOSTILE[name][0].digest
    if expected not in (ContentErrorKind.LINK_LOOP, ContentErrorKind.UNSAFE_LINK) or "hardlink-out" in name:
        assert digest in str(caught.value)  # the message names the layer
    assert time.process_time() - started < 10  # refused early, not read to its end


@pytest.mark.parametrize(
    ("limits", "kind", "setting"),
    [
        (ContentLimits(max_entries=5), ContentErrorKind.TOO_MANY_ENTRIES, "maxEntries"),
        (ContentLimits(max_file_bytes=10), ContentErrorKind.TOO_LARGE, "maxFileBytes"),
        (ContentLimits(max_kept_bytes=40), ContentErrorKind.TOO_LARGE, "maxKeptBytes"),
        (ContentLimits(max_layer_bytes=100), ContentErrorKind.TOO_LARGE, "maxLayerBytes"),
        (ContentLimits(max_image_bytes=1000), ContentErrorKind.TOO_LARGE, "maxImageBytes"),
        (ContentLimits(max_unpacked_layer_bytes=5000), ContentErrorKind.TOO_LARGE, "maxUnpackedLayerBytes"),
    ],
)
def test_limits_end_in_named_errors(
    pushed: Pushed, limits: ContentLimits, kind: ContentErrorKind, setting: str
) -> None:
    with pytest.raises(ContentReadError) as caught:
        _files(pushed, "tool-a/app:plain", limits)
    assert caught.value.content is kind
    assert f"registry.contents.{setting}" in str(caught.value)


def test_only_registries_the_policy_names_are_asked(pushed: Pushed) -> None:
    policy = load_policy(POLICY_HEADER + "trusted: [registry.example.org]\n", "<test>")

    async def call(client: RegistryClient) -> None:
        reader = ContentReader(client, scope=policy.contact_scope())
        with pytest.raises(RegistryError) as caught:
            await reader.read(pushed.ref("toolforge/base:1"), SELECTION)
        assert caught.value.kind == "not-contacted"
        assert client.fetches == {}

    async def go() -> None:
        async with pushed.client() as client:
            await call(client)

    asyncio.run(go())


# --- a registry that sends a layer wrongly -------------------------------------------------------

GOOD = layer([file("etc/nsswitch.conf", SSS)])
CONFIG, MANIFEST = image_documents([GOOD])
CONFIG_DIGEST = hashlib.sha256(CONFIG).hexdigest()


def _serving(kind: str, released: threading.Event, stalled: Callable[[], None] = lambda: None) -> Any:
    def behaviour(handler: BaseHTTPRequestHandler) -> None:
        path = handler.path
        if "/manifests/" in path:
            reply(handler, 200, MANIFEST, {"Content-Type": OCI_MANIFEST})
        elif path.endswith(hashlib.sha256(CONFIG).hexdigest()):
            reply(handler, 200, CONFIG)
        elif kind == "redirect" and "/blobs/" in path:  # to blob storage, elsewhere on the server
            reply(handler, 307, b"", {"Location": "/storage/layer?signature=abc"})
        elif kind == "redirect" and path.startswith("/storage/"):
            reply(handler, 200, GOOD.data)
        elif kind == "mismatch":  # the same size, other bytes
            reply(handler, 200, flipped(GOOD.data, len(GOOD.data) // 2))
        elif kind == "longer":
            reply(handler, 200, GOOD.data + b"more")
        else:  # stalled: the headers and a first byte, then nothing until the test is over
            handler.send_response(200)
            handler.send_header("Content-Length", str(len(GOOD.data)))
            handler.end_headers()
            handler.wfile.write(GOOD.data[:1])
            handler.wfile.flush()
            stalled()
            released.wait(120)

    return behaviour


# registry.contents.timeoutSeconds at STALL_TIMEOUT, where the test moves the clock past it
# (SteppedLoop); the client's own timeouts far beyond it, so that only the content deadline ends
STALLED_CLIENT: dict[str, Any] = {"timeout": 4 * STALL_TIMEOUT, "lookup_timeout": 4 * STALL_TIMEOUT}


async def _left_behind() -> None:
    """Wait for the tasks a read left going: a layer's stream is its own task (single flight,
    shielded), which a failed read neither waits for (asyncio.gather) nor stops, nor does a read
    whose image deadline ended. Counted before it ends, it may fetch after the count; asked again
    before it ends, the next read shares it instead of fetching (both seen on a loaded machine)."""
    others = asyncio.all_tasks() - {asyncio.current_task()}
    if others:
        _, pending = await asyncio.wait(others, timeout=60)
        assert not pending, pending


def test_a_layer_redirected_to_blob_storage(tmp_path: Path) -> None:
    tls = make_certificates(tmp_path / "tls", ["127.0.0.1"])
    hits: list[str] = []
    with https_server(fault_handler(_serving("redirect", threading.Event()), hits), tls) as host:

        async def go() -> dict[str, Any]:
            async with RegistryClient(RegistrySettings(ca_file=tls.ca_cert, **UNHURRIED_CLIENT)) as client:
                return await ContentReader(client).read(parse_docker_ref(f"{host}/tool/app:1"), SELECTION)

        (files,) = asyncio.run(go()).values()
    assert files.files == {"/etc/nsswitch.conf": SSS}
    assert "/storage/layer?signature=abc" in hits


def test_a_token_auth_registry(tmp_path: Path) -> None:
    with run_registry(tmp_path / "registry", "token") as reg:
        lower = oci_layer({"etc/nsswitch.conf": SSS, "usr/share/doc/bash/copyright": b"GPL\n"})
        upper = oci_layer({"etc/.wh.nsswitch.conf": b""})
        reg.push(OciLayout(tmp_path / "layout"), "app", [lower, upper], "tool-a/app:1")  # skopeo, with a token

        async def go() -> dict[str, Any]:
            credentials = DockerConfigCredentials.from_docker_config(reg.docker_config(tmp_path / "config.json"))
            settings = RegistrySettings(ca_file=reg.tls.ca_cert, credentials=credentials, **UNHURRIED_CLIENT)
            async with RegistryClient(settings) as client:
                return await ContentReader(client).read(f"{reg.host}/tool-a/app:1", SELECTION)

        (files,) = asyncio.run(go()).values()
        assert files.files == {"/usr/share/doc/bash/copyright": b"GPL\n"}
        assert any("scope=repository%3Atool-a%2Fapp%3Apull" in request for request in reg.token_requests)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("mismatch", "the bytes sent have the digest"),
        ("longer", "more than"),
        ("stall", "registry.contents.timeoutSeconds"),
    ],
)
def test_a_registry_sending_other_bytes_or_too_slowly(tmp_path: Path, kind: str, expected: str) -> None:
    tls = make_certificates(tmp_path / "tls", ["127.0.0.1"])
    hits: list[str] = []
    released = threading.Event()
    loop = SteppedLoop()
    behaviour = _serving(kind, released, lambda: loop.step(STALL_TIMEOUT))
    with https_server(fault_handler(behaviour, hits), tls) as host:

        async def go() -> None:
            async with RegistryClient(RegistrySettings(ca_file=tls.ca_cert, **STALLED_CLIENT)) as client:
                reader = ContentReader(client, ContentLimits(timeout_seconds=STALL_TIMEOUT))
                await reader.read(parse_docker_ref(f"{host}/tool/app:1"), SELECTION)

        try:
            with pytest.raises(RegistryError) as caught, asyncio.Runner(loop_factory=lambda: loop) as runner:
                runner.run(go())
        finally:
            released.set()
        assert expected in str(caught.value)
        if kind == "stall":  # ended by the content deadline while the registry still held the layer
            assert caught.value.kind == "timeout"
            assert not isinstance(caught.value, ContentReadError)
        else:
            assert isinstance(caught.value, ContentReadError)
            assert caught.value.content is ContentErrorKind.DIGEST_MISMATCH
            assert caught.value.kind == "digest-mismatch"


def test_gzip_members_and_compression_found_by_its_bytes(pushed: Pushed) -> None:
    """Two gzip members one after another, and a gzip layer labelled as a plain tar (containerd
    finds the compression by its first bytes): both read as the container would see them."""
    raw = tar([file("etc/nsswitch.conf", SSS)])
    two_members = Blob(
        gzip.compress(raw[:1024]) + gzip.compress(raw[1024:]),
        "application/vnd.oci.image.layer.v1.tar+gzip",
        ANY_DIFF_ID,
    )
    mislabelled = Blob(gzip.compress(raw), "application/vnd.oci.image.layer.v1.tar", ANY_DIFF_ID)
    push(pushed.registry, "tool-c/app", "members", [two_members])
    push(pushed.registry, "tool-c/app", "mislabelled", [mislabelled])
    assert _files(pushed, "tool-c/app:members") == {"/etc/nsswitch.conf": SSS}
    assert _files(pushed, "tool-c/app:mislabelled") == {"/etc/nsswitch.conf": SSS}


def test_ustar_and_gnu_formats(pushed: Pushed) -> None:
    long_name = "usr/share/doc/" + "a" * 120 + "/copyright"
    for form, tag in ((tarfile.USTAR_FORMAT, "ustar"), (tarfile.GNU_FORMAT, "gnu")):
        entries = [file(long_name, b"MIT\n")]
        if form == tarfile.GNU_FORMAT:  # a link name longer than USTAR holds
            entries.append(symlink("etc/nsswitch.conf", "/" + long_name))
        push(pushed.registry, "tool-c/app", tag, [blob(tar(entries, form))])
        files = _files(pushed, f"tool-c/app:{tag}")
        expected = {"/" + long_name: b"MIT\n"}
        if form == tarfile.GNU_FORMAT:
            expected["/etc/nsswitch.conf"] = b"MIT\n"
        assert files == expected, tag


def test_the_contents_command(pushed: Pushed, tmp_path: Path) -> None:
    config = pushed.registry.docker_config(tmp_path / "config.json")
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        POLICY_HEADER
        + f"trusted: []\nregistry: {{caFile: {pushed.registry.tls.ca_cert}, credentialsFile: {config}, "
        + f"contents: {{maxEntries: 100000}}, {UNHURRIED}}}\n"
    )
    args = ["-p", str(policy), "--file", "/etc/os-release", "--pattern", "/usr/share/doc/*/copyright"]
    listed = run_imagegate("contents", pushed.ref("tool-a/app:removing"), *args, "--show", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    (platform,) = json.loads(listed.stdout)["platforms"]
    assert platform["platform"] == "linux/amd64" and platform["entries"] == 13
    assert [(kept["path"], kept["text"]) for kept in platform["files"]] == [
        ("/usr/share/doc/bash/copyright", "GPL-3+ bash\n")  # os-release: hidden by the opaque /etc
    ]
    table = run_imagegate("contents", pushed.ref("toolforge/base:1"), *args, "--show")
    assert table.returncode == 0, table.stderr
    assert "/etc/os-release" in table.stdout and "VERSION_ID=12" in table.stdout
    hostile = run_imagegate(
        "contents", pushed.ref("tool-b/hostile:symlink-loop"), "-p", str(policy), "-f", "/etc/nsswitch.conf"
    )
    assert hostile.returncode == 2
    assert "more than 40 symlinks (a loop)" in hostile.stderr and "Traceback" not in hostile.stderr
    bad = run_imagegate("contents", pushed.ref("toolforge/base:1"), "-p", str(policy))
    assert bad.returncode == 2 and "--file PATH or --pattern GLOB" in bad.stderr
    limited = policy.read_text().replace("maxEntries: 100000", "maxEntries: 3")
    policy.write_text(limited)
    over = run_imagegate("contents", pushed.ref("toolforge/base:1"), *args)
    assert over.returncode == 2 and "registry.contents.maxEntries" in over.stderr
    policy.write_text(limited.replace("maxEntries: 3", "maxEntrys: 3"))
    typo = run_imagegate("contents", pushed.ref("toolforge/base:1"), *args)
    assert typo.returncode == 2 and "maxEntrys" in typo.stderr


def test_every_platform_a_node_pulls_is_read(pushed: Pushed, tmp_path: Path) -> None:
    layout = OciLayout(tmp_path / "layout")
    amd = layout.image([oci_layer({"etc/nsswitch.conf": SSS})])
    arm = layout.image([oci_layer({"etc/nsswitch.conf": FILES_ONLY})], architecture="arm64")
    layout.tag(layout.index([amd, arm]), "multi")
    registry = pushed.registry
    skopeo_copy(
        layout.root,
        "multi",
        f"{registry.host}/tool-c/app:multi",
        cert_dir=registry.cert_dir,
        credentials=registry.credentials,
        all_platforms=True,
    )

    async def call(reader: ContentReader) -> dict[str, dict[str, bytes]]:
        found = await reader.read(pushed.ref("tool-c/app:multi"), SELECTION)
        return {platform: dict(files.files) for platform, files in found.items()}

    both = _run(pushed, call, None, platforms=("linux/amd64", "linux/arm64"))
    config = pushed.registry.docker_config(tmp_path / "config.json")
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        POLICY_HEADER
        + f"trusted: []\nregistry: {{caFile: {pushed.registry.tls.ca_cert}, credentialsFile: {config}, {UNHURRIED}}}\n"
    )
    listed = run_imagegate(
        "contents",
        pushed.ref("tool-c/app:multi"),
        "-p",
        str(policy),
        "-f",
        "/etc/nsswitch.conf",
        "--platform",
        "linux/arm64",
        "-o",
        "json",
    )
    assert listed.returncode == 0, listed.stderr
    assert [p["platform"] for p in json.loads(listed.stdout)["platforms"]] == ["linux/arm64"]
    assert both == {"linux/amd64": {"/etc/nsswitch.conf": SSS}, "linux/arm64": {"/etc/nsswitch.conf": FILES_ONLY}}
    assert list(_run(pushed, call)) == ["linux/amd64"]  # the policy's platforms: only what the nodes run


def test_read_files_keeps_one_reader_per_client(pushed: Pushed) -> None:
    async def go() -> None:
        async with pushed.client() as client:
            first = await read_files(client, pushed.ref("toolforge/base:1"), SELECTION)
            again = await read_files(client, pushed.ref("toolforge/base:1"), SELECTION)
            assert first == again
            assert client.fetches["layer"] == 2  # the base, and again for what its links need: then cached
            limited = ContentLimits(max_entries=3)
            with pytest.raises(ContentReadError):  # other limits: another reader, nothing cached
                await read_files(client, pushed.ref("toolforge/base:1"), SELECTION, limited)

    asyncio.run(go())


def test_a_read_goes_on_in_the_background_past_its_callers_budget(pushed: Pushed) -> None:
    """What an admission does with a cold read (issue 25 item 4), through the one background
    mechanism (shell/registry/content_verdicts.py): answer "pending" when the budget ends first,
    and find the verdict done later, each layer streamed once; a background read that fails is
    the next answer's problem (kept for failureTtlSeconds: test_a_broken_image_is_read_once_per_failure_ttl)."""
    from imagegate.shell.registry.content_verdicts import ContentJudge  # noqa: PLC0415

    policy = load_policy(
        POLICY_HEADER
        + "trusted: []\ncontent:\n  rules:\n    - name: integration\n"
        + f"      images: ['{pushed.registry.host}/**']\n"
        + "      requireFiles: [{path: /etc/nsswitch.conf, lines: ['^passwd:.*\\bsss\\b']}]\n",
        "<test>",
    )
    rules = policy.content.rules

    async def go() -> None:
        async with pushed.client() as client:
            judge = ContentJudge()
            plain = parse_docker_ref(pushed.ref("tool-a/app:plain"))
            first = await judge.answer(client, plain, rules, budget=0.0)
            assert first.pending and not first.verdicts and judge.reads_started <= 1
            await judge.settled()  # it went on without anyone waiting
            fetched = client.fetches["layer"]
            assert fetched == 3  # three layers, once each
            later = await judge.answer(client, plain, rules, budget=5.0)
            assert [(v.rule, v.ok) for v in later.verdicts] == [("integration", True)]
            assert client.fetches["layer"] == fetched and judge.reads_started == 1
            together = await asyncio.gather(
                *(
                    judge.answer(client, parse_docker_ref(pushed.ref("tool-a/app:removing")), rules, 0.0)
                    for _ in range(20)
                )
            )
            assert all(answer.pending for answer in together)
            await judge.settled()
            assert judge.reads_started == 2  # twenty requests, one read
            bomb = parse_docker_ref(pushed.ref("tool-b/hostile:bomb"))
            assert (await judge.answer(client, bomb, rules, budget=0.0)).pending
            await judge.settled()
            doomed = await judge.answer(client, bomb, rules, budget=5.0)
            assert doomed.problem and not doomed.verdicts and not doomed.pending
            assert judge.reads_started == 3  # a read failed on the image's bytes is kept (failureTtlSeconds)
            # a server's shutdown: the reads in flight are cancelled (nobody waits for them and
            # their clients close next), the verdicts kept stay, and a later ask reads again
            opaque = parse_docker_ref(pushed.ref("toolforge/base:1"))
            assert (await judge.answer(client, opaque, rules, budget=0.0)).pending
            in_flight = list(judge._reads.values())
            assert in_flight
            await judge.aclose()
            assert judge._reads == {} and all(task.cancelled() for task in in_flight)
            assert (await judge.answer(client, plain, rules, budget=0.0)).verdicts  # kept
            started = judge.reads_started
            again = await judge.answer(client, opaque, rules, budget=None)  # as long as the read takes
            assert again.verdicts and judge.reads_started == started + 1  # nothing kept of the cancelled read

    asyncio.run(go())


def test_a_broken_image_is_read_once_per_failure_ttl(pushed: Pushed) -> None:
    """A read that fails on the image's bytes (a bomb, a digest mismatch...) is the answer for its
    digest until ``failureTtlSeconds`` ends (the judge's own clock, moved by hand): asked again
    and again, the broken layer streams once per TTL; a policy with other limits, or 0, reads again."""
    from imagegate.shell.registry.content_verdicts import ContentJudge  # noqa: PLC0415

    policy = load_policy(
        POLICY_HEADER
        + "trusted: []\ncontent:\n  rules:\n    - name: integration\n"
        + f"      images: ['{pushed.registry.host}/**']\n"
        + "      requireFiles: [{path: /etc/nsswitch.conf}]\n",
        "<test>",
    )
    rules = policy.content.rules
    now = [1000.0]
    limits = ContentLimits(failure_ttl_seconds=60)

    async def go() -> None:
        async with pushed.client() as client:
            judge = ContentJudge(clock=lambda: now[0])
            for name, kind in (("bomb", ContentErrorKind.BOMB), ("traversal", ContentErrorKind.UNSAFE_PATH)):
                broken = parse_docker_ref(pushed.ref(f"tool-b/hostile:{name}"))
                first = await judge.answer(client, broken, rules, None, limits)
                assert first.kind == kind.value and first.problem and first.digest, first
                await _left_behind()
                streamed, reads = client.fetches["layer"], judge.reads_started
                for _ in range(5):
                    assert await judge.answer(client, broken, rules, None, limits) == first
                now[0] += 59.9
                assert await judge.answer(client, broken, rules, None, limits) == first
                assert client.fetches["layer"] == streamed and judge.reads_started == reads  # streamed once
                now[0] += 0.2  # the TTL is over: read again (the broken layer only: the base is cached)
                assert await judge.answer(client, broken, rules, None, limits) == first
                await _left_behind()
                assert client.fetches["layer"] == streamed + 1 and judge.reads_started == reads + 1
                # other limits (a policy reload) judge anew; a TTL of 0 keeps nothing
                never = ContentLimits(failure_ttl_seconds=0)
                for _ in range(2):
                    assert (await judge.answer(client, broken, rules, None, never)).kind == kind.value
                    await _left_behind()
                # (other limits make a reader of their own: the base is streamed once more)
                assert client.fetches["layer"] == streamed + 4 and judge.reads_started == reads + 3

    asyncio.run(go())


def test_a_registry_timeout_is_not_kept_as_the_image_s_failure(tmp_path: Path) -> None:
    """A layer the registry sends too slowly ends in a timeout: that says nothing of the image's
    bytes, so the next ask reads again, within the TTL. The registry stalls each layer once it
    has the request, and only then does the clock pass registry.contents.timeoutSeconds
    (SteppedLoop): each read times out with its request at the registry, however loaded the machine."""
    from imagegate.shell.registry.content_verdicts import ContentJudge  # noqa: PLC0415

    tls = make_certificates(tmp_path / "tls", ["127.0.0.1"])
    hits: list[str] = []
    released = threading.Event()
    loop = SteppedLoop()
    with https_server(fault_handler(_serving("stall", released, lambda: loop.step(STALL_TIMEOUT)), hits), tls) as host:
        policy = load_policy(
            POLICY_HEADER
            + f"trusted: []\ncontent:\n  rules:\n    - {{name: integration, images: ['{host}/**'], "
            + "requireFiles: [{path: /etc/nsswitch.conf}]}\n",
            "<test>",
        )
        limits = ContentLimits(timeout_seconds=STALL_TIMEOUT, failure_ttl_seconds=60)

        async def go() -> list[str]:
            async with RegistryClient(RegistrySettings(ca_file=tls.ca_cert, **STALLED_CLIENT)) as client:
                judge = ContentJudge(clock=lambda: 0.0)  # the clock never moves: only a kept failure would answer
                ref = parse_docker_ref(f"{host}/tool/app:1")
                kinds = []
                for _ in range(2):
                    kinds.append((await judge.answer(client, ref, policy.content.rules, None, limits)).kind)
                    await _left_behind()  # the timed-out layer's stream ended too: asked again, it is fetched anew
                assert judge.reads_started == 2
                return kinds

        try:
            with asyncio.Runner(loop_factory=lambda: loop) as runner:
                kinds = runner.run(go())
        finally:
            released.set()
    assert kinds == ["timeout", "timeout"]
    assert len([hit for hit in hits if "/blobs/" in hit and CONFIG_DIGEST not in hit]) == 2  # streamed twice
