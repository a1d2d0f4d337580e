"""The registry gate: the registry clients, caches and checkers every lookup goes through.

The core decides; this shell only looks things up. A decision's questions are answered by
the answerers of shell/registry/answerers.py (one per question type), through this gate:
its clients (one per registry configuration), the trusted bases' versions
(:class:`BaseImageIndex`), the signature and attestation checkers. When a registry cannot
answer, the rule's ``onError`` decides what the answer is, and the message says which happened.

Every contact goes through :meth:`RegistryGate.resolve`, which asks only the registries the
policy lets imagegate contact (:meth:`~imagegate.core.policy.Policy.contact_scope`). What a
tenant reads about a failed lookup comes from :func:`tenant_reason`: the kind of failure,
never the network's detail (host resolution, refused connections, TLS, addresses reached),
which goes to imagegate's log.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from imagegate.core.baseimage import BaseVersion
from imagegate.core.bases import TaggedBase, is_artifact_tag, tagged_bases
from imagegate.core.policy import DEFAULT_LOOKUP_TIMEOUT, BaseImagesConfig, Policy, RegistryConfig, contact_refusal
from imagegate.core.reference import Reference, parse_docker_ref
from imagegate.shell.logs import get_logger
from imagegate.shell.policy_files import relative_to_policy
from imagegate.shell.registry.errors import RegistryError, RegistryErrorKind, RequestObserver, deadline

if TYPE_CHECKING:  # the client (httpx) is loaded by the first lookup: a policy without one never does
    from imagegate.core.oci import PlatformImage, ResolvedImage
    from imagegate.shell.registry.attestations import AttestationChecker
    from imagegate.shell.registry.client import RegistryClient
    from imagegate.shell.registry.signing import SignatureChecker

__all__ = [
    "BASE_TAGS_READ",
    "NOT_A_REGISTRY_FAILURE",
    "BaseImageIndex",
    "RegistryGate",
    "decision_deadline",
    "pin_failure_note",
    "tagged_versions",
    "tenant_reason",
]

T = TypeVar("T")

# An operator's command looks up this many images at once (each has its own deadline from its start).
LOOKUPS_AT_ONCE = 8
# What the log says when the registry's part of one decision ran out of time.
DECISION_LOOKUPS = "the registry lookups of this decision"

log = get_logger("imagegate.verification")


def client_for(
    config: RegistryConfig,
    relative_to: Path | None = None,
    timer: Callable[[], float] | None = None,
    observer: RequestObserver | None = None,
) -> RegistryClient:
    """A registry client configured by the policy's ``registry`` section (``timer``: its caches'
    clock; ``observer``: told of each request, for metrics)."""
    from imagegate.shell.registry.auth import DockerConfigCredentials  # noqa: PLC0415
    from imagegate.shell.registry.client import RegistryClient, RegistrySettings  # noqa: PLC0415

    def resolve(name: str | None) -> Path | None:
        return relative_to_policy(name, relative_to)

    credentials_path = resolve(config.credentials_file)
    credentials = (
        DockerConfigCredentials.from_docker_config(credentials_path) if credentials_path else DockerConfigCredentials()
    )
    return RegistryClient(
        RegistrySettings(
            timeout=config.timeout,
            lookup_timeout=config.lookup_timeout,
            platforms=config.platforms,
            ca_file=resolve(config.ca_file),
            credentials=credentials,
            timer=timer or time.monotonic,
            observer=observer,
        )
    )


# Tags of a base's repository read per refresh: a base repository holds versions, not thousands
# of builds (``bases --max-tags`` reads more when asked).
BASE_TAGS_READ = 200


async def tagged_versions(
    client: RegistryClient, config: BaseImagesConfig, max_tags: int, problems: list[str]
) -> list[TaggedBase]:
    """Every tagged version of every trusted base's repository (artifact tags skipped), with its
    creation time: the one reading of base versions (the webhook, ``check``, ``inspect``, ``bases``).

    What could not be read is added to ``problems`` (one entry per repository or tag).
    """
    repositories = dict.fromkeys(ref.repository for ref in config.trusted)
    versions: list[TaggedBase] = []
    for repository in repositories:
        ref = parse_docker_ref(repository)
        try:
            tags, more = await client.tags(ref, max_tags)
        except RegistryError as exc:
            problems.append(f"base {repository}: cannot list its tags: {exc}")
            continue
        if more:
            problems.append(f"base {repository}: only its first {max_tags} tags were read")
        wanted = [tag for tag in tags if not is_artifact_tag(tag)]
        results = await asyncio.gather(
            *(client.resolve(parse_docker_ref(f"{repository}:{tag}")) for tag in wanted), return_exceptions=True
        )
        pairs: list[tuple[str, PlatformImage]] = []
        for tag, result in zip(wanted, results, strict=True):
            if isinstance(result, RegistryError):
                problems.append(f"base {repository}:{tag}: {result}")
            elif isinstance(result, BaseException):
                raise result
            else:
                pairs.extend((tag, platform) for platform in result.platforms)
        versions.extend(tagged_bases(repository, pairs))
    return versions


@dataclass
class BaseImageIndex:
    """The layer chains of the trusted base images, including earlier versions.

    Derived from the registry itself, so every replica and every restart knows the same
    versions: each trusted base as its reference names it now, and every other tagged
    version of its repository created within ``rememberDays`` (its config's ``created``),
    which is what ``imagegate bases`` reads too. Versions seen by this process stay for
    ``rememberDays`` as well (a version whose tag has moved on and left no tag behind).
    """

    versions: list[BaseVersion] = field(default_factory=list)
    last_error: str | None = None

    async def refresh(
        self,
        client: RegistryClient,
        config: BaseImagesConfig,
        now: dt.datetime,
        *,
        lookup_timeout: float = DEFAULT_LOOKUP_TIMEOUT,
    ) -> None:
        """Resolve every trusted base now (each within ``lookup_timeout``), read its repository's
        other versions; forget what aged out."""
        errors: list[str] = []
        current: set[tuple[str, str]] = set()  # (reference, digest) the trusted references name now
        for ref in config.trusted:
            try:
                async with deadline(lookup_timeout, f"looking up {ref}", "registry.lookupTimeoutSeconds"):
                    image = await client.resolve(ref)
            except RegistryError as exc:
                errors.append(f"{ref}: {exc}")
                continue
            for platform in image.platforms:
                current.add((str(ref), platform.manifest_digest))
                self._add(BaseVersion(str(ref), platform.manifest_digest, platform.platform, platform.diff_ids, now))
        horizon = now - dt.timedelta(days=config.remember_days)
        tagged = await tagged_versions(client, config, BASE_TAGS_READ, errors) if config.remember_days else []
        for version in tagged:
            if version.created is None or version.created < horizon:
                continue  # no date to reason with, or older than what the policy remembers
            for ref in config.trusted:  # a version of the repository counts as a version of its trusted base
                if ref.repository == version.repository:
                    self._add(
                        BaseVersion(str(ref), version.digest, version.platform, version.diff_ids, version.created)
                    )
        trusted = {str(ref) for ref in config.trusted}
        self.versions = [
            v
            for v in self.versions
            if v.reference in trusted and ((v.reference, v.digest) in current or v.seen >= horizon)
        ]
        self.last_error = "; ".join(errors) or None
        if errors:
            log.error("base image refresh incomplete", errors=errors)

    def _add(self, version: BaseVersion) -> None:
        for index, known in enumerate(self.versions):
            if (known.reference, known.digest, known.platform) == (version.reference, version.digest, version.platform):
                if version.seen > known.seen:  # seen again now: remembered from now on
                    self.versions[index] = version
                return
        self.versions.append(version)
        log.info("base image version", base=version.reference, platform=version.platform, digest=version.digest)


class RegistryGate:
    """Registry lookups for decisions, with one client per registry configuration."""

    def __init__(
        self,
        relative_to: Path | None = None,
        clock: Callable[[], dt.datetime] | None = None,
        *,
        remember_failures: bool = False,
        timer: Callable[[], float] | None = None,
        observer: RequestObserver | None = None,
    ) -> None:
        self.relative_to = relative_to
        self._timer = timer  # the registry clients' cache clock (monotonic seconds); tests move it
        self._observer = observer  # told of each registry request (the webhook's metrics)
        # reference -> why its digest could not be looked up; kept only when asked (a report
        # wants them all; the webhook would grow this without bound)
        self.pin_failures: dict[str, RegistryError] | None = {} if remember_failures else None
        self.bases = BaseImageIndex()
        self._signatures: SignatureChecker | None = None  # made by the first signature check (loads sigstore)
        self._attestations: AttestationChecker | None = None  # made by the first attestation check
        self._clients: dict[RegistryConfig, RegistryClient] = {}
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._refreshed_for: BaseImagesConfig | None = None
        self._refresh_lock = asyncio.Lock()
        self._slots = asyncio.Semaphore(LOOKUPS_AT_ONCE)

    async def lookup(self, config: RegistryConfig, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """One lookup an operator's command makes (an image, a repository's tags), within
        ``registry.lookupTimeoutSeconds`` of its start; at most :data:`LOOKUPS_AT_ONCE` at a time,
        so that waiting for a turn is not counted against a lookup."""
        async with self._slots, deadline(config.lookup_timeout, f"looking up {what}", "registry.lookupTimeoutSeconds"):
            return await call()

    def client(self, config: RegistryConfig) -> RegistryClient:
        if config not in self._clients:
            self._clients[config] = client_for(config, self.relative_to, self._timer, self._observer)
        return self._clients[config]

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()

    async def refresh_bases(self, policy: Policy, *, force: bool = False) -> None:
        """Know the trusted bases' versions (read once per policy, again after a failure or when ``force``d).

        The reading is a task of its own (it reads the bases' repositories, which can take longer
        than one decision may wait): a decision whose deadline passes stops waiting for it, and
        the next one finds it done.
        """
        if not force and self._refreshed_for == policy.base_images:
            return
        reading = asyncio.ensure_future(self._refresh_bases(policy, force=force))
        reading.add_done_callback(_retrieved)
        await asyncio.shield(reading)

    async def _refresh_bases(self, policy: Policy, *, force: bool) -> None:
        async with self._refresh_lock:
            if not force and self._refreshed_for == policy.base_images:
                return
            await self.bases.refresh(
                self.client(policy.registry),
                policy.base_images,
                self._clock(),
                lookup_timeout=policy.registry.lookup_timeout,
            )
            # After a failed refresh, the next verification tries again (the client's short
            # negative cache keeps that cheap while a registry is down).
            self._refreshed_for = None if self.bases.last_error else policy.base_images

    async def resolve(self, policy: Policy, ref: Reference) -> ResolvedImage:
        """The image behind ``ref``, read from its registry if the policy lets imagegate contact it.

        Raises :class:`RegistryError` ``not-contacted`` (before any connection) when it does not.
        """
        if not policy.contact_scope().allows(ref):
            raise RegistryError(RegistryErrorKind.NOT_CONTACTED, contact_refusal(ref))
        return await self.client(policy.registry).resolve(ref)

    async def digest(self, policy: Policy, ref: Reference) -> str:
        """The digest ``ref`` points at now, read (one manifest, shared with :meth:`resolve`) only
        if the policy lets imagegate contact its registry."""
        if ref.digest is not None:
            return ref.digest
        if not policy.contact_scope().allows(ref):
            raise RegistryError(RegistryErrorKind.NOT_CONTACTED, contact_refusal(ref))
        return await self.client(policy.registry).digest(ref)

    @property
    def signatures(self) -> SignatureChecker:
        if self._signatures is None:
            from imagegate.shell.registry.signing import SignatureChecker  # noqa: PLC0415 - sigstore only when a rule needs it

            self._signatures = SignatureChecker(self.relative_to)
        return self._signatures

    @property
    def attestations(self) -> AttestationChecker:
        if self._attestations is None:
            from imagegate.shell.registry.attestations import AttestationChecker  # noqa: PLC0415 - as signatures

            self._attestations = AttestationChecker(self.relative_to)
        return self._attestations

    @property
    def signatures_if_loaded(self) -> SignatureChecker | None:
        """The signature checker if a check made it already (a warm path must not load sigstore)."""
        return self._signatures

    def known_client(self, config: RegistryConfig) -> RegistryClient | None:
        """The client for ``config`` if a lookup made it already (its caches are what is known)."""
        return self._clients.get(config)


def _retrieved(done: asyncio.Future[None]) -> None:
    """A task's outcome, taken: nobody may be waiting for it any more."""
    if not done.cancelled() and done.exception() is not None:
        log.error("base image refresh failed", error=repr(done.exception()))


