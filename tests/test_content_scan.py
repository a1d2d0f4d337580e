"""``imagegate scan`` and ``imagegate sbom`` (issue 25 item 5) against images in a real registry.

The images are pushed to docker-registry (tests/content_layers.py) with real files: the package
databases, copyright files and nsswitch.conf of Debian bookworm root filesystems made by mmdebstrap
(with libnss-sss and unrar; minbase alone), a later layer that purges libnss-sss (dpkg's status
as ``apt-get purge`` leaves it, its doc directory whited out), and this machine's Python METADATA
and npm's bundled package.json files. The SBOMs are validated by their own libraries: CycloneDX's
JSON schema validator (cyclonedx-python-lib) and spdx-tools' parser and validator.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from imagegate.core.contents import dpkg
from imagegate.core.contents.files import ImageFiles, Listing, listed_paths
from imagegate.core.contents.inventory import INVENTORY_FILES
from tests.conftest import POLICY_HEADER, run_imagegate
from tests.content_layers import Entry, directory, file, layer, push
from tests.debian_rootfs import kept_files, rootfs
from tests.registry_process import UNHURRIED, Registry, run_registry


def _entries(files: ImageFiles) -> list[Entry]:
    """The kept files as tar entries (their directories first, as a real layer has them)."""
    directories = sorted({"/".join(p.split("/")[1:i]) for p in files.files for i in range(2, p.count("/") + 1)})
    return [directory(d) for d in directories if d] + [file(p.lstrip("/"), d) for p, d in sorted(files.files.items())]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, Path]]:
    workdir = tmp_path_factory.mktemp("scan")
    with_sss = kept_files(
        rootfs(include=("libnss-sss", "unrar"), components=("main", "contrib", "non-free")),
        INVENTORY_FILES | dpkg.files_for("libnss-sss"),
        ["/etc/nsswitch.conf"],
    )
    # the image is made of the kept files: libnss-sss's own files (its md5sums's, which the
    # integration rule proves present) go in too, where dpkg lists them (their bytes do not matter)
    md5sums = with_sss.files["/var/lib/dpkg/info/libnss-sss:amd64.md5sums"]
    owned = {path: b"" for path in listed_paths(Listing.MD5SUMS, md5sums) if path not in with_sss.files}
    with_sss = msgspec.structs.replace(with_sss, files={**with_sss.files, **owned})
    minbase = kept_files(rootfs(), INVENTORY_FILES, ["/etc/nsswitch.conf"])
    status = with_sss.files[dpkg.STATUS].decode()
    purged = "\n\n".join(p for p in status.split("\n\n") if not p.startswith("Package: libnss-sss\n"))
    python = {}
    for name in ("msgspec", "PyYAML"):
        dist = importlib.metadata.distribution(name)
        folder = dist._path.name  # type: ignore[attr-defined]
        python[f"/usr/lib/python3/dist-packages/{folder}/METADATA"] = (dist._path / "METADATA").read_bytes()  # type: ignore[attr-defined]
    npm_root = Path("/usr/lib/node_modules/npm/node_modules")
    node = {
        f"/app/node_modules/{name}/package.json": (npm_root / name / "package.json").read_bytes()
        for name in ("semver",)
    }
    with run_registry(workdir / "registry") as reg:
        base = layer(_entries(with_sss))
        push(reg, "tools/integrated", "1", [base])
        push(reg, "tools/plain", "1", [layer(_entries(minbase), "zstd")])
        removing = layer([file("var/lib/dpkg/status", purged.encode()), file("usr/share/doc/.wh.libnss-sss", b"")])
        push(reg, "tools/removed", "1", [base, removing])
        push(reg, "tools/apps", "1", [base, layer(_entries(ImageFiles({**python, **node})))])
        policy = workdir / "policy.yaml"
        policy.write_text(
            POLICY_HEADER
            + f"registry: {{caFile: {reg.tls.ca_cert}, credentialsFile: {reg.docker_config(workdir / 'config.json')}, {UNHURRIED}}}\n"
            + r"""content:
  rules:
    - name: toolforge-integration
      grants: true
      requirePackages: [{name: libnss-sss}]
      requireFiles:
        - path: /etc/nsswitch.conf
          lines: ['^passwd:.*\bsss\b', '^group:.*\bsss\b']
    - name: open-source
      grants: true
      mode: warn
      licenses: {debianMain: allow}
