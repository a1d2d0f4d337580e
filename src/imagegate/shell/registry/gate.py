"""What the registry contributes to a decision: base-image verdicts and digests to pin.

The core decides; this shell only looks things up. A decision lists the references it
needs (``base_checks_needed``, ``pins_needed``); :meth:`RegistryGate.lookups` resolves
them through the registry client and returns the verdicts and digests to decide again
with. When a registry cannot answer, ``registry.onError`` decides what the verdict is,
and the message says which happened.

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
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import structlog

from imagegate.core.baseimage import BaseVersion, verify_image
from imagegate.core.bases import TaggedBase, is_artifact_tag, tagged_bases
from imagegate.core.decide import BaseImageVerdict, Decision
from imagegate.core.policy import DEFAULT_LOOKUP_TIMEOUT, BaseImagesConfig, Policy, RegistryConfig, contact_refusal
from imagegate.core.records import NO_LOOKUPS, DenyOrAllow, Lookups, SignatureCheck, SignatureVerdict
from imagegate.core.reference import Reference, parse_docker_ref
from imagegate.core.signatures import SignatureEvidence, SignatureRule, SignaturesConfig
from imagegate.shell.policy_source import relative_to_policy
from imagegate.shell.registry.errors import RegistryError, RegistryErrorKind, RequestObserver, deadline

if TYPE_CHECKING:  # the client (httpx) is loaded by the first lookup: a policy without one never does
    from imagegate.core.oci import PlatformImage, ResolvedImage
    from imagegate.shell.registry.attestations import AttestationChecker
    from imagegate.shell.registry.client import RegistryClient
    from imagegate.shell.registry.signing import SignatureChecker

__all__ = [
    "BASE_TAGS_READ",
    "BaseImageIndex",
    "Lookups",
    "RegistryGate",
    "pin_failure_note",
    "settle",
    "tagged_versions",
    "tenant_reason",
]

T = TypeVar("T")
R = TypeVar("R")  # a signatures or an attestations rule

# An operator's command looks up this many images at once (each has its own deadline from its start).
LOOKUPS_AT_ONCE = 8
# What the log says when the registry's part of one decision ran out of time.
DECISION_LOOKUPS = "the registry lookups of this decision"

log = structlog.get_logger("imagegate.verification")


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

    async def _verdict(self, policy: Policy, reference: str, ends: float) -> BaseImageVerdict:
        try:
            ref = parse_docker_ref(reference)
            if not policy.contact_scope().allows(ref):  # checked before the bases are refreshed
                raise RegistryError(RegistryErrorKind.NOT_CONTACTED, contact_refusal(ref))
            async with _decision_deadline(policy, ends):
                await self.refresh_bases(policy)
                image = await self.resolve(policy, ref)
        except RegistryError as exc:
            reason = tenant_reason(reference, exc)
            if exc.kind in _NOT_A_REGISTRY_FAILURE:  # an answer that is refused, or no question asked
                return BaseImageVerdict(False, reason)
            if policy.registry.on_error is DenyOrAllow.ALLOW:
                return BaseImageVerdict(
                    True, f"not verified: {reason}; allowed by registry.onError: allow", unverified=True
                )
            return BaseImageVerdict(False, f"{reason}; denied by registry.onError: deny")
        return verify_image(image, self.bases.versions)

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

    def _known_signature_verdicts(self, policy: Policy, check: SignatureCheck) -> tuple[SignatureVerdict, ...] | None:
        """The verdicts :meth:`_signature_verdicts` would give from its caches alone (the tag's digest
        and the evidence for it), or None when something must be looked up (or a rule cannot be judged).

        A decision on images already verified then needs no task, no await: what the warm cost is.
        """
        client = self._clients.get(policy.registry)
        if self._signatures is None or client is None:
            return None
        ref = parse_docker_ref(check.reference)
        if ref.digest is None and not policy.contact_scope().allows(ref):
            return None
        digest = client.known_digest(ref)
        if digest is None:
            return None
        return self._signatures.known_verdicts(policy.signatures, ref, digest, check.grant_rule)

    async def _signature_verdicts(
        self, policy: Policy, check: SignatureCheck, ends: float
    ) -> tuple[SignatureVerdict, ...]:
        """The image's verdict under each rule of ``check`` (its ``signatures`` rules and its grant's)."""
        from imagegate.shell.registry.signing import judge_image  # noqa: PLC0415

        ref = parse_docker_ref(check.reference)
        rules = policy.signatures.rules_for(ref, check.grant_rule)
        return await self._signed_verdicts(
            policy, ref, "signatures", self.signatures, policy.signatures, rules, lambda rule: rule, judge_image, ends
        )

    async def _attestation_verdicts(self, policy: Policy, reference: str, ends: float) -> tuple[SignatureVerdict, ...]:
        """The image's verdict under each ``attestations`` rule covering it."""
        from imagegate.shell.registry.attestations import judge_image  # noqa: PLC0415

        ref = parse_docker_ref(reference)
        rules = policy.attestations.rules_for(ref)
        config = policy.attestations.signers
        return await self._signed_verdicts(
            policy, ref, "attestations", self.attestations, config, rules, lambda rule: rule.signers, judge_image, ends
        )

    async def _signed_verdicts(
        self,
        policy: Policy,
        ref: Reference,
        what: str,
        checker: SignatureChecker,
        config: SignaturesConfig,
        rules: Sequence[R],
        signers: Callable[[R], SignatureRule],
        judge: Callable[[Sequence[R], str, Sequence[SignatureEvidence]], tuple[SignatureVerdict, ...]],
        ends: float,
    ) -> tuple[SignatureVerdict, ...]:
        """The image's verdict under each of ``rules`` (``what``: signatures or attestations, whose
        ``signers`` part says its keys, modes and ``onError``), from ``checker``'s evidence.

        A rule whose key (or trusted root) cannot be used fails closed, whatever ``onError`` says:
        that is our configuration, not the image; the other rules are judged as usual, and follow
        their ``onError`` when the registry fails.
        """
        from imagegate.shell.registry.signing import SigningError  # noqa: PLC0415

        reference = str(ref)
        trust = checker.trust(config)
        found: dict[str, SignatureVerdict] = {}
        for rule in rules:
            signer = signers(rule)
            why = trust.unusable(signer)
            if why is not None:
                found[signer.name] = SignatureVerdict(
                    False, f"{what} not verified ({signer.name}): {why}", None, signer.mode
                )
        usable = [rule for rule in rules if signers(rule).name not in found]
        if usable:
            try:
                async with _decision_deadline(policy, ends):
                    digest = await self.digest(policy, ref)
                    evidence = await checker.evidence(self.client(policy.registry), config, ref, digest)
                judged = judge(usable, digest, evidence)
            except SigningError as exc:  # pragma: no cover - unusable trust is answered above
                judged = tuple(
                    SignatureVerdict(False, f"{what} not verified: {exc}", None, signers(r).mode) for r in usable
                )
            except RegistryError as exc:
                judged = tuple(_registry_failure(reference, exc, what, signers(rule)) for rule in usable)
            found.update(zip((signers(rule).name for rule in usable), judged, strict=True))
        return tuple(found[signers(rule).name] for rule in rules)

    async def _digest(self, policy: Policy, reference: str, ends: float) -> str | RegistryError:
        try:
            ref = parse_docker_ref(reference)
            async with _decision_deadline(policy, ends):
                return await self.digest(policy, ref)
        except RegistryError as exc:
            if self.pin_failures is not None:
                self.pin_failures[reference] = exc
            return exc

    async def lookups(
        self,
        policy: Policy,
        decision: Decision,
        *,
        pins: bool,
        checks: bool = True,
        verified: Mapping[str, BaseImageVerdict] | None = None,
        signed: Mapping[str, tuple[SignatureVerdict, ...]] | None = None,
    ) -> Lookups:
        """Verdicts for ``decision.base_checks_needed``, ``signature_checks_needed`` and
        ``attestation_checks_needed`` when ``checks``; digests for its pins when ``pins``: the
        images it needs pinned and those whose base check passes now (``pins_after_checks``).

        Base images, signatures and attestations are checked side by side (an image that fails its
        base check is not pinned). An image whose base, signatures or attestations were verified is
        pinned to the digest that was verified (its verdict says which; all come from one
        single-flight resolution of the tag), never to what its tag points at a moment later.
        """
        # one deadline for all of it: the webhook answers (by onError) before the API server gives up
        ends = asyncio.get_running_loop().time() + policy.registry.lookup_timeout
        wanted = list(decision.base_checks_needed) if checks else []
        known_signatures: dict[str, tuple[SignatureVerdict, ...]] = {}
        to_verify: list[SignatureCheck] = []
        for check in decision.signature_checks_needed if checks else ():
            known = self._known_signature_verdicts(policy, check)
            if known is None:
                to_verify.append(check)
            else:
                known_signatures[check.reference] = known
        to_attest = list(decision.attestation_checks_needed) if checks else []
        base_found: list[BaseImageVerdict] = []
        signatures_found: list[tuple[SignatureVerdict, ...]] = []
        attestations_found: list[tuple[SignatureVerdict, ...]] = []
        if wanted or to_verify or to_attest:
            base_found, signatures_found, attestations_found = await asyncio.gather(
                asyncio.gather(*(self._verdict(policy, ref, ends) for ref in wanted)),
                asyncio.gather(*(self._signature_verdicts(policy, ref, ends) for ref in to_verify)),
                asyncio.gather(*(self._attestation_verdicts(policy, ref, ends) for ref in to_attest)),
            )
        verdicts = dict(zip(wanted, base_found, strict=True))
        signature_verdicts = {
            **(signed or {}),
            **known_signatures,
            **{check.reference: found for check, found in zip(to_verify, signatures_found, strict=True)},
        }
        attestation_verdicts = dict(zip(to_attest, attestations_found, strict=True))
        judged = {**(verified or {}), **verdicts}
        moved = _moved_tags(judged, signature_verdicts, attestation_verdicts)
        for ref, seen in moved.items():
            # Every check resolves a tag through one cache and single flight, so they agree unless
            # the tag moved between two of them: then neither digest's signatures or attestations
            # vouch for what would run (fail closed, said so), and nothing is pinned.
            detail = f"the tag moved while it was verified (to {', '.join(d[:19] for d in seen)}); try again"
            for of_kind in (signature_verdicts, attestation_verdicts):
                if ref in of_kind:
                    of_kind[ref] = tuple(SignatureVerdict(False, detail, None, v.mode) for v in of_kind[ref])
        verified_digests: dict[str, str] = {}
        for found_verdicts in (attestation_verdicts, signature_verdicts):
            for ref, found_signatures in found_verdicts.items():
                digest = next((v.digest for v in found_signatures if v.digest is not None), None)
                if digest is not None:
                    verified_digests[ref] = digest
        for ref, verdict in judged.items():
            if verdict.digest is not None:
                verified_digests[ref] = verdict.digest
        needed = set(decision.pins_needed)
        passed = {ref for ref, verdict in judged.items() if verdict.ok}
        pin_refs = (
            [ref for ref in decision.pins_after_checks if (ref in needed or ref in passed) and ref not in moved]
            if pins
            else []
        )
        to_look_up = [ref for ref in pin_refs if ref not in verified_digests]
        looked_up = dict(
            zip(to_look_up, await asyncio.gather(*(self._digest(policy, ref, ends) for ref in to_look_up)), strict=True)
        )
        digests: dict[str, str] = {}
        notes = []
        for ref in pin_refs:
            found = verified_digests.get(ref) or looked_up.get(ref)
            if isinstance(found, str):
                digests[ref] = found
            elif isinstance(found, RegistryError):
                notes.append(pin_failure_note(ref, found))
        return Lookups(verdicts, digests, tuple(notes), signature_verdicts, attestation_verdicts)