def decision_deadline(policy: Policy, ends: float) -> AbstractAsyncContextManager[object]:
    """The deadline of the registry's part of one decision (``registry.lookupTimeoutSeconds``)."""
    return deadline(policy.registry.lookup_timeout, DECISION_LOOKUPS, "registry.lookupTimeoutSeconds", at=ends)


# Kinds whose message is imagegate's own words about the image (what in an index it refuses, or
# that it did not ask): told in full, and not a registry failure that registry.onError covers.
NOT_A_REGISTRY_FAILURE = frozenset({RegistryErrorKind.REFUSED, RegistryErrorKind.NOT_CONTACTED})
# What a tenant is told for each other kind: stable words, nothing the network said.
TENANT_WORDS: Mapping[RegistryErrorKind, str] = {
    RegistryErrorKind.NOT_FOUND: "no such tag or repository (HTTP 404)",
    RegistryErrorKind.UNREACHABLE: "unreachable",
    RegistryErrorKind.TIMEOUT: "timeout",
    RegistryErrorKind.TRUNCATED: "an answer cut short",
    RegistryErrorKind.PROTOCOL: "an answer that is not valid HTTP",
    RegistryErrorKind.ENCODING: "an answer that does not decode as its Content-Encoding says",
    RegistryErrorKind.TLS: "TLS error",
    RegistryErrorKind.AUTH: "authentication failed",
    RegistryErrorKind.RATE_LIMITED: "rate limited (HTTP 429)",
    RegistryErrorKind.HTTP: "an unexpected HTTP answer",
    RegistryErrorKind.REDIRECTS: "too many redirects",
    RegistryErrorKind.TOO_LARGE: "a document larger than imagegate reads",
    RegistryErrorKind.DIGEST_MISMATCH: "content that does not match its digest",
    RegistryErrorKind.MALFORMED: "a malformed answer",
    RegistryErrorKind.CREDENTIALS: "imagegate's registry credentials are unusable",
}
# Registry error kinds that mean "no answer at all", as opposed to an answer we cannot use.
_UNAVAILABLE = frozenset({RegistryErrorKind.UNREACHABLE, RegistryErrorKind.TIMEOUT})


