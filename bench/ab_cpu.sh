#!/bin/bash
# The direct path's CPU per review, BASE against HEAD, each commit compiled (IMAGEGATE_MYPYC=1)
# and measured with its OWN bench/ (issue 24 item 8; README "Performance").
#
#   bench/ab_cpu.sh BASE [HEAD] [--rounds N] [--server] [--server-callgrind] [--no-callgrind]
#   e.g. bench/ab_cpu.sh f38bfc1          # the 12-01 main against this checkout's HEAD
#
# 1. instructions per review under valgrind's callgrind (load-independent): bench/ab_review.py
#    run 30 times over the 3 bodies of the commit's bench/reviews.py minus a 0-round run, / 90;
# 2. µs of process CPU per review in process, N interleaved rounds (BASE, HEAD, BASE, ...),
#    each the best of 5 x 800 per body;
# 3. with --server, the HTTP benchmark as the issue ran it: each commit's own
#    bench/server_bench.py, pod-security policy, 2 workers, 50 connections, N interleaved
#    rounds, its rows as printed, then per row and commit the median over the rounds of
#    req/s and CPU µs/req (wrk and nginx needed; a minute or two per round and commit).
# 4. with --server-callgrind, the whole serving process under callgrind (bench/server_callgrind.py,
#    this checkout's harness for both commits): `imagegate serve` with TLS, 50 keep-alive
#    connections, instructions per review over 2,000 reviews of each commit's mix (TLS, HTTP,
#    decision, metrics and answer; not the kernel). Load-independent: where the wall-clock rows of
#    3. differ by less than their noise, this says whether the serving path did (a minute per run).
# Each commit is built once from `git archive` into a scratch directory (removed at the end),
# which goes first on PYTHONPATH. Prints the load average before and after: on a busy machine
# only the instruction counts can be compared across runs.
set -euo pipefail
usage() { echo "usage: $0 BASE [HEAD] [--rounds N] [--server] [--server-callgrind] [--no-callgrind]" >&2; exit 2; }
[ $# -ge 1 ] || usage
repo=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
base=$1; shift
head=HEAD
if [ $# -gt 0 ] && [ "${1:0:2}" != "--" ]; then head=$1; shift; fi
rounds=3; server=0; server_callgrind=0; callgrind=1
while [ $# -gt 0 ]; do
    case $1 in
        --rounds) rounds=$2; shift 2 ;;
        --server) server=1; shift ;;
        --server-callgrind) server_callgrind=1; shift ;;
        --no-callgrind) callgrind=0; shift ;;
        *) usage ;;
    esac
done
if { [ $callgrind = 1 ] || [ $server_callgrind = 1 ]; } && ! command -v valgrind >/dev/null; then
    echo "valgrind not found: apt-get install valgrind (or pass --no-callgrind)" >&2; exit 2
