"""The contract between the layer reader and the content parsers: which files are kept."""

from __future__ import annotations

import pytest

from imagegate.core.contents.files import FileSelection, ImageFiles, Listing, listed_paths


def test_exact_paths_and_patterns_select_files() -> None:
    wanted = FileSelection(frozenset({"/etc/nsswitch.conf"}), ("/usr/share/doc/*/copyright",))
    assert wanted.wants("/etc/nsswitch.conf")
    assert not wanted.wants("/etc/nsswitch.conf.orig")
    assert wanted.wants("/usr/share/doc/libnss-sss/copyright")
    assert not wanted.wants("/usr/share/doc/libnss-sss/changelog.gz")
    assert not FileSelection().wants("/etc/passwd")


def test_selections_are_united() -> None:
    both = FileSelection(frozenset({"/a"}), ("/b/*",)) | FileSelection(frozenset({"/c"}), ("/b/*", "/d/*"))
    assert both.exact == {"/a", "/c"}
    assert both.patterns == ("/b/*", "/d/*")
    assert all(both.wants(p) for p in ("/a", "/c", "/b/x", "/d/y/z"))
    assert not both.wants("/e")


def test_files_under_a_directory_in_path_order() -> None:
    files = ImageFiles(
        {"/var/lib/dpkg/status.d/b": b"2", "/var/lib/dpkg/status.d/a": b"1", "/var/lib/dpkg/status": b"0"}
    )
    assert list(files.under("/var/lib/dpkg/status.d/")) == [
        ("/var/lib/dpkg/status.d/a", b"1"),
        ("/var/lib/dpkg/status.d/b", b"2"),
    ]


def test_listings_are_kept_and_united_with_their_form() -> None:
    md5sums = FileSelection.listing("/var/lib/dpkg/info/x:*.md5sums", Listing.MD5SUMS)
    both = md5sums | FileSelection.listing("/var/lib/dpkg/diversions", Listing.PATHS) | md5sums
    assert both.wants("/var/lib/dpkg/info/x:amd64.md5sums") and both.wants("/var/lib/dpkg/diversions")
    assert both.listing_form("/var/lib/dpkg/info/x:amd64.md5sums") is Listing.MD5SUMS
    assert both.listing_form("/var/lib/dpkg/diversions") is Listing.PATHS
    assert both.listing_form("/var/lib/dpkg/status") is None
    assert len(both.listings) == 2
    with pytest.raises(ValueError, match=r"FileSelection\.listing"):
        FileSelection(listings=(("/a", Listing.PATHS),))  # its pattern would not be kept


def test_listed_paths_in_each_form() -> None:
    md5sums = b"c82bc17be627576baeef7eb99c22aec3  lib/x/libnss_sss.so.2\nnot a line\n" + b"0" * 32 + b"  a/../b\n"
    assert list(listed_paths(Listing.MD5SUMS, md5sums)) == ["/lib/x/libnss_sss.so.2"]
    listing = b"/.\n/lib\n/lib/x/libnss_sss.so.2\ndash\nrelative/path\n/a//b\n"
    assert list(listed_paths(Listing.PATHS, listing)) == ["/lib", "/lib/x/libnss_sss.so.2"]
