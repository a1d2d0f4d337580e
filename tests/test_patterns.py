"""Repository patterns: whole-segment matching, and the bypasses peers suffered."""

from __future__ import annotations

import pytest

from imagegate.core.patterns import PatternError, parse_pattern
from imagegate.core.reference import parse_docker_ref


def matches(pattern: str, image: str) -> bool:
    return parse_pattern(pattern).matches(parse_docker_ref(image))


@pytest.mark.parametrize(
    ("pattern", "image", "expected"),
    [
        # a registry covers all of its repositories
        ("docker-registry.svc.toolforge.org", "docker-registry.svc.toolforge.org/x/y:1", True),
        ("docker-registry.svc.toolforge.org", "docker-registry.svc.toolforge.org.evil.com/x", False),
        ("docker-registry.svc.toolforge.org", "docker-registry.svc.toolforge.org:5000/x", False),
        # a repository prefix covers itself and what is below it, on whole segments
        ("registry.org/toolforge", "registry.org/toolforge", True),
        ("registry.org/toolforge", "registry.org/toolforge/sub/app:1", True),
        ("registry.org/toolforge", "registry.org/toolforge-evil/x", False),
        ("registry.org/toolforge", "registry.org.evil.com/toolforge/x", False),
        ("registry.org/toolforge", "registry.org/other/toolforge", False),
        # gatekeeper-style trailing slash means the same
        ("registry.org/toolforge/", "registry.org/toolforge/x", True),
        # the "allowed.registry.evil.com" attack on prefix matchers
        ("allowed.registry", "allowed.registry.evil.com/x", False),
        # globs stay inside a segment
        ("tools-harbor.wmcloud.org/tool-*", "tools-harbor.wmcloud.org/tool-foo/app:1", True),
        ("tools-harbor.wmcloud.org/tool-*", "tools-harbor.wmcloud.org/toolforge/app:1", False),
        ("tools-harbor.wmcloud.org/tool-*", "tools-harbor.wmcloud.org/x/tool-a", False),
        ("*.toolforge.org", "docker-registry.svc.toolforge.org/x", True),
        ("*.toolforge.org", "evil.com/x.toolforge.org", False),
        # registry names are case-insensitive (DNS); the pattern is written lowercase
        ("docker-registry.svc.toolforge.org", "Docker-Registry.svc.toolforge.org/x", True),
        # Docker Hub: images are normalized before matching
        ("docker.io/library", "nginx", True),
        ("docker.io/library/nginx", "nginx:1.25", True),
        ("docker.io/library/nginx", "index.docker.io/library/nginx", True),
        ("docker.io/library/nginx", "docker.io/nginx", True),
        ("index.docker.io/library/nginx", "nginx", True),
        ("docker.io/library/nginx", "nginxevil", False),
        ("docker.io/openpolicyagent", "openpolicyagent/opa:0.9.2", True),
        ("docker.io/openpolicyagent", "openpolicyagentevil/opa", False),
        # tag and digest entries are exact
        ("docker.io/library/ubuntu:20.04", "ubuntu:20.04", True),
        ("docker.io/library/ubuntu:20.04", "ubuntu:20.04.1", False),
        ("docker.io/library/ubuntu:20.04", "ubuntu", False),
        ("docker.io/library/ubuntu:20.04", "ubuntu/sub:20.04", False),
        (
            "docker.io/library/ubuntu:20.04",
            "ubuntu:20.04@sha256:" + "a" * 64,
            False,  # the digest, not the tag, decides what runs
        ),
        ("ghcr.io/org/app@sha256:" + "b" * 64, "ghcr.io/org/app@sha256:" + "b" * 64, True),
        ("ghcr.io/org/app@sha256:" + "b" * 64, "ghcr.io/org/app:1@sha256:" + "b" * 64, True),
        ("ghcr.io/org/app@sha256:" + "b" * 64, "ghcr.io/org/app@sha256:" + "c" * 64, False),
        # ports are part of the registry
        ("localhost:5000", "localhost:5000/app", True),
        ("localhost:5000", "localhost:5001/app", False),
        ("localhost", "localhost:5000/app", False),
        ("[::1]:5000", "[::1]:5000/app", True),
    ],
)
def test_matching(pattern: str, image: str, expected: bool) -> None:
    assert matches(pattern, image) is expected


@pytest.mark.parametrize(
    ("pattern", "complaint"),
    [
        ("openpolicyagent", "does not start with a registry"),
        ("allowed/nginx", "does not start with a registry"),
        ("", "non-empty"),
        (" registry.org", "white space"),
        ("https://registry.org", "without a scheme"),
        ("registry.org/Upper", "not valid"),
        ("registry.org//x", "empty path segment"),
        ("*", "matches every image"),
        ("*/*", "matches every image"),
        ("registry.org/x*:1", "no globs"),
        ("registry.org:tag", "not a valid registry"),
        ("registry.org/x@sha256:abc", "invalid reference format"),
        ("registry.org/x@md5:" + "a" * 32, "unsupported digest algorithm"),
        ("registry.org/x$", "is not valid"),
        ("registry.org/x$*", "characters no image name has"),
    ],
)
def test_invalid_patterns(pattern: str, complaint: str) -> None:
    with pytest.raises(PatternError, match=complaint):
        parse_pattern(pattern)
