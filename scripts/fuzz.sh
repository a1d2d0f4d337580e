#!/usr/bin/env bash
# The long coverage-guided fuzzing runs (atheris), outside the test suite (which runs a smoke of
# each target, tests/test_fuzz.py). Usage: scripts/fuzz.sh [SECONDS per target, default 300] [TARGET...]
# Findings (crashes, hangs) are written to fuzz/findings/; exits non-zero if any target found one.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-300}
shift || true
targets=("$@")
((${#targets[@]})) || targets=(policy reference registry review)

declare -A seeds=([review]=tests/fixtures/admission [policy]=deploy/base)
mkdir -p fuzz/findings
status=0
for target in "${targets[@]}"; do
    corpus=$(mktemp -d)
    if [[ -n ${seeds[$target]:-} ]]; then cp "${seeds[$target]}"/* "$corpus"/; fi
    echo "== $target: ${seconds}s"
    if ! python3 fuzz/fuzz_targets.py "$target" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 -artifact_prefix="fuzz/findings/$target-" "$corpus"; then
        echo "$target: a finding, see fuzz/findings/" >&2
        status=1
    fi
    rm -rf "$corpus"
done
exit $status
