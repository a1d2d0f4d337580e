"""Registry documents decoded as Go's encoding/json decodes them, row by row against a table
whose every expectation Go itself wrote (tests/fixtures/go_json: decode.go, README.md).

CI has no Go: the table is committed, and rerun with Go when a row is added.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from imagegate.core import gojson
from imagegate.core.gojson import GoJsonError, GoSlice, GoType, TooDeepError
from imagegate.core.oci import (
    IMAGE_CONFIG,
    INDEX,
    MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    UNKNOWN_DOCUMENT,
    Index,
    Manifest,
    OciError,
    RefusedImageError,
    parse_config,
    parse_manifest,
)
from imagegate.core.provenance import DSSE_ENVELOPE
from imagegate.core.signatures import SIMPLE_SIGNING

TABLE = Path(__file__).parent / "fixtures" / "go_json" / "cases.json"
CASES: list[dict[str, Any]] = json.loads(TABLE.read_text())
TYPES = {
    "index": INDEX,
    "manifest": MANIFEST,
    "config": IMAGE_CONFIG,
    "document": UNKNOWN_DOCUMENT,
    "simplesigning": SIMPLE_SIGNING,
    "dsse": DSSE_ENVELOPE,
}


def body_of(case: dict[str, Any]) -> bytes:
    if "doc_base64" in case:
        return base64.b64decode(case["doc_base64"])
    return str(case["doc"]).encode()


def dump(value: Any, go: GoType) -> Any:
    """The decoded value as decode.go prints a Go value: every field, nil apart from empty."""
    if go.fields:
        return {tag: dump(value[tag], kind) for tag, kind in go.fields.items() if kind is not gojson.ANY}
    if go is gojson.RAW:
        return value is True
    if value is None or go.elem is None:
        return base64.b64encode(value).decode() if isinstance(value, bytes) else value
    if isinstance(value, GoSlice):
        return [dump(item, go.elem) for item in value.items]
    if go.name.startswith("map["):
        return {key: dump(item, go.elem) for key, item in value.items()}
    return dump(value, go.elem)  # a pointer


def test_the_table_covers_what_the_issue_names() -> None:
    names = " ".join(case["name"] for case in CASES)
    for words in ("platform given twice", "shorter", "longer", "three times", "folded", "long s", "Kelvin", "null"):
        assert words in names
    assert {case["type"] for case in CASES} == set(TYPES)
    assert sum("error" in case["go"] for case in CASES) >= 20


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_decoded_as_go_decodes(case: dict[str, Any]) -> None:
    go = TYPES[case["type"]]
    expected = case["go"]
    try:
        value = gojson.decode(gojson.parse(body_of(case)), go)
    except TooDeepError:
        # Go refuses it too, or Go reads it and imagegate says it does not (a refusal, never
        # a malformed answer that registry.onError could let through)
        assert expected.get("error") or case["imagegate"].startswith("refused")
        return
    except GoJsonError:
        assert expected.get("error"), "Go decodes this document"
        return
    assert "imagegate" not in case
    assert "value" in expected, f"Go refuses this document: {expected['message']}"
    assert dump(value, go) == expected["value"]


@pytest.mark.parametrize("case", [c for c in CASES if c["type"] in ("index", "manifest")], ids=lambda c: c["name"])
def test_every_index_and_manifest_row_through_parse_manifest(case: dict[str, Any]) -> None:
    """What the registry client gets: Go's values, or an error that says why."""
    kind = OCI_INDEX if case["type"] == "index" else OCI_MANIFEST
    expected = case["go"]
    try:
        document = parse_manifest(body_of(case), kind)
    except RefusedImageError as exc:
        # imagegate will not vouch for it (a bad digest, a negative size, too deep), whatever
        # Go makes of it: denied, whatever registry.onError says
        assert str(exc)
        return
    except OciError as exc:
        # Go cannot decode it, or containerd would refuse it for another kind
        assert "error" in expected or "is an index" in str(exc) or "is a manifest" in str(exc)
        return
    assert "value" in expected
    value = expected["value"]
    if isinstance(document, Index):
        entries = value["manifests"] or []
        assert [d.digest for d in document.manifests] == [e["digest"] for e in entries]
        assert [None if d.platform is None else str(d.platform) for d in document.manifests] == [
            None
            if e["platform"] is None
            else "/".join(
                p for p in (e["platform"]["os"], e["platform"]["architecture"], e["platform"]["variant"]) if p
            )
            for e in entries
        ]
    else:
        assert isinstance(document, Manifest)
        assert document.config.digest == value["config"]["digest"]
        assert [layer.digest for layer in document.layers] == [layer["digest"] for layer in value["layers"] or []]


@pytest.mark.parametrize("case", [c for c in CASES if c["type"] == "config"], ids=lambda c: c["name"])
def test_every_config_row_through_parse_config(case: dict[str, Any]) -> None:
    expected = case["go"]
    try:
        config = parse_config(body_of(case))
    except OciError:
        # Go cannot decode it, or a diff_id is no digest (the node's unpack fails on it)
        rootfs = expected.get("value", {}).get("rootfs", {})
        assert "error" in expected or any(not d.startswith("sha256:") for d in rootfs.get("diff_ids") or [])
        return
    assert list(config.diff_ids) == (expected["value"]["rootfs"]["diff_ids"] or [])
    assert (config.os, config.architecture) == (expected["value"]["os"], expected["value"]["architecture"])


def test_kind_comes_from_the_fetch_and_the_body_must_not_contradict_it() -> None:
    """containerd's validateMediaType: the Content-Type (or the index entry's mediaType)
    decides; a body that says it is the other kind, or carries the other kind's fields, is an
    error there, so here too."""
    index_body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}).encode()
    with pytest.raises(OciError, match="is an index"):
        parse_manifest(index_body, OCI_MANIFEST)
    manifest_like = b'{"schemaVersion": 2, "manifests": [], "Layers": null}'
    with pytest.raises(OciError, match="is a manifest"):
        parse_manifest(manifest_like, OCI_INDEX)
    # a mediaType the runtime does not know is not what decides: the fetch's type does
    odd = json.dumps({"schemaVersion": 2, "mediaType": "x/y", "manifests": []}).encode()
    assert isinstance(parse_manifest(odd, OCI_INDEX), Index)
    with pytest.raises(OciError, match="schema 1"):
        parse_manifest(b'{"fsLayers": []}', OCI_MANIFEST)


@pytest.mark.parametrize("depth", [10, 500, 900, 990, 1000, 1500, 12_000])
def test_any_nesting_is_read_or_refused_never_a_crash(depth: int) -> None:
    """Found here: lone surrogates were replaced by a recursive walk over the whole document,
    which overflowed Python's stack on a document just shallow enough for the parser."""
    body = b'{"schemaVersion": 2, "manifests": [], "x": ' + b"[" * depth + b'"\\ud800"' + b"]" * depth + b"}"
    try:
        document = parse_manifest(body, OCI_INDEX)
    except RefusedImageError as exc:
        assert "nested deeper than imagegate reads" in str(exc)
    else:
        assert isinstance(document, Index) and document.manifests == []