def tenant_reason(reference: str, error: RegistryError) -> str:
    """What a tenant reads about a failed lookup of ``reference``: the kind, never the detail.

    A tenant chooses the host an image names; echoing what the network said (a name that does
    not resolve, a refused connection, a TLS error, the address reached) would make imagegate a
    probe of the platform's network. The detail goes to imagegate's log, with the image. The
    one place a :class:`RegistryError` becomes words for a tenant.
    """
    if error.kind is RegistryErrorKind.REFUSED:  # the registry answered; the answer is what is refused
        return f"refused: {error}"
    if error.kind is RegistryErrorKind.NOT_CONTACTED:
        return str(error)
    log.warning("registry lookup failed", image=reference, kind=error.kind, error=str(error))
    words = TENANT_WORDS[error.kind]
    if error.kind in _UNAVAILABLE:
        return f"registry unavailable: {words}"
    return f"registry error ({words})"


def pin_failure_note(reference: str, error: RegistryError) -> str:
    """The admission warning for an image left unpinned: what the registry did, in :func:`tenant_reason`'s words."""
    if error.kind is RegistryErrorKind.NOT_FOUND:
        why = "the registry has no such tag or repository (HTTP 404); pulling it will fail too until it is pushed"
        log.info("cannot pin image", image=reference, kind=error.kind, error=str(error))
    else:
        why = tenant_reason(reference, error)
    return f"imagegate: could not pin {reference} to a digest ({why}); it runs by tag"