fi
scratch=$(mktemp -d /tmp/imagegate-abcpu.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
harness="$scratch/ab_review.py"
cp "$repo/bench/ab_review.py" "$harness"
cp "$repo/bench/server_callgrind.py" "$scratch/server_callgrind.py"
python=$(python3 -c 'import sys; print(sys.executable)')

declare -A commit
for name in base head; do
    ref=$([ $name = base ] && echo "$base" || echo "$head")
    commit[$name]=$(git -C "$repo" rev-parse --short "$ref^{commit}")
    mkdir -p "$scratch/$name/src"
    git -C "$repo" archive "${commit[$name]}" | tar -x -C "$scratch/$name/src"
    echo "building ${commit[$name]} ($name) compiled..." >&2
    (cd "$scratch/$name/src" && IMAGEGATE_MYPYC=1 "$python" -m pip wheel --quiet --disable-pip-version-check \
        --no-deps -w "$scratch/$name/wheel" . >&2)
    "$python" -m pip install --quiet --disable-pip-version-check --no-deps --target "$scratch/$name/site" \
        "$scratch/$name"/wheel/*.whl >&2
    if ! ls "$scratch/$name/site/imagegate/core/"decide*.so >/dev/null 2>&1; then
        echo "${commit[$name]}: the build has no compiled decide module" >&2; exit 1
    fi
done
echo "base ${commit[base]}, head ${commit[head]}; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

run() {  # name endpoint rounds [--micro]
    PYTHONPATH="$scratch/$1/site" "$python" "$harness" "$scratch/$1/src/bench" "$2" "$3" "${@:4}"
}

if [ $callgrind = 1 ]; then
    for endpoint in validate mutate; do
        for name in base head; do
            ir() {  # a fixed hash seed: set and dict layouts, so the counts, repeat run to run
                PYTHONHASHSEED=0 PYTHONPATH="$scratch/$name/site" valgrind --tool=callgrind --callgrind-out-file=/dev/null \
                    "$python" "$harness" "$scratch/$name/src/bench" "$endpoint" "$1" 2>&1 |
                    sed -n 's/.*Collected : //p'
            }
            zero=$(ir 0); thirty=$(ir 30)
            echo "callgrind /$endpoint ${commit[$name]} ($name): $(((thirty - zero) / 90)) instructions per review"
        done
    done
fi

for round in $(seq "$rounds"); do
    for endpoint in validate mutate; do
        for name in base head; do
            echo "round $round /$endpoint ${commit[$name]} ($name) µs CPU per review: $(run $name $endpoint 800 --micro)"
        done
    done
done

if [ $server = 1 ]; then
    for name in base head; do  # an older commit may need a library main no longer installs
        if ! failed=$(PYTHONPATH="$scratch/$name/site" "$python" -m imagegate --help 2>&1 >/dev/null); then
            echo "${commit[$name]} ($name) cannot start: $(echo "$failed" | tail -1)" >&2
            echo "(f38bfc1 needs watchfiles: python3 -m pip install watchfiles)" >&2
            exit 1
        fi
    done
    echo "round commit | policy | load | conns | workers | imagegate req/s | p50 ms | p99 ms | CPU µs/req | nginx req/s | p50 ms | p99 ms | imagegate/nginx | errors |"
    for round in $(seq "$rounds"); do
        for name in base head; do
            out=$(cd "$scratch/$name/src" && PYTHONPATH="$scratch/$name/site" "$python" bench/server_bench.py \
                --policies pod-security --workers 2 --concurrency 50 --paced-rate 5000 --duration 8 --no-stacks)
            echo "$out" | grep -E '^\| pod-security' | sed "s/^/round $round ${commit[$name]} ($name) /" |
                tee -a "$scratch/server_rows"
        done
    done
    # The median over the rounds of each row's req/s and CPU µs/req, per commit (what the README quotes).
    "$python" - "$scratch/server_rows" <<'PY'
import statistics
import sys
from collections import defaultdict

cells: dict[tuple[str, str, str], list[tuple[float, float]]] = defaultdict(list)
for line in open(sys.argv[1], encoding="utf-8"):
    head, _, row = line.partition("| ")
    commit = " ".join(head.split()[2:4])
    policy, load, _conns, _workers, rps, _p50, _p99, cpu = (c.strip() for c in row.split("|")[:8])
    cells[(policy, load, commit)].append((float(rps.replace(",", "")), float(cpu.replace(",", ""))))
print("\nmedian over the rounds: | policy | load | commit | imagegate req/s | CPU µs/req |")
for (policy, load, commit), values in cells.items():
    rps = statistics.median(v[0] for v in values)
    cpu = statistics.median(v[1] for v in values)
    print(f"| {policy} | {load} | {commit} | {rps:,.0f} | {cpu:.0f} |")
PY
fi
if [ $server_callgrind = 1 ]; then
    for endpoint in validate mutate; do
        for name in base head; do
            count=$(PYTHONPATH="$scratch/$name/site" "$python" "$scratch/server_callgrind.py" "$scratch/$name/src/bench" "$endpoint")
            echo "server callgrind /$endpoint ${commit[$name]} ($name): $count instructions per review, whole serving process"
        done
    done
fi
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
