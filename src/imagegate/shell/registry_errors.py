"""The registry client's one exception, apart from the client (httpx): a webhook whose policy needs
no registry catches and names it without loading the client."""

from __future__ import annotations

__all__ = ["RegistryError"]


class RegistryError(Exception):
    """A registry could not tell us what we asked; ``kind`` is stable for metrics."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(message)
