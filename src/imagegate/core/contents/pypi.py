"""Python distributions: ``*.dist-info/METADATA`` and ``*.egg-info/PKG-INFO`` (or an
``.egg-info`` file), the core metadata format (RFC 822 headers). Pure.

The licence, in the order the packaging specifications rank them: ``License-Expression``
(PEP 639: an SPDX expression); else ``License`` when it is an SPDX expression of known ids
("MIT", "Apache-2.0"); else the ``License ::`` classifiers that name one licence and its version
(:data:`CLASSIFIERS`; several are read as all of them together); else the ``License`` text as
written, unknown (``LicenseRef-``). "License :: OSI Approved :: BSD License" names no version
of BSD, so it stays unknown.
"""

from __future__ import annotations

from imagegate.core.contents.files import FileSelection, ImageFiles
from imagegate.core.contents.licences import every, from_spdx, spdx_known
from imagegate.core.contents.packages import Ecosystem, Note, Package, decoded, files_matching, first_line

__all__ = ["CLASSIFIERS", "FILES", "parse"]

FILES = FileSelection(patterns=("*.dist-info/METADATA", "*.egg-info/PKG-INFO", "*.egg-info"))

# Trove licence classifiers that name exactly one SPDX licence (https://pypi.org/classifiers/).
# Those naming a family without its version ("Apache Software License", "BSD License", "GNU
# General Public License (GPL)") are left out: unknown, not guessed.
CLASSIFIERS = {
    "License :: OSI Approved :: MIT License": "MIT",
    "License :: OSI Approved :: MIT No Attribution License (MIT-0)": "MIT-0",
    "License :: OSI Approved :: ISC License (ISCL)": "ISC",
    "License :: OSI Approved :: Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0",
    "License :: OSI Approved :: Mozilla Public License 1.1 (MPL 1.1)": "MPL-1.1",
    "License :: OSI Approved :: GNU General Public License v2 (GPLv2)": "GPL-2.0-only",
    "License :: OSI Approved :: GNU General Public License v2 or later (GPLv2+)": "GPL-2.0-or-later",
    "License :: OSI Approved :: GNU General Public License v3 (GPLv3)": "GPL-3.0-only",
    "License :: OSI Approved :: GNU General Public License v3 or later (GPLv3+)": "GPL-3.0-or-later",
    "License :: OSI Approved :: GNU Lesser General Public License v2 (LGPLv2)": "LGPL-2.0-only",
    "License :: OSI Approved :: GNU Lesser General Public License v2 or later (LGPLv2+)": "LGPL-2.0-or-later",
    "License :: OSI Approved :: GNU Lesser General Public License v3 (LGPLv3)": "LGPL-3.0-only",
    "License :: OSI Approved :: GNU Lesser General Public License v3 or later (LGPLv3+)": "LGPL-3.0-or-later",
    "License :: OSI Approved :: GNU Affero General Public License v3": "AGPL-3.0-only",
    "License :: OSI Approved :: GNU Affero General Public License v3 or later (AGPLv3+)": "AGPL-3.0-or-later",
    "License :: OSI Approved :: The Unlicense (Unlicense)": "Unlicense",
    "License :: OSI Approved :: Zero-Clause BSD (0BSD)": "0BSD",
    "License :: OSI Approved :: Boost Software License 1.0 (BSL-1.0)": "BSL-1.0",
    "License :: OSI Approved :: zlib/libpng License": "Zlib",
    "License :: OSI Approved :: Eclipse Public License 2.0 (EPL-2.0)": "EPL-2.0",
    "License :: OSI Approved :: European Union Public Licence 1.2 (EUPL 1.2)": "EUPL-1.2",
    "License :: OSI Approved :: Python Software Foundation License": "PSF-2.0",
    "License :: OSI Approved :: Universal Permissive License (UPL)": "UPL-1.0",
    "License :: CC0 1.0 Universal (CC0 1.0) Public Domain Dedication": "CC0-1.0",
}


def _licence(headers: dict[str, list[str]]) -> tuple[str | None, str]:
    """(SPDX expression, as declared) from a distribution's headers."""
    expression = next((v.strip() for v in headers.get("license-expression", []) if v.strip()), "")
    if expression:
        return from_spdx(expression), expression
    text = next((v.strip() for v in headers.get("license", []) if v.strip() and v.strip() != "UNKNOWN"), "")
    if text and spdx_known(from_spdx(text)):
        return from_spdx(text), text
    classifiers = [c.strip() for c in headers.get("classifier", []) if c.strip().startswith("License ::")]
    named = [CLASSIFIERS[c] for c in classifiers if c in CLASSIFIERS]
    if classifiers and len(named) == len(classifiers):
        return every(named), "; ".join(classifiers)
    if text:
        return from_spdx(first_line(text)), first_line(text)
    if classifiers:
        return from_spdx(first_line(classifiers[0].rpartition(" :: ")[2])), "; ".join(classifiers)
    return None, ""


def parse(files: ImageFiles) -> tuple[list[Package], list[Note]]:
    """The Python distributions installed in ``files``."""
    # email's parser (email.policy loads its header registry) only when metadata is read
    from email.parser import HeaderParser  # noqa: PLC0415
    from email.policy import compat32  # noqa: PLC0415

    notes: list[Note] = []
    packages: list[Package] = []
    for path, data in files_matching(files, FILES):
        text = decoded(path, data, notes)
        if text is None:
            continue
        message = HeaderParser(policy=compat32).parsestr(text)
        headers: dict[str, list[str]] = {}
        for key, value in message.items():
            headers.setdefault(key.lower(), []).append(str(value))
        name = next((v.strip() for v in headers.get("name", []) if v.strip()), "")
        if not name:
            notes.append(Note(path, "unreadable: no Name header (not core metadata)"))
            continue
        licence, declared = _licence(headers)
        packages.append(
            Package(
                Ecosystem.PYPI,
                name,
                next((v.strip() for v in headers.get("version", [])), ""),
                licence,
                path,
                declared=declared,
            )
        )
    return packages, notes
