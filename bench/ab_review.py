"""One build's direct-path review in process, for bench/ab_cpu.sh (works on the 12-01 main and on this one).

Usage::

    python bench/ab_review.py BENCH_DIR validate|mutate ROUNDS [--micro]

``BENCH_DIR`` is the measured commit's own bench/ (its ``reviews.py``: its bodies and its
benchmark policy, which each commit spells as its policy loader wants). What it runs is what
the webhook does for a review that asks no registry, minus the metrics and the log line: the
size check (when the build has one), decoding, ``review()`` with ``decide()``, the answer's
bytes. ``review()`` is called as the build names the endpoint (``webhook=`` or the older
``mutate=``). Without ``--micro`` it runs ROUNDS times the 3 bodies once each after warming the
policy's caches (under callgrind, a ROUNDS=0 run subtracted gives instructions per review);
with it, it prints µs of process CPU per review for each body, the best of 5 x ROUNDS.
"""

from __future__ import annotations

import datetime as dt
import importlib
import inspect
import sys
import time
from collections.abc import Callable
from typing import Any

from imagegate.core import admission, records
from imagegate.core.policy import load_policy


def _reviewer(bench_dir: str, endpoint: str) -> tuple[Callable[[bytes], bytes], dict[str, bytes]]:
    sys.path.insert(0, bench_dir)
    reviews = importlib.import_module("reviews")  # the commit's own
    policy = load_policy(reviews.BENCH_POLICY)
    mutate = endpoint == "mutate"
    mix: dict[str, bytes] = reviews.bodies(mutated=not mutate)
    keyword: dict[str, Any]
    if "webhook" in inspect.signature(admission.review).parameters:
        webhook = records.Webhook  # the 12-01 main has none
        keyword = {"webhook": webhook.MUTATE if mutate else webhook.VALIDATE}
    else:
        keyword = {"mutate": mutate}
    oversized = getattr(admission, "oversized_review", None)
    now = dt.datetime.now(dt.UTC)

    def one(body: bytes) -> bytes:
        if oversized is not None and oversized(policy, body) is not None:
            raise SystemExit("a bench body was judged oversized")
        outcome = admission.review(policy, admission.decode_review(body), now=now, **keyword)
        if not outcome.allowed:
            raise SystemExit("a bench body was denied")
        return bytes(outcome.body)

    for body in mix.values():  # warm the policy's caches, as a serving worker's are
        one(body)
    return one, mix


def main() -> int:
    if len(sys.argv) < 4 or "--help" in sys.argv:
        sys.exit("usage: python bench/ab_review.py BENCH_DIR validate|mutate ROUNDS [--micro]")
    bench_dir, endpoint, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    one, mix = _reviewer(bench_dir, endpoint)
    if "--micro" not in sys.argv:
        for _ in range(rounds):
            for body in mix.values():
                one(body)
        return 0
    cells = []
    for name, body in mix.items():
        best = float("inf")
        for _ in range(5):
            started = time.process_time()
            for _ in range(rounds):
                one(body)
            best = min(best, (time.process_time() - started) / rounds * 1e6)
        cells.append(f"{name}={best:.1f}")
    print(" ".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
