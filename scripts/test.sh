#!/usr/bin/env bash
# imagegate's whole test run, the README's "test it" command and what CI calls.
# Installs what the tests need (Debian packages when root, the Python package with its
# test extras), then runs ruff, mypy and pytest. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

# Real parts the tests start themselves: an OCI registry (htpasswd from apache2-utils), skopeo,
# chromium to open the HTML report; nginx and wrk for the benchmarks.
DEBIAN_PACKAGES=(docker-registry skopeo nginx-light wrk apache2-utils chromium)
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
        for service in docker-registry nginx; do
            if command -v service >/dev/null; then service "$service" stop >/dev/null 2>&1 || true; fi
        done
    else
        echo "warning: not root, cannot install ${missing[*]}; tests that need them will fail" >&2
    fi
fi

python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'

echo "== ruff"
python3 -m ruff check src tests bench fuzz
python3 -m ruff format --check src tests bench fuzz
echo "== mypy"
python3 -m mypy
echo "== pytest"
set +e
python3 -m pytest "$@"
status=$?
set -e
if [[ $status -eq 5 ]]; then
    echo "pytest collected no tests: failing on purpose" >&2
    exit 1
fi
exit $status
