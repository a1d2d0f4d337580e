"""The CPU of one direct-path admission (no registry asked), in process: body bytes to answer bytes.

Usage::

    python bench/review_cpu_bench.py [--rounds 800] [--endpoint validate|mutate]
    valgrind --tool=callgrind python bench/review_cpu_bench.py --rounds 0    # then --rounds 30

What ``WebhookApp._admission`` does for a review that needs no registry lookup, minus the
metrics and the log line: the size check, ``decode_review``, ``review`` (request_problem,
decide, the response's encoding), on the mix of ``bench/reviews.py`` (pod-security policy).
Without ``--rounds 0`` it prints µs of process CPU per review, per body (the best of 5
repetitions). The HTTP benchmark (server_bench.py) is too noisy on a shared 2-core machine to
see a few percent; under callgrind the instruction count per review (the difference of a
``--rounds 30`` and a ``--rounds 0`` run, divided by 450: 5 x 30 x 3 bodies) does not depend on the machine's load.
It measures whichever imagegate is importable: put a compiled build's directory first on
PYTHONPATH (as scripts/test.sh does) to measure the container image's build.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

from reviews import BENCH_POLICY, bodies

from imagegate.core.admission import decode_review, oversized_review, review
from imagegate.core.decide import __file__ as decide_file
from imagegate.core.policy import load_policy
from imagegate.core.records import Webhook


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=800, help="reviews per body per repetition (0: setup only)")
    parser.add_argument("--endpoint", choices=("validate", "mutate"), default="validate")
    args = parser.parse_args()
    policy = load_policy(BENCH_POLICY)
    mutate = args.endpoint == "mutate"
    # /mutate gets pods as users write them (patched), /validate as the mutating webhook left them
    mix = bodies(mutated=not mutate)
    now = dt.datetime.now(dt.UTC)

    def one(body: bytes) -> bytes:
        if oversized_review(policy, body) is not None:
            raise SystemExit("a bench body was judged oversized")
        outcome = review(policy, decode_review(body), now=now, webhook=Webhook.MUTATE if mutate else Webhook.VALIDATE)
        if not outcome.allowed or outcome.decision is None or outcome.decision.questions:
            raise SystemExit("a bench body was not allowed on the direct path")
        return outcome.body

    for body in mix.values():  # warm the policy's caches, as a serving worker's are
        one(body)
    if args.rounds == 0:
        return 0
    build = "compiled" if decide_file is not None and decide_file.endswith(".so") else "pure Python"
    print(f"{build} build, /{args.endpoint}, µs of CPU per review (best of 5 x {args.rounds})")
    for name, body in mix.items():
        best = float("inf")
        for _ in range(5):
            started = time.process_time()
            for _ in range(args.rounds):
                one(body)
            best = min(best, (time.process_time() - started) / args.rounds * 1e6)
        print(f"  {name}: {best:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
