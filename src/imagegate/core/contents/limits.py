"""How much of an image the layer reader may read and keep: one place for the defaults.

The policy's ``registry.contents`` section is this struct as written (camelCase keys, unknown keys
refused); the reader (shell/registry/contents.py) and the pure layer parser
(core/contents/layers.py) read the same fields. Each bound that is passed ends the read with a
named :class:`~imagegate.core.contents.layers.ContentError` that says which setting it was.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

__all__ = ["ContentLimits"]

_MIB = 1024 * 1024
_GIB = 1024 * _MIB

Positive = Annotated[int, msgspec.Meta(ge=1)]


class ContentLimits(msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=True, omit_defaults=True):
    """Bounds on one image's read (``registry.contents`` in the policy)."""

    # compressed bytes of one layer (its descriptor's size, and what the registry sends)
    max_layer_bytes: Positive = 2 * _GIB
    # compressed bytes of all of one image's layers
    max_image_bytes: Positive = 8 * _GIB
    # decompressed bytes of one layer (the tar stream)
    max_unpacked_layer_bytes: Positive = 16 * _GIB
    # decompressed bytes per compressed byte: beyond it a layer is a decompression bomb. Real
    # layers are 2 to 5; a tar of one small file is about 100 (tar's 10 KiB records), which the
    # allowance below covers.
    max_ratio: Positive = 100
    # tar entries of one image, every layer's counted (kept or not)
    max_entries: Positive = 1_000_000
    # one kept file
    max_file_bytes: Positive = 32 * _MIB
    # all the kept files of one image
    max_kept_bytes: Positive = 256 * _MIB
    # one image's whole read, every layer streamed (not the webhook's budget: see docs/contents.md)
    timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 120.0
    # what the reader keeps between reads (layers by digest, images by digest), in bytes
    cache_bytes: Annotated[int, msgspec.Meta(ge=0)] = 512 * _MIB
    # how long a read that failed on the image's bytes (a bomb, a digest mismatch, a corrupt or
    # hostile layer: never a registry's timeout or outage) is kept as the answer for its digest
    # before the image is read again; 0 reads it again at every request
    failure_ttl_seconds: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 60.0

    def unpacked_allowance(self, compressed: int) -> int:
        """Decompressed bytes a layer of ``compressed`` bytes may hold before it is a bomb."""
        return min(self.max_unpacked_layer_bytes, self.max_ratio * compressed + _MIB)
