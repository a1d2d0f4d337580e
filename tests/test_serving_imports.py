"""``imagegate serve`` loads only what serving needs (issue 18, item 2).

The command line checks the options and then replaces itself with ``python -m
imagegate.shell.webhook.serving`` (shell/webhook/serving.py), whose workers are spawned with that as
their main module. What each process really loaded is read from the process itself: a
``sitecustomize`` module on ``PYTHONPATH`` (Python imports it in every interpreter it
starts, ``site`` documents it) writes the names in ``sys.modules`` when the process exits,
after it served real AdmissionReviews on both endpoints. Nothing in imagegate is changed
for the test.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import yaml

from imagegate.shell.builtin_policy import DEFAULT_POLICY_YAML
from tests import test_apiserver_replay as replay
from tests.webhook_process import run_webhook

HOOK = """\
import atexit, os, sys

def _write_modules():
    directory = os.environ["IMAGEGATE_TEST_MODULES_DIR"]
    loaded = sorted(name for name, module in sys.modules.items() if module is not None)
    with open(os.path.join(directory, f"{os.getpid()}.modules"), "w") as out:
        out.write("\\n".join([" ".join(sys.orig_argv), *loaded]))

if os.environ.get("IMAGEGATE_TEST_MODULES_DIR"):
    atexit.register(_write_modules)
"""

# What serving never needs: the command line, the cluster client, LDAP, the reports, certificate
# making, an inotify library, and (with no rule that needs one) the registry client.
NEVER = ("typer", "click", "rich", "pygments", "lightkube", "ldap3", "cryptography", "watchfiles")
NEVER_OURS = (
    "imagegate.shell.cli.main",
    "imagegate.shell.cli.ops",
    "imagegate.shell.cli.bases",
    "imagegate.shell.cli.compare",
    "imagegate.shell.cli.identities",
    "imagegate.shell.cluster.client",
    "imagegate.shell.cluster.identities",
    "imagegate.shell.cli.html_report",
    "imagegate.shell.manifests",
    "imagegate.shell.webhook.certs",
    "imagegate.core.compare",
)
REGISTRY_CLIENT = ("httpx", "httpcore", "anyio", "imagegate.shell.registry.client", "imagegate.shell.registry.auth")


def serving_processes(tmp_path: Path, *args: str, policy: Path | None = None) -> dict[str, set[str]]:
    """Serve, answer the captured reviews on /validate and /mutate, stop: each serving process's modules."""
    hook, modules = tmp_path / "hook", tmp_path / "modules"
    hook.mkdir()
    modules.mkdir()
    (hook / "sitecustomize.py").write_text(HOOK)
    path = os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH", "")) if p)
    env = {"PYTHONPATH": path, "IMAGEGATE_TEST_MODULES_DIR": str(modules)}
    workers = int(args[args.index("--workers") + 1]) if "--workers" in args else 1
    with run_webhook(tmp_path, *args, policy=policy, env=env) as webhook:
        # /readyz answers from the first worker up; a worker still starting when the test stops
        # the server dies of the signal before it can write what it loaded.
        deadline = time.monotonic() + 60  # as wait_ready: a bound for a loaded machine, not a wait
        while webhook.logs().count('"event": "serving"') < workers and time.monotonic() < deadline:
            time.sleep(0.1)
        pid = webhook.process.pid
        client = webhook.client()
        for name in ("pod-create", "deployment-create", "pod-create-untrusted"):
            for endpoint, direction in (("/validate", "validating"), ("/mutate", "mutating")):
                answer = client.post(endpoint, content=replay.body(direction, name))
                assert answer.status_code == 200 and answer.json()["response"]["uid"]
        assert client.get("/metrics").status_code == 200
    assert webhook.process.returncode == 0, webhook.logs()
    found = {}
    for dump in modules.glob("*.modules"):
        command, *loaded = dump.read_text().splitlines()
        # the serving process and its workers (not the resource tracker)
        if "imagegate.shell.webhook.workers" in loaded:
            found[f"{dump.stem}: {command[:120]}"] = set(loaded)
    # The command line itself never exits: it became the serving process (the same pid).
    assert any(key.startswith(f"{pid}: ") and "imagegate.shell.webhook.serving" in key for key in found), sorted(found)
    return found


def assert_lean(found: dict[str, set[str]], *, registry: bool) -> None:
    for process, loaded in found.items():
        packages = {name.split(".")[0] for name in loaded}
        assert not packages & set(NEVER), (process, sorted(packages & set(NEVER)))
        assert not loaded & set(NEVER_OURS), (process, sorted(loaded & set(NEVER_OURS)))
        if not registry:
            assert not (loaded | packages) & set(REGISTRY_CLIENT), (
                process,
                sorted((loaded | packages) & set(REGISTRY_CLIENT)),
            )
        assert {"imagegate.core.decide", "imagegate.shell.webhook.http", "uvloop", "ssl"} <= loaded


def test_serve_loads_only_what_serving_needs(tmp_path: Path) -> None:
    found = serving_processes(tmp_path)
    assert len(found) == 1
    assert_lean(found, registry=False)


def test_each_worker_loads_only_what_serving_needs(tmp_path: Path) -> None:
    found = serving_processes(tmp_path, "--workers", "2")
    assert len(found) == 3  # the parent and two workers
    assert sum("spawn_main" in process for process in found) == 2
    assert_lean(found, registry=False)


def test_the_registry_client_is_loaded_when_a_rule_needs_a_registry(tmp_path: Path) -> None:
    """Trusted base images are looked up in a registry (nothing listens there: the refresh fails)."""
    document = yaml.safe_load(DEFAULT_POLICY_YAML)
    document["baseImages"] = {"trusted": ["127.0.0.1:9/toolforge/base:latest"]}
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(document))
    found = serving_processes(tmp_path, policy=policy)
    assert_lean(found, registry=True)
    (loaded,) = found.values()
    assert {"httpx", "imagegate.shell.registry.client"} <= loaded
