"""Kubernetes names, one rule each: a namespace (or Service) name is an RFC 1123 label.

The API server's rule (``IsDNS1123Label``): 1 to 63 lowercase letters, digits or ``-``,
starting and ending with a letter or digit. Grants, identities, placeholders, the command
line's namespace options and the certificates' Service names all ask this module.
"""

from __future__ import annotations

import re

__all__ = ["DNS_LABEL_RULE", "is_dns_label", "namespace_name_error"]

_DNS_LABEL_RE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
DNS_LABEL_RULE = "1 to 63 lowercase letters, digits or '-', starting and ending with a letter or digit"


def is_dns_label(text: str) -> bool:
    """Whether ``text`` is an RFC 1123 label (what Kubernetes calls a DNS label), e.g. a namespace name."""
    return _DNS_LABEL_RE.fullmatch(text) is not None


def namespace_name_error(text: str) -> str | None:
    """Why ``text`` cannot name a namespace, in one phrase; ``None`` when it can."""
    if is_dns_label(text):
        return None
    return f"{text!r} is not a namespace name ({DNS_LABEL_RULE})"
