"""Live reload of policy and grants files, as the kubelet updates a mounted ConfigMap."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from imagegate.core.policy import Policy, PolicyError
from imagegate.shell.policy_files import load_policy_files
from imagegate.shell.policy_source import PolicySource, ReloadResult
from tests.conftest import GRANTS_HEADER, POLICY_HEADER

POLICY = POLICY_HEADER + "trusted: [docker-registry.svc.toolforge.org]\nbyoc:\n  grantsFile: grants.yaml\n"


class ConfigMapVolume:
    """A directory laid out exactly as the kubelet's atomic writer does it.

    ``<dir>/grants.yaml -> ..data/grants.yaml``, ``..data -> ..2026_11_24_...``; an
    update writes a new timestamped directory and renames a new ``..data`` link over the
    old one (one atomic rename), then removes the old directory.
    """

    def __init__(self, root: Path, files: dict[str, str]) -> None:
        self.root = root
        root.mkdir()
        self.generation = 0
        self._current: Path | None = None
        self.update(files)
        for name in files:
            (root / name).symlink_to(Path("..data") / name)

    def update(self, files: dict[str, str]) -> None:
        self.generation += 1
        target = self.root / f"..2026_11_24_00_00_00.{self.generation:09d}"
        target.mkdir()
        for name, text in files.items():
            (target / name).write_text(text)
        staging = self.root / "..data_tmp"
        staging.symlink_to(target.name)
        os.rename(staging, self.root / "..data")
        if self._current is not None:
            for child in self._current.iterdir():
                child.unlink()
            self._current.rmdir()
        self._current = target


def current(source: PolicySource) -> Policy:
    assert source.current is not None
    return source.current


def test_grants_file_relative_to_policy(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(POLICY)
    (tmp_path / "grants.yaml").write_text(GRANTS_HEADER + "grants:\n  - namespace: tool-a\n")
    policy, _ = load_policy_files(tmp_path / "policy.yaml")
    assert [g.namespace for g in policy.grants] == ["tool-a"]


def test_missing_grants_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(POLICY)
    with pytest.raises(PolicyError, match=r"grants\.yaml: file not found"):
        load_policy_files(tmp_path / "policy.yaml")


def test_inline_and_file_grants_combine(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(POLICY + "  grants:\n    - namespace: tool-inline\n")
    (tmp_path / "grants.yaml").write_text(GRANTS_HEADER + "grants:\n  - namespace: tool-file\n")
    policy, _ = load_policy_files(tmp_path / "policy.yaml")
    assert sorted(g.namespace for g in policy.grants) == ["tool-file", "tool-inline"]


def test_reload_keeps_last_good_policy(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(POLICY)
    volume = ConfigMapVolume(tmp_path / "grants", {"grants.yaml": GRANTS_HEADER + "grants:\n  - namespace: tool-a\n"})
    results: list[ReloadResult] = []
    source = PolicySource(tmp_path / "policy.yaml", volume.root / "grants.yaml", on_reload=results.append)
    assert [g.namespace for g in current(source).grants] == ["tool-a"]

    assert source.reload() == ReloadResult(changed=False)
    volume.update({"grants.yaml": GRANTS_HEADER + "grants:\n  - namespace: tool-b\n"})
    assert source.reload().changed
    assert [g.namespace for g in current(source).grants] == ["tool-b"]

    volume.update({"grants.yaml": "grants:\n  - namespace: tool-c\n    expires: someday\n" + GRANTS_HEADER})
    refused = source.reload()
    assert not refused.changed and refused.error is not None
    assert "grants.yaml:3: grants[0].expires" in refused.error
    assert [g.namespace for g in current(source).grants] == ["tool-b"]  # last good stays
    assert source.last_error == refused.error

    volume.update({"grants.yaml": GRANTS_HEADER + "grants: []\n"})
    assert source.reload().changed and source.last_error is None
    assert current(source).grants == ()
    assert len(results) == 4


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("grants.yaml", ""),
        ("grants.yaml", "# all grants revoked\n"),
        ("grants.yaml", "---\n"),
        ("grants.yaml", "grants: []\n"),
        ("policy.yaml", ""),
        ("policy.yaml", "# TODO: the new policy\n"),
        ("policy.yaml", "kind: ImagePolicy\ntrusted: []\n"),
    ],
)
def test_an_empty_or_headerless_document_never_replaces_the_policy(tmp_path: Path, name: str, text: str) -> None:
    """A ConfigMap emptied by mistake: refused, the last good policy stays, the error is reported."""
    files = {"policy.yaml": POLICY, "grants.yaml": GRANTS_HEADER + "grants:\n  - namespace: tool-a\n"}
    volume = ConfigMapVolume(tmp_path / "cm", files)
    results: list[ReloadResult] = []
    source = PolicySource(volume.root / "policy.yaml", on_reload=results.append)
    volume.update({**files, name: text})
    refused = source.reload()
    assert not refused.changed and refused.error is not None
    assert refused.error.startswith(str(volume.root / name))
    assert "apiVersion: imagegate.toolforge.org/v1 and kind: Image" in refused.error
    assert [g.namespace for g in current(source).grants] == ["tool-a"]  # the last good policy stays
    assert len(current(source).trusted.patterns) == 1
    assert source.last_error == refused.error and results == [refused]
    volume.update(files)
    assert source.reload() == ReloadResult(changed=False) and source.last_error is None


def test_an_empty_policy_at_start_is_not_a_policy(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text("# to be written\n")
    with pytest.raises(PolicyError, match="the document is empty"):
        PolicySource(tmp_path / "policy.yaml")
    server_side = PolicySource(tmp_path / "policy.yaml", strict=False)
    assert server_side.current is None and server_side.last_error is not None
    assert "the document is empty" in server_side.last_error


@pytest.mark.timeout(30)
def test_watch_follows_the_data_symlink_swap(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(POLICY)
    volume = ConfigMapVolume(tmp_path / "grants", {"grants.yaml": GRANTS_HEADER + "grants: []\n"})
    source = PolicySource(tmp_path / "policy.yaml", volume.root / "grants.yaml")

    async def scenario() -> None:
        stop = asyncio.Event()
        watcher = asyncio.create_task(source.watch(stop))
        await asyncio.sleep(0.5)  # let the watcher start
        volume.update({"grants.yaml": GRANTS_HEADER + "grants:\n  - namespace: tool-live\n"})
        for _ in range(100):
            if current(source).grants:
                break
            await asyncio.sleep(0.1)
        # an edit of the policy file itself is noticed as well
        (tmp_path / "policy.yaml").write_text(POLICY.replace("docker-registry", "registry"))
        for _ in range(100):
            if str(current(source).trusted.patterns[0]).startswith("registry."):
                break
            await asyncio.sleep(0.1)
        stop.set()
        await asyncio.wait_for(watcher, 5)

    asyncio.run(scenario())
    assert [g.namespace for g in current(source).grants] == ["tool-live"]
    assert str(current(source).trusted.patterns[0]) == "registry.svc.toolforge.org"
    assert source.reloads == 2
