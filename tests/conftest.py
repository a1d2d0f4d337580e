"""Shared test helpers: where the peers' conformance data lives; how the tests share pytest-xdist's workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from imagegate.core.admission import POD_RESOURCES
from tests.cli_forkserver import FRESH_ENV, ForkServer, startup_alike

if TYPE_CHECKING:
    from tests.kube_cluster import KubeCluster

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFORMANCE = REPO_ROOT.parent / "shared" / "conformance"

# Every policy, grants and identities document says what it is (an empty one is an error).
POLICY_HEADER = "apiVersion: imagegate.toolforge.org/v1\nkind: ImagePolicy\n"
GRANTS_HEADER = "apiVersion: imagegate.toolforge.org/v1\nkind: ImageGrants\n"
IDENTITIES_HEADER = "apiVersion: imagegate.toolforge.org/v1\nkind: ToolIdentities\n"


def load_conformance(relative: str) -> Any:
    """Read one JSON file of ../shared/conformance; fail loudly when it is missing."""
    path = CONFORMANCE / relative
    if not path.is_file():
        pytest.fail(f"conformance data missing: {path} (the tests read ../shared/conformance)")
    return json.loads(path.read_text())


def case_id(case: dict[str, Any]) -> str:
    """A readable pytest id for a conformance case."""
    for key in ("id", "file"):
        if key in case:
            return str(case[key])
    return f"{case.get('suite', '?')}-{case.get('n', '?')}-{case.get('input_role', '')}".rstrip("-")


def cli_env(**extra: str) -> dict[str, str]:
    """A bare environment for an ``imagegate`` process: wide output, no shell state.

    ``PYTHONPATH`` is passed on: the compiled pass of scripts/test.sh (and a git worktree's
    ``src``) put the code under test there, and a child without it would run another build.
    """
    env = {"COLUMNS": "200", "PATH": "/usr/bin:/bin", **extra}
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


def run_imagegate(
    *args: str,
    stdin: str | None = None,
    timeout: float = 120,
    columns: int = 200,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """The ``imagegate`` command as a user runs it: a process of its own, wide output, no shell state.

    ``env`` is its whole environment (default: ``cli_env`` with ``COLUMNS=columns``). The process
    is forked from one that has imported the command line already (tests/cli_forkserver.py),
    unless ``IMAGEGATE_TEST_FRESH_PROCESSES=1`` asks for a fresh interpreter each time or ``env``
    differs from that server's in what an interpreter reads as it starts (``PYTHON*``, the locale).
    """
    if env is None:
        env = cli_env(COLUMNS=str(columns))
    if os.environ.get(FRESH_ENV) == "1" or not startup_alike(env, cli_env()):
        return subprocess.run(
            [sys.executable, "-m", "imagegate", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=env,
        )
    return _fork_server().run(list(args), env, stdin, timeout)


_fork_servers: dict[str | None, ForkServer] = {}  # by PYTHONPATH: the code under test it imported
_fork_servers_lock = threading.Lock()  # tests run commands from threads too


def _fork_server() -> ForkServer:
    key = os.environ.get("PYTHONPATH")
    with _fork_servers_lock:
        server = _fork_servers.get(key)
        if server is None or server.process.poll() is not None:
            server = _fork_servers[key] = ForkServer(cli_env())
        return server


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop this process's fork servers (tests/cli_forkserver.py), by the processes started."""
    while _fork_servers:
        _fork_servers.popitem()[1].stop()


def admission_review(obj: Any, namespace: str = "tool-x", **request: Any) -> dict[str, Any]:
    """A minimal admission.k8s.io/v1 AdmissionReview for a CREATE of ``obj`` (a Pod unless it says).

    Shaped as the API server sends it: ``request.kind`` and ``request.resource`` agree with the
    object's kind, and the object carries its ``apiVersion`` and ``kind``.
    """
    kind = str(obj.get("kind", "Pod")) if isinstance(obj, dict) else "Pod"
    group, resource = next(((g, r) for (g, r), k in POD_RESOURCES.items() if k == kind), ("", f"{kind.lower()}s"))
    if isinstance(obj, dict):
        obj = {"apiVersion": f"{group}/v1" if group else "v1", "kind": kind, **obj}
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u",
            "operation": "CREATE",
            "kind": {"group": group, "version": "v1", "kind": kind},
            "resource": {"group": group, "version": "v1", "resource": resource},
            "namespace": namespace,
            "object": obj,
            **request,
        },
    }


@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    """A real kube-apiserver and controller manager v1.32 (tests/kube_cluster.py), one per session.

    Started only when a test asks for it (about 10 s); stopped by its PIDs at the end.
    """
    from tests.kube_cluster import start_cluster  # noqa: PLC0415 - lightkube only where a cluster runs

    with start_cluster(tmp_path_factory.mktemp("kube")) as cluster:
        yield cluster


def _shared_fixture_groups(item: pytest.Item) -> tuple[set[str], set[str]]:
    """The session- and module-scoped fixtures of the suite's own that ``item`` uses, as group names."""
    sessions: set[str] = set()
    modules: set[str] = set()
    if not isinstance(item, pytest.Function):
        return sessions, modules
    for definitions in item._fixtureinfo.name2fixturedefs.values():
        definition = definitions[-1]  # the one that applies to this test
        if not getattr(definition.func, "__module__", "").startswith("tests."):
            continue  # pytest's, hypothesis's and xdist's own (tmp_path_factory...) are per worker and cheap
        if definition.scope == "session":
            sessions.add(f"session-{definition.argname}")
        elif definition.scope in ("package", "module", "class"):
            modules.add(item.nodeid.split("::")[0])
    return sessions, modules


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups (--dist loadgroup)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Keep each shared real part on one pytest-xdist worker, so it starts once.

    Under ``--dist loadgroup`` (scripts/test.sh) the tests spread over workers one by one, and a
    module- or session-scoped fixture would start again on every worker that got one of its tests:
    a registry or a kube-apiserver per worker, for nothing. So the tests that use one of the
    suite's module-scoped fixtures run together on one worker (a group per module), and those
    that use a session-scoped one (the ``kube_cluster``) run together too, with the rest of their
    modules' shared-fixture tests: one cluster for the run, its cluster-wide objects (webhook
    configurations) never changed by two tests at once. Tests with only function-scoped fixtures
    go to whichever worker is free. Without xdist the marker does nothing.
    """
    wanted = {item: _shared_fixture_groups(item) for item in items}
    sessions_of_module: dict[str, set[str]] = defaultdict(set)
    for item, (sessions, _modules) in wanted.items():
        sessions_of_module[item.nodeid.split("::")[0]] |= sessions
    for item, (sessions, modules) in wanted.items():
        if not sessions and not modules:
            continue
        module_sessions = sessions_of_module[item.nodeid.split("::")[0]]
        group = "+".join(sorted(module_sessions)) if module_sessions else next(iter(modules))
        item.add_marker(pytest.mark.xdist_group(group))