def _retrieved(done: asyncio.Future[None]) -> None:
    """A task's outcome, taken: nobody may be waiting for it any more."""
    if not done.cancelled() and done.exception() is not None:
        log.error("base image refresh failed", error=repr(done.exception()))


def _decision_deadline(policy: Policy, ends: float) -> AbstractAsyncContextManager[object]:
    """The deadline of the registry's part of one decision (``registry.lookupTimeoutSeconds``)."""
    return deadline(policy.registry.lookup_timeout, DECISION_LOOKUPS, "registry.lookupTimeoutSeconds", at=ends)


def _moved_tags(
    base: Mapping[str, BaseImageVerdict], *found: Mapping[str, tuple[SignatureVerdict, ...]]
) -> dict[str, list[str]]:
    """The references whose checks judged more than one digest, with those digests (sorted)."""
    seen: dict[str, set[str]] = {}
    for ref, verdict in base.items():
        if verdict.digest is not None:
            seen.setdefault(ref, set()).add(verdict.digest)
    for verdicts in found:
        for ref, judged in verdicts.items():
            seen.setdefault(ref, set()).update(v.digest for v in judged if v.digest is not None)
    return {ref: sorted(digests) for ref, digests in seen.items() if len(digests) > 1}


def _registry_failure(reference: str, exc: RegistryError, what: str, rule: SignatureRule) -> SignatureVerdict:
    """A signatures (attestations) rule's verdict when the registry could not be asked: its ``onError``."""
    reason = tenant_reason(reference, exc)
    if rule.on_error is DenyOrAllow.ALLOW and exc.kind not in _NOT_A_REGISTRY_FAILURE:
        return SignatureVerdict(
            True, f"{what} not verified: {reason}; allowed by {rule.name} onError: allow", None, rule.mode, True
        )
    return SignatureVerdict(
        False, f"{what} not verified: {reason}; denied by {rule.name} onError: {rule.on_error}", None, rule.mode
    )


