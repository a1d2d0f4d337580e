"""Platforms as containerd normalizes them (containerd/platforms database.go, Normalize)."""

from __future__ import annotations

import pytest

from imagegate.core.platforms import PlatformError, normalize_platform, parse_platform
from imagegate.core.policy import PolicyError, load_policy


@pytest.mark.parametrize(
    ("written", "normal"),
    [
        ("linux/amd64", "linux/amd64"),
        ("linux/x86_64", "linux/amd64"),
        ("linux/amd64/v1", "linux/amd64"),
        ("linux/amd64/v3", "linux/amd64/v3"),
        ("Linux/AArch64", "linux/arm64"),
        ("linux/arm64/v8", "linux/arm64"),
        ("linux/arm64/9.0", "linux/arm64/v9"),
        ("linux/arm", "linux/arm/v7"),
        ("linux/arm/6", "linux/arm/v6"),
        ("linux/armhf", "linux/arm/v7"),
        ("linux/armel", "linux/arm/v6"),
        ("linux/i386", "linux/386"),
        ("macos/arm64", "darwin/arm64"),
        ("windows/amd64", "windows/amd64"),
        ("linux/riscv64", "linux/riscv64"),
    ],
)
def test_normal_forms(written: str, normal: str) -> None:
    assert parse_platform(written) == normal


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ("banana", "is not os/architecture[/variant]"),
        ("linux", "is not os/architecture[/variant]"),
        ("linux/amd64/v1/x", "is not os/architecture[/variant]"),
        ("linux//amd64", "is not os/architecture[/variant]"),
        ("linux/am d64", "is not os/architecture[/variant]"),
        ("linux/banana", "unknown architecture 'banana'"),
        ("plan10/amd64", "unknown operating system 'plan10'"),
    ],
)
def test_refused(written: str, message: str) -> None:
    with pytest.raises(PlatformError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_platform(written)


def test_registry_data_is_normalized_without_judging_it() -> None:
    assert normalize_platform("linux", "arm64", "v8") == normalize_platform("linux", "aarch64") == "linux/arm64"
    assert normalize_platform("unknownos", "weird") == "unknownos/weird"  # an index may list anything


def test_policy_platforms_in_normal_form_and_typos_refused() -> None:
    header = "apiVersion: imagegate.toolforge.org/v1\nkind: ImagePolicy\ntrusted: []\n"
    policy = load_policy(header + "registry:\n  platforms: [linux/x86_64, linux/arm64/v8]\n", "p.yaml")
    assert policy.registry.platforms == ("linux/amd64", "linux/arm64")
    with pytest.raises(PolicyError, match=r"p.yaml:7: registry.platforms\[1\]: .*unknown architecture 'amd46'"):
        load_policy(header + "registry:\n  platforms:\n    - linux/amd64\n    - linux/amd46\n", "p.yaml")
