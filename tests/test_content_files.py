"""The contract between the layer reader and the content parsers: which files are kept."""

from __future__ import annotations

from imagegate.core.contents.files import FileSelection, ImageFiles


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