# Kinds whose message is imagegate's own words about the image (what in an index it refuses, or
# that it did not ask): told in full, and not a registry failure that registry.onError covers.
_NOT_A_REGISTRY_FAILURE = frozenset({RegistryErrorKind.REFUSED, RegistryErrorKind.NOT_CONTACTED})
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


def needs_registry(decision: Decision | None, *, pins: bool) -> bool:
    """Whether :func:`settle` has registry lookups to do for a first, lookup-free decision."""
    return decision is not None and bool(
        decision.base_checks_needed
        or decision.signature_checks_needed
        or decision.attestation_checks_needed
        or (pins and decision.pins_needed)
    )


async def settle(
    gate: RegistryGate,
    policy: Policy,
    evaluate: Callable[[Lookups], T],
    decision_of: Callable[[T], Decision | None],
    *,
    pins: bool,
    first: T | None = None,
) -> T:
    """Evaluate, then add the registry's part only where the decision needs it.

    The lookup-free decision says everything the registry is asked (base, signature and attestation checks,
    and with ``pins`` the digests of the images that are, or will be once their base check
    passes, allowed), so ``evaluate`` runs once more at most, with all of it. ``first`` is the
    lookup-free result when the caller already has it.
    """
    result = evaluate(NO_LOOKUPS) if first is None else first
    decision = decision_of(result)
    if decision is None or not needs_registry(decision, pins=pins):
        return result
    return evaluate(await gate.lookups(policy, decision, pins=pins))