"""
        )
        yield reg, policy


def test_scan_judges_each_image_and_exits_1_when_one_fails(registry: tuple[Registry, Path]) -> None:
    reg, policy = registry
    names = ("integrated", "plain", "removed", "apps")
    images = [f"{reg.host}/tools/{name}:1" for name in names]
    result = run_imagegate("scan", *images, "-p", str(policy), "-o", "json")
    assert result.returncode == 1, result.stderr
    report = {i["image"].split("/tools/")[1]: i for i in json.loads(result.stdout)["images"]}
    assert {name: report[f"{name}:1"]["ok"] for name in names} == {
        "integrated": True,
        "plain": False,
        "removed": False,
        "apps": True,
    }
    plain = {v["rule"]: v for v in report["plain:1"]["verdicts"]}
    packages = report["plain:1"]["ecosystems"]["deb"]
    assert plain["toolforge-integration"]["failures"] == [
        f"libnss-sss is not installed (dpkg lists {packages} packages)",
        r"/etc/nsswitch.conf: passwd: files (no line matches ^passwd:.*\bsss\b)",
        r"/etc/nsswitch.conf: group: files (no line matches ^group:.*\bsss\b)",
    ]
    # the later layer's purge: dpkg no longer lists it, though nsswitch.conf still names sss
    removed = {v["rule"]: v for v in report["removed:1"]["verdicts"]}
    left = report["removed:1"]["ecosystems"]["deb"]
    assert left == report["integrated:1"]["ecosystems"]["deb"] - 1
    assert removed["toolforge-integration"]["failures"] == [f"libnss-sss is not installed (dpkg lists {left} packages)"]
    # unrar is from non-free: the open-source rule (warn) fails, which does not fail the image
    integrated = report["integrated:1"]
    assert integrated["nonFree"] == ["unrar (non-free)"]
    warned = {v["rule"]: v for v in integrated["verdicts"]}["open-source"]
    assert not warned["ok"] and warned["mode"] == "warn"
    assert warned["failures"] == ["1 package under licences that are not OSI-approved or FSF-libre: unrar (non-free)"]
    apps = report["apps:1"]
    assert apps["ecosystems"] == {"deb": integrated["ecosystems"]["deb"], "pypi": 2, "npm": 1}
    by_name = {p["name"]: p for p in apps["packages"]}
    assert by_name["msgspec"]["licence"] == "BSD-3-Clause" and by_name["semver"]["licence"] == "ISC"
    assert sum(apps["licences"].values()) == len(apps["packages"])


def test_scan_table_and_html_page(registry: tuple[Registry, Path], tmp_path: Path) -> None:
    reg, policy = registry
    html = tmp_path / "scan.html"
    ok = run_imagegate("scan", f"{reg.host}/tools/integrated:1", "-p", str(policy), "--html", str(html))
    assert ok.returncode == 0, ok.stderr
    assert "toolforge-integration: satisfied" in ok.stdout and "deb" in ok.stdout
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("chromium is not installed (scripts/test.sh installs Debian's chromium)")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(
        [chromium, *flags, "--dump-dom", html.as_uri()], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert "tools/integrated:1" in dom and "unrar (non-free)" in dom
    assert '<li class="ok">ok: toolforge-integration: satisfied</li>' in dom


def test_scan_of_an_image_that_is_not_there(registry: tuple[Registry, Path]) -> None:
    reg, policy = registry
    result = run_imagegate("scan", f"{reg.host}/tools/missing:1", "-p", str(policy))
    assert result.returncode == 2
    assert "not read" in result.stderr and "Traceback" not in result.stderr


def test_cyclonedx_sbom_is_valid(registry: tuple[Registry, Path], tmp_path: Path) -> None:
    from cyclonedx.schema import SchemaVersion  # noqa: PLC0415
    from cyclonedx.validation.json import JsonStrictValidator  # noqa: PLC0415

    reg, policy = registry
    out = tmp_path / "bom.json"
    result = run_imagegate("sbom", f"{reg.host}/tools/apps:1", "-p", str(policy), "--out", str(out))
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    bom = json.loads(text)
    assert bom["specVersion"] == "1.6" and bom["metadata"]["component"]["type"] == "container"
    purls = {c["purl"] for c in bom["components"]}
    assert any(p.startswith("pkg:deb/debian/libnss-sss@2.8.") and p.endswith("?arch=amd64") for p in purls)
    assert "pkg:pypi/msgspec@" + importlib.metadata.version("msgspec") in purls
    licences = {c["name"]: c.get("licenses") for c in bom["components"]}
    assert licences["msgspec"] == [{"expression": "BSD-3-Clause"}]
    assert licences["libc6"] is None  # glibc's copyright file is not DEP-5: no licence is claimed


def test_spdx_sbom_is_valid(registry: tuple[Registry, Path], tmp_path: Path) -> None:
    from spdx_tools.spdx.parser.parse_anything import parse_file  # noqa: PLC0415
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document  # noqa: PLC0415

    reg, policy = registry
    out = tmp_path / "sbom.spdx.json"
    result = run_imagegate("sbom", f"{reg.host}/tools/integrated:1", "-p", str(policy), "-f", "spdx", "--out", str(out))
    assert result.returncode == 0, result.stderr
    document = parse_file(str(out))
    assert validate_full_spdx_document(document) == []
    names = {p.name for p in document.packages}
    assert {"libnss-sss", "unrar", "bash"} <= names
    # each LicenseRef- the packages use is declared as extracted licensing info
    assert "LicenseRef-public-domain" in {e.license_id for e in document.extracted_licensing_info}


def test_content_verdicts_read_in_the_background_and_kept_by_digest(registry: tuple[Registry, Path]) -> None:
    """A cold read that does not fit the budget answers "pending" and goes on; the next answer is
    the verdicts, read from nothing; an image on the same base reads only its own layer."""
    from imagegate.core.policy import load_policy  # noqa: PLC0415
    from imagegate.core.reference import parse_docker_ref  # noqa: PLC0415
    from imagegate.shell.registry.content_verdicts import ContentJudge  # noqa: PLC0415
    from imagegate.shell.registry.contents import reader_for  # noqa: PLC0415
    from imagegate.shell.registry.gate import RegistryGate  # noqa: PLC0415

    reg, policy_path = registry
    policy = load_policy(policy_path.read_text(), str(policy_path))
    rules = policy.content.rules[:1]  # toolforge-integration

    async def go() -> None:
        gate = RegistryGate(policy_path.parent)
        judge = ContentJudge()
        try:
            client = gate.client(policy.registry)
            integrated = parse_docker_ref(f"{reg.host}/tools/integrated:1")
            first = await judge.answer(client, integrated, rules, budget=0.0, limits=policy.registry.contents)
            assert first.pending and not first.verdicts
            await judge.settled()
            reader = reader_for(client, policy.registry.contents)
            streamed = reader.layers_streamed
            assert streamed == 1
            second = await judge.answer(client, integrated, rules, budget=5.0, limits=policy.registry.contents)
            assert not second.pending and second.digest is not None
            assert [(v.rule, v.ok) for v in second.verdicts] == [("toolforge-integration", True)]
            assert judge.reads_started == 1 and reader.layers_streamed == streamed
            assert judge.known(second.digest, rules) == second.verdicts
            removed = parse_docker_ref(f"{reg.host}/tools/removed:1")
            third = await judge.answer(client, removed, rules, budget=30.0, limits=policy.registry.contents)
            (verdict,) = third.verdicts
            assert not verdict.ok and verdict.failures[0].startswith("libnss-sss is not installed (dpkg lists ")
            assert reader.layers_streamed == streamed + 1  # its own layer: the base's was read once
            missing = await judge.answer(client, parse_docker_ref(f"{reg.host}/tools/missing:1"), rules, budget=5.0)
            assert missing.problem and not missing.pending and not missing.verdicts
        finally:
            await judge.settled()
            await gate.aclose()

    asyncio.run(go())


def test_scan_from_a_dump_names_the_tools(registry: tuple[Registry, Path], tmp_path: Path) -> None:
    """From a dump: each image once, the namespaces running it, the grant rules for granted images only."""
    reg, policy = registry
    granted = tmp_path / "policy.yaml"
    granted.write_text(
        policy.read_text().replace("registry: {", f"registry: {{contact: [{reg.host}], ")
        + "byoc:\n  grants:\n    - {namespace: tool-a}\n"
    )

    def pod(namespace: str, name: str, image: str) -> dict[str, object]:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"containers": [{"name": "c", "image": image}]},
        }

    plain, integrated = f"{reg.host}/tools/plain:1", f"{reg.host}/tools/integrated:1"
    dump = tmp_path / "dump.json"
    items = [pod("tool-a", "a1", plain), pod("tool-a", "a2", integrated), pod("tool-b", "b1", plain)]
    dump.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    result = run_imagegate("scan", "--from", str(dump), "-p", str(granted), "-o", "json")
    assert result.returncode == 1, result.stderr
    report = {i["image"]: i for i in json.loads(result.stdout)["images"]}
    assert report[plain]["tools"] == ["tool-a", "tool-b"] and report[integrated]["tools"] == ["tool-a"]
    assert not report[plain]["ok"]  # tool-a's grant admits it: the integration rule applies, and fails
    assert [v["rule"] for v in report[integrated]["verdicts"]] == ["toolforge-integration", "open-source"]
