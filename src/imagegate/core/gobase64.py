"""Base64 decoded as Go's ``encoding/base64`` decodes it: the one decoder for what artifacts carry.

The peers whose answers imagegate matches decode with Go: cosign and containers/image read the
signature annotation and cosign's bundle annotation with ``base64.StdEncoding``,
go-securesystemslib reads a DSSE envelope's payload and signatures with ``StdEncoding`` then
``URLEncoding``, and protojson reads a Sigstore bundle's ``bytes`` fields with the one of the
four encodings its rule picks (:func:`protojson_b64decode`). Go's decoder, for all four:

* ``\\r`` and ``\\n`` are skipped wherever they are, padding included (a line-wrapped value decodes);
* any other character outside the alphabet is an error: a space, a tab, a non-ASCII character;
* a padded encoding (``StdEncoding``, ``URLEncoding``) needs its ``=`` to complete the last
  group of four, and nothing but newlines after it; an unpadded one (``RawStdEncoding``,
  ``RawURLEncoding``) refuses ``=`` and a last group of one character;
* the bits of a last partial group beyond its bytes are ignored (Go's encodings are not ``Strict``).

tests/fixtures/go-base64/ holds the Go program that decides each case of the tests' table, and its output.
"""

from __future__ import annotations

import base64
import enum
import re

__all__ = ["Base64Error", "GoEncoding", "dsse_b64decode", "go_b64decode", "protojson_b64decode"]


class Base64Error(ValueError):
    """Text Go's decoder refuses; the message says what is wrong and where."""


class GoEncoding(enum.Enum):
    """Go's four encodings: (URL-safe alphabet, padded)."""

    STD = (False, True)
    URL = (True, True)
    RAW_STD = (False, False)
    RAW_URL = (True, False)


_ALPHABETS = {False: "A-Za-z0-9+/", True: "A-Za-z0-9_-"}


def _pattern(encoding: GoEncoding) -> re.Pattern[str]:
    url, padded = encoding.value
    char = f"[{_ALPHABETS[url]}]"
    return re.compile(f"{char}*(?:{char}{{2}}==|{char}{{3}}=)?" if padded else f"{char}*")


_PATTERNS = {encoding: _pattern(encoding) for encoding in GoEncoding}


def _why(text: str, encoding: GoEncoding) -> str:
    url, padded = encoding.value
    alphabet = re.compile(f"[{_ALPHABETS[url]}]")
    for offset, char in enumerate(text):
        if char in "\r\n" or alphabet.fullmatch(char):
            continue
        if char != "=" or not padded:
            return f"{char!r} at character {offset + 1}"
        return f"misplaced padding or data after it, at character {offset + 1}"
    return "its last group of four is incomplete" + (" (padding missing)" if padded else "")


def go_b64decode(text: str, encoding: GoEncoding = GoEncoding.STD) -> bytes:
    """``text`` decoded as Go's ``encoding.DecodeString`` decodes it; :class:`Base64Error` where Go errs."""
    stripped = text.replace("\r", "").replace("\n", "")
    url, padded = encoding.value
    whole = len(stripped) % 4 == 0 if padded else len(stripped) % 4 != 1
    if not (whole and _PATTERNS[encoding].fullmatch(stripped)):
        raise Base64Error(f"not base64 ({_why(text, encoding)})")
    data = stripped.rstrip("=")
    return base64.b64decode(data + "=" * (-len(data) % 4), altchars=b"-_" if url else None)


def dsse_b64decode(text: str) -> bytes:
    """A DSSE envelope's payload or signature, as go-securesystemslib (cosign's) decodes it:
    standard base64, else URL-safe, both padded (the DSSE specification allows either alphabet)."""
    try:
        return go_b64decode(text, GoEncoding.STD)
    except Base64Error as standard:
        try:
            return go_b64decode(text, GoEncoding.URL)
        except Base64Error:
            raise standard from None


def protojson_b64decode(text: str) -> bytes:
    """A protobuf ``bytes`` field's JSON string, as protojson decodes it: the URL-safe alphabet when
    ``-`` or ``_`` appear, unpadded when the string's length (newlines counted) is not a multiple of four."""
    url = "-" in text or "_" in text
    padded = len(text) % 4 == 0
    encoding = {(False, True): GoEncoding.STD, (True, True): GoEncoding.URL}.get(
        (url, padded), GoEncoding.RAW_URL if url else GoEncoding.RAW_STD
    )
    return go_b64decode(text, encoding)
