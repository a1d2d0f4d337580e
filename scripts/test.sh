#!/usr/bin/env bash
# imagegate's whole test run, the README's "test it" command and what CI calls.
# Installs what the tests need (Debian packages when root, the Python package with its
# test extras), then runs ruff, mypy and pytest. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

# Real parts the tests start themselves: an OCI registry (htpasswd from apache2-utils), skopeo,
# chromium to open the HTML report; slapd (and ldap-utils) for `imagegate identities ldap`;
# nginx and wrk for the benchmarks; etcd for the real API server of ../shared/kube (tests/kube_cluster.py);
# prometheus for promtool, which checks and unit-tests the shipped alerts (tests/test_monitoring.py).
DEBIAN_PACKAGES=(docker-registry skopeo nginx-light wrk apache2-utils chromium slapd ldap-utils etcd-server mmdebstrap prometheus)
missing=()
for package in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -eq 0 ]]; then
        echo "installing Debian packages: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
        # The packages start their own services; the tests start their own on loopback.
        for service in docker-registry nginx slapd etcd prometheus; do
            if command -v service >/dev/null; then service "$service" stop >/dev/null 2>&1 || true; fi
        done
    else
        echo "warning: not root, cannot install ${missing[*]}; tests that need them will fail" >&2
    fi
fi

# The container image compiles the core with mypyc (IMAGEGATE_MYPYC=1, setup.py), so a second
# pytest pass runs on such a build: the tests that exercise the compiled modules in-process, listed
# beside them in setup.py, and a webhook smoke test (the rest of the suite runs the same code
# through the pure pass). Its wheel is unpacked into a scratch directory put first on PYTHONPATH
# (the tests' subprocesses inherit it); the dependencies are the ones installed below, and the
# editable install stays pure Python.
#
# That pass runs in the background, niced, from the start: the build (about 50 s of one core)
# while the install, ruff and mypy leave a core idle, then, once the install is done, its tests
# beside the pure pass, in the gaps that pass leaves (waits on servers and sockets, its last
# tests) rather than after it. The build works on a copy of what the container image copies
# (Containerfile), so it shares no build/, *.egg-info or .mypy_cache with the steps beside it.
# Its output is shown after the pure pass; its failure fails the run. It runs in a process group
# of its own, so that a run ending early (a failed step) stops it with all it started.
scratch=$(mktemp -d)
compiled_pid=
cleanup() {
    if [[ -n $compiled_pid ]]; then
        kill -TERM -- "-$compiled_pid" 2>/dev/null || true
        wait "$compiled_pid" 2>/dev/null || true
    fi
    rm -rf "$scratch"
}
trap cleanup EXIT
mkdir "$scratch/tree"
tar -c --exclude=__pycache__ --exclude='*.egg-info' pyproject.toml setup.py README.md src | tar -x -C "$scratch/tree"

run_pytest() {  # $1: the python to run them with; the rest: pytest's arguments
    local python=$1
    shift
    set +e
    "$python" -m pytest "$@"
    local status=$?
    set -e
    if [[ $status -eq 5 ]]; then
        echo "pytest collected no tests: failing on purpose" >&2
        return 1
    fi
    return $status
}

# Both passes run on pytest-xdist workers (README, "Writing tests"). One test run serially keeps
# about one core busy (its processes' starts), so one worker per core, plus one for the time
# tests wait on servers and sockets; more only add contention. IMAGEGATE_TEST_WORKERS sets how
# many; 0 runs the tests serially in one process, and the compiled pass after the pure one.
# Under --dist loadgroup the tests that share a module- or session-scoped real part (a registry,
# the kube-apiserver) stay on one worker (tests/conftest.py), the rest go to whichever is free.
workers=${IMAGEGATE_TEST_WORKERS:-$(($(nproc) + 1))}
if ! [[ $workers =~ ^[0-9]+$ ]]; then
    echo "IMAGEGATE_TEST_WORKERS=$workers: a number of workers (0: serially)" >&2
    exit 2
fi
if ((workers > 0)); then
    parallel=(-n "$workers" --dist loadgroup)
else
    parallel=(-n 0)
fi

compiled_pass() {  # in the background; its arguments: pytest's extra arguments. Output: its log.
    set +m # what it starts stays in its process group
    renice -n 10 -p "$BASHPID" >/dev/null
    if ! (cd "$scratch/tree" && IMAGEGATE_MYPYC=1 python3 -m pip wheel --quiet --disable-pip-version-check \
        --no-deps -w "$scratch/wheel" .); then
        echo "the mypyc build failed" >&2
        return 1
    fi
    until [[ -e $scratch/go ]]; do sleep 1; done # the dependencies installed (or, serially, the pure pass done)
    python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$scratch/site" "$scratch"/wheel/*.whl
    local compiled_modules compiled_tests
    mapfile -t compiled_modules < <(python3 -m tests.compiled_pass modules)
    mapfile -t compiled_tests < <(python3 -m tests.compiled_pass tests)
    if ((${#compiled_modules[@]} == 0 || ${#compiled_tests[@]} == 0)); then
        echo "setup.py lists no compiled modules or no tests for them (tests/compiled_pass.py)" >&2
        return 1
    fi
    export PYTHONPATH="$scratch/site"
    python3 - "${compiled_modules[@]}" <<'PY'
import importlib
import sys

for name in sys.argv[1:]:
    module = importlib.import_module(name)
    assert module.__file__ is not None and module.__file__.endswith(".so"), f"{name} is not compiled: {module.__file__}"
PY
    run_pytest python3 -p no:cacheprovider "${parallel[@]}" "${compiled_tests[@]}" "$@"
}
set -m # the background pass in a process group of its own (cleanup stops the whole group)
compiled_pass "$@" >"$scratch/compiled.log" 2>&1 &
compiled_pid=$!
set +m

python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'
if ((workers > 0)); then touch "$scratch/go"; fi

echo "== ruff"
python3 -m ruff check src tests bench fuzz setup.py
python3 -m ruff format --check src tests bench fuzz setup.py
echo "== mypy"
python3 -m mypy

echo "== pytest (pure Python, $workers workers)"
run_pytest python3 "${parallel[@]}" "$@"
touch "$scratch/go"

echo "== pytest (core compiled with mypyc, $workers workers; built and run in the background since the start)"
compiled_status=0
wait "$compiled_pid" || compiled_status=$?
compiled_pid=
cat "$scratch/compiled.log"
if ((compiled_status != 0)); then
    echo "the compiled pass failed (exit $compiled_status)" >&2
    exit 1
fi
