#!/usr/bin/env bash
# The whole test run (CI's `.ci/run`, i.e. scripts/test.sh) timed A/B on this machine:
#   scripts/test_ab.sh BASE_COMMIT [NEW_COMMIT, default HEAD; a branch is read when its run starts] [ROUNDS, default 1]
# Each round clones this repository twice into a scratch directory (a fresh clone each, with
# ../shared linked beside it as CI has), runs `CI=true bash .ci/run` at BASE then at NEW (the
# order alternates between rounds, so a load that grows or falls does not favour one side), and
# prints both wall times, their ratio and the load average before and after each run. Each
# clone installs itself into a virtual environment of its own (seeing the machine's packages),
# so the machine's editable install is left pointing where it was. Exits non-zero when a run
# fails (its log is kept and named).
set -euo pipefail
if (($# < 1 || $# > 3)); then
    echo "usage: $0 BASE_COMMIT [NEW_COMMIT] [ROUNDS]" >&2
    exit 2
fi
repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
shared=$(cd "$repo/.." && pwd)/shared
base=$1
new=${2:-HEAD}
git -C "$repo" rev-parse --quiet --verify "$base^{commit}" >/dev/null || { echo "no commit $base" >&2; exit 2; }
git -C "$repo" rev-parse --quiet --verify "$new^{commit}" >/dev/null || { echo "no commit $new" >&2; exit 2; }
rounds=${3:-1}
[[ -d $shared ]] || { echo "$shared not found (the tests read ../shared)" >&2; exit 1; }
scratch=$(mktemp -d /tmp/imagegate-ab.XXXXXX)
echo "scratch: $scratch (logs kept there)"

load() { cut -d' ' -f1-3 /proc/loadavg; }

run_one() {  # $1: label, $2: commit (a branch is read when its run starts), $3: round; prints "label seconds"
    local label=$1 commit dir="$scratch/$1-$3"
    commit=$(git -C "$repo" rev-parse --verify "$2^{commit}")
    mkdir -p "$dir"
    git clone --quiet "$repo" "$dir/imagegate"
    git -C "$dir/imagegate" checkout --quiet --detach "$commit"
    ln -s "$shared" "$dir/shared"
    python3 -m venv --system-site-packages "$dir/venv"
    local before after start end status
    before=$(load)
    start=$(date +%s.%N)
    set +e
    (cd "$dir/imagegate" && env -u PYTHONPATH PATH="$dir/venv/bin:$PATH" VIRTUAL_ENV="$dir/venv" CI=true \
        bash .ci/run >"$dir/log" 2>&1)
    status=$?
    set -e
    end=$(date +%s.%N)
    after=$(load)
    local seconds
    seconds=$(python3 -c "print(f'{$end - $start:.0f}')")
    echo "$label $(git -C "$repo" rev-parse --short "$commit") round $3: ${seconds} s, exit $status, load average before [$before] after [$after], log $dir/log" >&2
    if ((status != 0)); then
        echo "$label failed: see $dir/log" >&2
        return 1
    fi
    echo "$label $seconds"
}

declare -A total=([A]=0 [B]=0)
failed=0
for ((round = 1; round <= rounds; round++)); do
    if ((round % 2)); then order=(A B); else order=(B A); fi
    for label in "${order[@]}"; do
        if [[ $label == A ]]; then commit=$base; else commit=$new; fi
        if line=$(run_one "$label" "$commit" "$round"); then
            total[$label]=$((total[$label] + ${line#* }))
        else
            failed=1
        fi
    done
done
echo "A ($base): ${total[A]} s over $rounds round(s)"
echo "B ($new): ${total[B]} s over $rounds round(s)"
if ((total[A] > 0)); then
    python3 -c "print(f'B/A = {${total[B]} / ${total[A]}:.2f}')"
fi
exit "$failed"
