"""Coverage-guided fuzzing (atheris / libFuzzer) of imagegate's parsers.

    python fuzz/fuzz_targets.py reference -runs=1000000
    python fuzz/fuzz_targets.py policy -max_total_time=600
    python fuzz/fuzz_targets.py review -max_total_time=600

or every target, as the README says: ``scripts/fuzz.sh [SECONDS per target] [TARGET...]``.

Each target feeds arbitrary bytes to one parser; only the documented errors may come out.
Anything else (an unexpected exception, a hang, a crash) is a finding, saved by libFuzzer.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import sys
import types

import atheris

from imagegate.core.admission import ReviewError, decode_review, review
from imagegate.core.oci import OciError, parse_config, parse_manifest
from imagegate.core.patterns import PatternError, parse_pattern
from imagegate.core.policy import PolicyError, load_grants, load_policy
from imagegate.core.records import Webhook
from imagegate.core.reference import ReferenceError, parse, parse_docker_ref

NOW = dt.datetime(2026, 11, 24, tzinfo=dt.UTC)
POLICY = load_policy(
    "apiVersion: imagegate.toolforge.org/v1\nkind: ImagePolicy\ntrusted: [docker-registry.svc.toolforge.org]\npodSecurity: {level: restricted}\n"
)


def reference(data: bytes) -> None:
    text = atheris.FuzzedDataProvider(data).ConsumeUnicodeNoSurrogates(300)
    for call in (parse, parse_docker_ref, parse_pattern):
        with contextlib.suppress(ReferenceError, PatternError):
            call(text)


def policy(data: bytes) -> None:
    text = atheris.FuzzedDataProvider(data).ConsumeUnicodeNoSurrogates(2000)
    for loader in (load_policy, load_grants):
        with contextlib.suppress(PolicyError):
            loader(text, "fuzz")


def review_body(data: bytes) -> None:
    try:
        request = decode_review(data)
    except ReviewError:
        return
    review(POLICY, request, now=NOW)
    review(POLICY, request, now=NOW, webhook=Webhook.MUTATE)


def registry_document(data: bytes) -> None:
    for call in (
        lambda: parse_manifest(data, "application/vnd.oci.image.manifest.v1+json"),
        lambda: parse_config(data),
    ):
        with contextlib.suppress(OciError):
            call()


TARGETS = {"reference": reference, "policy": policy, "review": review_body, "registry": registry_document}


def instrument_imagegate() -> None:
    """Instrument imagegate's own loaded functions (the editable install's import hook bypasses
    ``instrument_imports``); ``instrument_all`` would instrument every library too, which costs
    some 20 s of CPU per start and guides the fuzzer into YAML and msgspec internals."""
    for obj in gc.get_objects():
        if isinstance(obj, types.FunctionType) and obj.__module__ and obj.__module__.startswith("imagegate"):
            atheris.instrument_func(obj)


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: {sys.argv[0]} {{{'|'.join(TARGETS)}}} [libFuzzer options]")
    target = TARGETS[sys.argv.pop(1)]
    instrument_imagegate()
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
