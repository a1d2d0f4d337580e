"""The policy model: one YAML document for the platform, one for the BYOC grants.

Loading is pure (text in, :class:`Policy` out); reading files and reloading them live
is the shell's job (:mod:`imagegate.shell.policy_source`). Every error names the
source, the line and the key.

The four choices a platform has are all settings here:

* gate closed: ``byoc.default: deny`` and no grants;
* gate open (BYOC for everyone): ``byoc.default: allow``;
* open for a limited time: grants with ``expires``;
* open for selected tools: grants per namespace, optionally limited to ``registries``.

What it holds, in order: the msgspec types of the policy, grants and identities documents
(``*Doc``); their compiled forms (``Policy``, ``Grant``, ``ImageClass``...); one loader per
section, each error worded for the documents and given its line (msgspec's own errors explained
by core/msgspec_errors.py); the grants file's history; and the writing of grants back as YAML.
A section's type and its loader sit far apart (the types first, the loaders below), not side
by side.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from fnmatch import fnmatchcase
from functools import lru_cache
from typing import Annotated, Any, Literal

import msgspec

from imagegate.core.attestations import PROVENANCE_TYPES, AttestationRule, AttestationsConfig
from imagegate.core.contents.limits import ContentLimits
from imagegate.core.contents.policy import ContentConfig, ContentDoc, Proof, load_content
from imagegate.core.msgspec_errors import explain
from imagegate.core.names import namespace_name_error
from imagegate.core.patterns import (
    PatternError,
    PatternSet,
    PatternTemplate,
    RepositoryPattern,
    parse_pattern,
    parse_template,
)
from imagegate.core.placeholders import fill_placeholders, has_placeholder, template_problem
from imagegate.core.platforms import PlatformError, parse_platform
from imagegate.core.podprofile import (
    HOST_PATH_FORM,
    MAX_ID,
    HostPathMatch,
    HostPathRule,
    Identity,
    PodSecurityOverride,
    PodSecuritySettings,
    ToolProfile,
    clean_host_path,
    valid_tool_id,
)
from imagegate.core.podsecurity import Level, parse_version
from imagegate.core.provenance import ProvenanceRule
from imagegate.core.records import DenyOrAllow, Mode
from imagegate.core.reference import (
    TAG_RE,
    Reference,
    ReferenceError,
    docker_form,
    parse_docker_ref,
    parse_normalized,
)
from imagegate.core.signatures import KeylessIdentity, SignatureRule, SignaturesConfig
from imagegate.core.workloads import DEFAULT_MAX_CONTAINERS, DEFAULT_MAX_VOLUMES, LIMIT_BOUNDS, ObjectLimits
from imagegate.core.yamldoc import DocumentError, LocatedDocument, load_yaml_document

__all__ = [
    "DEFAULT_LOOKUP_TIMEOUT",
    "DEFAULT_PLATFORMS",
    "DEFAULT_REGISTRY_TIMEOUT",
    "Grant",
    "GrantAction",
    "GrantEvent",
    "GrantField",
    "GrantsFile",
    "LabelSelector",
    "Mode",
    "NamespaceScope",
    "PinStyle",
    "Policy",
    "PolicyError",
    "WhenDropped",
    "grant_entry",
    "load_grant_entry",
    "load_grants",
    "load_grants_file",
    "load_identities",
    "load_policy",
]

PolicyError = DocumentError

# A CSI driver name as the API validates it (a DNS subdomain in any case, at most 63 characters);
# the kubelet finds the driver by its exact name, so entries match exactly.
_CSI_DRIVER_RE = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9.]{0,61}[A-Za-z0-9])?")
_GLOB_NAME_RE = re.compile(r"[a-z0-9*?\[\]!-]+")


# --- the documents as written (camelCase keys, unknown keys refused) -----------------


# A grant with this many days left or fewer warns on every admission in its namespace.
DEFAULT_EXPIRY_WARNING_DAYS = 14


class _Doc(msgspec.Struct, rename="camel", forbid_unknown_fields=True, omit_defaults=True):
    pass


class SelectorRequirementDoc(_Doc):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = []


class LabelSelectorDoc(_Doc):
    match_labels: dict[str, str] = {}
    match_expressions: list[SelectorRequirementDoc] = []


class NamespacesDoc(_Doc):
    include: list[str] = msgspec.field(default_factory=lambda: ["*"])
    exclude: list[str] = []
    selector: LabelSelectorDoc | None = None


class GrantDoc(_Doc):
    namespace: str
    registries: list[str] | None = None
    expires: dt.date | None = None
    reason: str = ""
    requested_by: str = ""
    ticket: str = ""
    require_base_image: bool = False
    mode: Mode | None = None
    signed_by: str | None = None
    proof: Proof | None = None  # how its images show they are integrated (core/contents/policy.py)


class GrantField(StrEnum):
    """The keys of a grant a policy can require on every grant (``byoc.requiredGrantFields``)."""

    EXPIRES = "expires"
    REASON = "reason"
    TICKET = "ticket"
    REQUESTED_BY = "requestedBy"
    REGISTRIES = "registries"
    SIGNED_BY = "signedBy"


class GrantAction(StrEnum):
    """What ended or changed a grant, in a grants file's ``history``."""

    REVOKED = "revoked"
    RENEWED = "renewed"
    REPLACED = "replaced"


class GrantEventDoc(_Doc):
    """One entry of a grants file's ``history``: who did what to which grant, when and why."""

    action: GrantAction
    namespace: str
    at: Annotated[dt.datetime, msgspec.Meta(tz=True)]
    by: str
    grant: GrantDoc  # the grant as it was before
    reason: str = ""


class ByocDoc(_Doc):
    default: DenyOrAllow = DenyOrAllow.DENY
    require_base_image: bool = False
    warn_before_expiry_days: Annotated[int, msgspec.Meta(ge=0, le=366)] | None = DEFAULT_EXPIRY_WARNING_DAYS
    # keys every grant must have (expires, reason, ticket: a time-boxed platform's grants all end)
    required_grant_fields: list[GrantField] = []
    grants: list[GrantDoc] = []
    grants_file: str | None = None


class HostPathDoc(_Doc):
    path: str
    read_only: bool = False
    match: HostPathMatch = HostPathMatch.EXACT  # "below" only where no tenant can write (docs/policy.md)


class IdentityDoc(_Doc):
    uid: int
    gid: int | None = None


class WhenDropped(StrEnum):
    """What a tool pod gets when the kubelet cannot keep supplementalGroupsPolicy: Strict (toolProfile)."""

    DENY = "deny"
    WARN = "warn"
    AUDIT = "audit"


class SupplementalGroupsPolicyDoc(_Doc):
    when_dropped: WhenDropped = WhenDropped.DENY


class ToolProfileDoc(_Doc):
    namespaces: list[str] = msgspec.field(default_factory=lambda: ["tool-*"])
    identities: dict[str, IdentityDoc] = {}
    identities_file: str | None = None
    uid_label: str | None = None
    gid_label: str | None = None
    host_paths: list[HostPathDoc] = []
    csi_drivers: list[str] = []
    supplemental_groups_policy: SupplementalGroupsPolicyDoc = msgspec.field(default_factory=SupplementalGroupsPolicyDoc)


class PodSecurityOverrideDoc(_Doc):
    namespaces: list[str]
    level: Level | None = None
    version: str | None = None
    mode: Mode | None = None


class PodSecurityDoc(_Doc):
    level: Level = Level.RESTRICTED
    version: str = "latest"
    mode: Mode = Mode.ENFORCE
    mutate: bool = True
    exempt: list[str] = []
    overrides: list[PodSecurityOverrideDoc] = []
    tool_profile: ToolProfileDoc | None = None


class IdentitiesDoc(_Doc):
    api_version: str
    kind: Literal["ToolIdentities"]
    identities: dict[str, IdentityDoc] = {}


# The registry section's defaults, one spelling each: the document, the config and the client use them.
DEFAULT_REGISTRY_TIMEOUT = 2.5  # seconds per request, body included; half the webhook's timeoutSeconds
DEFAULT_PLATFORMS: tuple[str, ...] = ("linux/amd64",)
# One lookup's whole time (an image, its signatures; the registry's part of one decision): under
# the webhooks' timeoutSeconds (5 in deploy/), so that onError answers before the API server gives up.
DEFAULT_LOOKUP_TIMEOUT = 4.0


class RegistryDoc(_Doc):
    timeout_seconds: float = DEFAULT_REGISTRY_TIMEOUT
    lookup_timeout_seconds: float | None = None  # default: DEFAULT_LOOKUP_TIMEOUT, or timeoutSeconds when longer
    on_error: DenyOrAllow = DenyOrAllow.DENY
    platforms: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_PLATFORMS))
    ca_file: str | None = None
    credentials_file: str | None = None
    # "any", or registries beyond those the policy names (checked by _contact_entries)
    contact: str | list[str] | None = None
    contents: ContentLimits = msgspec.field(default_factory=ContentLimits)  # reading images' files


class BaseImagesDoc(_Doc):
    trusted: list[str] = []
    remember_days: int = 90
    refresh_minutes: int = 60
    require_for: list[str] = []


class KeylessIdentityDoc(_Doc):
    issuer: str
    subject: str | None = None
    subject_reg_exp: str | None = None


class SignatureRuleDoc(_Doc):
    images: list[str]
    keys: list[str] = []
    identities: list[KeylessIdentityDoc] = []
    count: int = 1
    mode: Mode | None = None
    on_error: DenyOrAllow | None = None


class SignaturesDoc(_Doc):
    mode: Mode | None = None  # default: the policy's
    on_error: DenyOrAllow = DenyOrAllow.DENY
    trusted_root: str | None = None
    rules: list[SignatureRuleDoc] = []


class AttestationRuleDoc(SignatureRuleDoc):
    builder_ids: list[str] = []
    build_types: list[str] = []
    sources: list[str] = []
    predicate_types: list[str] | None = None  # default: SLSA v0.2 and v1


class AttestationsDoc(_Doc):
    mode: Mode | None = None  # default: the policy's
    on_error: DenyOrAllow = DenyOrAllow.DENY
    trusted_root: str | None = None
    rules: list[AttestationRuleDoc] = []


class TagsDoc(_Doc):
    disallow: list[str] = []
    require_tag: bool = False
    require_digest: bool = False
    exempt: list[str] = []


class PinStyle(StrEnum):
    """How /mutate writes a pinned image: ``repo:tag@sha256:...`` (the tag kept for people) or ``repo@sha256:...``."""

    TAG_AND_DIGEST = "tag-and-digest"
    DIGEST = "digest"


class PinningDoc(_Doc):
    enabled: bool = False
    style: PinStyle = PinStyle.TAG_AND_DIGEST
    namespaces: list[str] = msgspec.field(default_factory=lambda: ["*"])


class LimitsDoc(_Doc):
    max_containers: int = DEFAULT_MAX_CONTAINERS
    max_volumes: int = DEFAULT_MAX_VOLUMES


class PolicyDoc(_Doc):
    api_version: str
    kind: Literal["ImagePolicy"]
    mode: Mode = Mode.ENFORCE
    trusted: list[str] = []
    blocked: list[str] = []
    byoc: ByocDoc = msgspec.field(default_factory=ByocDoc)
    namespaces: NamespacesDoc = msgspec.field(default_factory=NamespacesDoc)
    pod_security: PodSecurityDoc | None = None
    registry: RegistryDoc = msgspec.field(default_factory=RegistryDoc)
    base_images: BaseImagesDoc = msgspec.field(default_factory=BaseImagesDoc)
    pinning: PinningDoc = msgspec.field(default_factory=PinningDoc)
    tags: TagsDoc = msgspec.field(default_factory=TagsDoc)
    signatures: SignaturesDoc = msgspec.field(default_factory=SignaturesDoc)
    attestations: AttestationsDoc = msgspec.field(default_factory=AttestationsDoc)
    limits: LimitsDoc = msgspec.field(default_factory=LimitsDoc)
    content: ContentDoc = msgspec.field(default_factory=ContentDoc)


class GrantsDoc(_Doc):
    api_version: str
    kind: Literal["ImageGrants"]
    grants: list[GrantDoc] = []
    history: list[GrantEventDoc] = []


SUPPORTED_API_VERSIONS = ("imagegate.toolforge.org/v1",)

# --- the compiled policy --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """Kubernetes label-selector semantics (matchLabels AND every matchExpression)."""

    match_labels: Mapping[str, str]
    expressions: tuple[tuple[str, str, frozenset[str]], ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.match_labels.items()):
            return False
        for key, operator, values in self.expressions:
            present = key in labels
            if operator == "In" and not (present and labels[key] in values):
                return False
            if operator == "NotIn" and present and labels[key] in values:
                return False
            if operator == "Exists" and not present:
                return False
            if operator == "DoesNotExist" and present:
                return False
        return True


@lru_cache(maxsize=16384)
def _names_in_scope(include: tuple[str, ...], exclude: tuple[str, ...], name: str) -> bool:
    """Name globs, remembered: every admission asks this about one of a few thousand namespaces."""
    if any(fnmatchcase(name, pattern) for pattern in exclude):
        return False
    return any(fnmatchcase(name, pattern) for pattern in include)


@dataclass(frozen=True, slots=True)
class NamespaceScope:
    """Which namespaces the policy governs."""

    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    selector: LabelSelector | None = None

    def governs(self, name: str, labels: Mapping[str, str] | None) -> bool:
        """Unknown labels (``None``) with a selector set count as governed: fail closed."""
        if not _names_in_scope(self.include, self.exclude, name):
            return False
        if self.selector is None or labels is None:
            return True
        return self.selector.matches(labels)


@dataclass(frozen=True, slots=True)
class Grant:
    """One BYOC exception: ``namespace`` may use images beyond the trusted list."""

    namespace: str
    registries: PatternSet | None
    expires: dt.date | None
    reason: str
    requested_by: str
    ticket: str
    require_base_image: bool
    mode: Mode | None
    source: str
    # A PEM public key file (placeholders filled in): the images this grant admits must carry a
    # cosign signature by it, e.g. the tool's own key (the rule: SignaturesConfig.grant_rules).
    signed_by: str | None = None
    proof: Proof | None = (
        None  # layers, content, either or both (None: requireBaseImage and the content rules as written)
    )
    # where it was written, for errors found after loading (a second grant, a required key)
    document: str = ""
    line: int | None = None
    path: str = "$"
    # How an image it admits was allowed, in the operator's words (check, audit): worked out once
    # per grant, never per image (the admission piece reads it on every granted image).
    allowed_by: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "allowed_by", f"grant for {self.namespace} ({self.described(where=True)})")

    def described(self, *, where: bool = False) -> str:
        """The grant in the policy's words (its ticket); ``where`` adds the file and line it is in,
        for the operator's own output (``check``), never for what a tenant reads."""
        parts = [f"granted in {self.source}"] if where else []
        if self.ticket:
            parts.append(f"ticket {self.ticket}")
        return ", ".join(parts)

    def error(self, key: str, message: str) -> DocumentError:
        """An error about ``key`` of this grant, naming the line it was written on."""
        shown = f"{self.path}.{key}".removeprefix("$.")
        return DocumentError(self.document or self.source, self.line, shown, message)

    def missing(self, required: Sequence[GrantField]) -> list[GrantField]:
        """Which of the ``required`` keys this grant leaves out (or leaves blank)."""
        present = {
            GrantField.EXPIRES: self.expires is not None,
            GrantField.REASON: bool(self.reason.strip()),
            GrantField.TICKET: bool(self.ticket.strip()),
            GrantField.REQUESTED_BY: bool(self.requested_by.strip()),
            GrantField.REGISTRIES: self.registries is not None,
            GrantField.SIGNED_BY: self.signed_by is not None,
        }
        return [key for key in required if not present[key]]

    def layers_required(self, byoc_require_base_image: bool) -> bool:
        """Whether its images must be proved built on a trusted base: its ``proof`` when it has one
        (``layers``, ``both``: yes; ``content``: no; ``either``: the content piece asks, see
        core/contents/admission.py), else ``requireBaseImage``, its own or ``byoc``'s."""
        if self.proof is not None:
            return self.proof in (Proof.LAYERS, Proof.BOTH)
        return self.require_base_image or byoc_require_base_image

    @property
    def signature_rule(self) -> str | None:
        """The name of this grant's ``signedBy`` rule (``SignaturesConfig.by_grant[namespace]``), in messages."""
        # The policy's words only: a tenant reads it in a denial, never the grants file's path.
        return None if self.signed_by is None else f"signedBy of the grant for {self.namespace} ({self.signed_by})"

    def expired(self, now: dt.datetime) -> bool:
        """A grant is good through the whole of its ``expires`` day, in UTC."""
        return self.expires is not None and now.astimezone(dt.UTC).date() > self.expires

    def days_left(self, now: dt.datetime) -> int | None:
        if self.expires is None:
            return None
        return (self.expires - now.astimezone(dt.UTC).date()).days

    def expiring(self, now: dt.datetime, days: int | None) -> bool:
        """Still good, and ending within ``days`` days (``None``: never said to be expiring)."""
        left = self.days_left(now)
        return days is not None and left is not None and 0 <= left <= days


@dataclass(frozen=True, slots=True)
class RegistryConfig:
    timeout: float = DEFAULT_REGISTRY_TIMEOUT  # one request, its whole answer
    on_error: DenyOrAllow = DenyOrAllow.DENY
    platforms: tuple[str, ...] = DEFAULT_PLATFORMS
    ca_file: str | None = None
    credentials_file: str | None = None
    contact_any: bool = False  # registry.contact: any
    contact: tuple[RepositoryPattern, ...] = ()  # registry.contact's registries, beyond those the policy names
    lookup_timeout: float = DEFAULT_LOOKUP_TIMEOUT  # registry.lookupTimeoutSeconds
    contents: ContentLimits = field(default_factory=ContentLimits)  # registry.contents: reading images' files


@dataclass(frozen=True, slots=True)
class ContactScope:
    """The registries imagegate may contact for base verification and pinning.

    A tenant writes the image, and the image names its registry: contacting whatever it names
    would make imagegate connect to any host its network reaches, on the tenant's behalf. So
    imagegate contacts only the registries the policy names (``trusted``, the grants'
    ``registries``, ``baseImages``) and those ``registry.contact`` adds, or every registry when
    it says ``any``. Registries compare by :func:`~imagegate.core.reference.canonical_registry`.
    """

    any_registry: bool
    registries: frozenset[str]
    globs: tuple[str, ...] = ()

    def allows(self, ref: Reference) -> bool:
        if self.any_registry:
            return True
        host = ref.registry_host
        return host in self.registries or any(fnmatchcase(host, glob) for glob in self.globs)


def contact_refusal(ref: Reference) -> str:
    """Why imagegate did not ask ``ref``'s registry: said the same way everywhere."""
    return (
        f"imagegate does not contact the registry {ref.registry_host}: the policy names it nowhere "
        "(trusted, a grant's registries, baseImages, registry.contact)"
    )


@dataclass(frozen=True, slots=True)
class BaseImagesConfig:
    trusted: tuple[Reference, ...] = ()
    remember_days: int = 90
    refresh_minutes: int = 60
    require_for: PatternSet = field(default_factory=lambda: PatternSet(()))


@dataclass(frozen=True, slots=True)
class PinningConfig:
    enabled: bool = False
    style: PinStyle = PinStyle.TAG_AND_DIGEST
    namespaces: tuple[str, ...] = ("*",)

    def applies_to(self, namespace: str) -> bool:
        return self.enabled and any(fnmatchcase(namespace, pattern) for pattern in self.namespaces)

    def pinned(self, ref: Reference, digest: str) -> str:
        if self.style is PinStyle.DIGEST:
            return f"{ref.repository}@{digest}"
        return str(ref.pinned(digest))


@dataclass(frozen=True, slots=True)
class TagRules:
    """Rules on how an image is named, whatever its registry."""

    disallow: frozenset[str] = frozenset()
    require_tag: bool = False
    require_digest: bool = False
    exempt: PatternSet = field(default_factory=lambda: PatternSet(()))

    @property
    def active(self) -> bool:
        return bool(self.disallow) or self.require_tag or self.require_digest


class ImageClass(msgspec.Struct, frozen=True):
    """What a policy says about an image name in any namespace: worked out once per name.

    The name is parsed here, once: ``written`` as written (the tag rules judge that: ``nginx``
    names no tag), ``ref`` as the runtime pulls it (every other rule, and pinning).
    """

    ref: Reference | None
    text: str | None  # the normalized reference
    error: str | None  # why the name is not a valid reference
    blocked: str | None = None  # the blocked entry it matches
    trusted_by: str | None = None  # "trusted <entry>" when a trusted entry covers it
    base_required: bool = False  # baseImages.requireFor covers it
    contactable: bool = False  # imagegate may ask its registry (Policy.contact_scope)
    written: Reference | None = None  # normalized, but without the :latest the runtime adds
    tag_exempt: bool = False  # tags.exempt covers it
    signed_required: bool = False  # a signatures rule covers it
    attested_required: bool = False  # an attestations rule covers it


IMAGE_CLASS_CACHE_SIZE = 20_000


@dataclass(frozen=True, slots=True)
class Policy:
    """A validated policy, ready for :func:`imagegate.core.decide.decide`."""

    mode: Mode
    trusted: PatternSet
    blocked: PatternSet
    byoc_default: DenyOrAllow
    byoc_require_base_image: bool
    grants: tuple[Grant, ...]
    namespaces: NamespaceScope
    # grants with this many days left or fewer warn on every admission in their namespace
    warn_before_expiry_days: int | None = DEFAULT_EXPIRY_WARNING_DAYS
    grants_file: str | None = None
    source: str = "<built-in>"
    grants_by_namespace: Mapping[str, tuple[Grant, ...]] = field(default_factory=dict)
    required_grant_fields: tuple[GrantField, ...] = ()
    pod_security: PodSecuritySettings | None = None
    identities_file: str | None = None
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    base_images: BaseImagesConfig = field(default_factory=BaseImagesConfig)
    pinning: PinningConfig = field(default_factory=PinningConfig)
    tags: TagRules = field(default_factory=TagRules)
    signatures: SignaturesConfig = field(default_factory=SignaturesConfig)
    attestations: AttestationsConfig = field(default_factory=AttestationsConfig)
    limits: ObjectLimits = field(default_factory=ObjectLimits)
    content: ContentConfig = field(default_factory=ContentConfig)

    # classify()'s answers: a policy never changes, so neither do they (not copied by replace())
    _image_classes: dict[str, ImageClass] = field(default_factory=dict, init=False, repr=False, compare=False)
    # contact_scope(), worked out on first use from the policy as it is (so not copied by replace())
    _contact_scope: list[ContactScope] = field(default_factory=list, init=False, repr=False, compare=False)

    def contact_scope(self) -> ContactScope:
        """The registries imagegate may contact under this policy (derived: one source of truth)."""
        if not self._contact_scope:
            config = self.registry
            entries: list[RepositoryPattern | PatternTemplate] = [*self.trusted, *config.contact]
            for grant in self.grants:
                entries.extend(grant.registries.patterns if grant.registries is not None else ())
            entries.extend(self.base_images.require_for)
            # signatures and attestations are fetched from the image's own registry
            for rule in (*self.signatures.rules, *self.attestations.signers.rules):
                entries.extend(rule.images)
            named = [entry.registry for entry in entries]
            exact = {host for host, glob in named if not glob}
            exact.update(ref.registry_host for ref in self.base_images.trusted)
            globs = tuple(dict.fromkeys(host for host, glob in named if glob))
            self._contact_scope.append(ContactScope(config.contact_any, frozenset(exact), globs))
        return self._contact_scope[0]

    def grants_for(self, namespace: str) -> tuple[Grant, ...]:
        return self.grants_by_namespace.get(namespace, ())

    def classify(self, image: str) -> ImageClass:
        """The image's reference and the blocked/trusted entries covering it (remembered)."""
        known = self._image_classes.get(image)
        if known is not None:
            return known
        try:
            written = parse_normalized(image)
        except ReferenceError as exc:
            found = ImageClass(None, None, str(exc))
        else:
            ref = docker_form(written)
            blocked = self.blocked.first_match(ref)
            trusted = self.trusted.first_match(ref)
            found = ImageClass(
                ref,
                str(ref),
                None,
                blocked=str(blocked) if blocked is not None else None,
                trusted_by=f"trusted {trusted}" if trusted is not None else None,
                base_required=self.base_images.require_for.first_match(ref) is not None,
                contactable=self.contact_scope().allows(ref),
                written=written,
                tag_exempt=self.tags.exempt.first_match(ref) is not None,
                signed_required=bool(self.signatures.rules) and bool(self.signatures.rules_for(ref)),
                attested_required=bool(self.attestations.rules) and bool(self.attestations.rules_for(ref)),
            )
        if len(self._image_classes) >= IMAGE_CLASS_CACHE_SIZE:
            self._image_classes.clear()  # a flood of distinct names: start over rather than grow
        self._image_classes[image] = found
        return found

    def with_grants(self, extra: Sequence[Grant], *, what_if: bool = False) -> Policy:
        """The same policy with the grants of a grants file added to the inline ones.

        :class:`PolicyError` for a second grant of one namespace, or a grant without a key
        ``byoc.requiredGrantFields`` requires. ``what_if``: grants nobody wrote (``audit
        --compare``'s presets) are not held to the required keys.
        """
        return _assemble(self, (*self.grants, *extra), what_if=what_if)

    def check_grant(self, grant: Grant) -> None:
        """:class:`PolicyError` when ``grant`` lacks a key the policy requires on every grant."""
        missing = grant.missing(self.required_grant_fields)
        if missing:
            wanted = ", ".join(self.required_grant_fields)
            raise grant.error(
                missing[0],
                f"missing; the policy's byoc.requiredGrantFields requires {wanted} on every grant"
                + (f" (also missing: {', '.join(missing[1:])})" if missing[1:] else ""),
            )

    def identities_missing(self) -> str | None:
        """Why every tool pod will be denied for want of an identity, or ``None``.

        The tool profile requires each tool's uid/gid; with neither an identities map nor a
        namespace label to read them from, no tool pod can pass. That is a deployment gone
        wrong, so the commands and the webhook say it once, up front.
        """
        settings = self.pod_security
        if settings is None or settings.tool is None or settings.tool.identities or settings.tool.uid_label:
            return None
        return (
            "no tool identities are loaded (--identities, or podSecurity.toolProfile.identitiesFile or "
            f"uidLabel): every pod in a tool namespace ({', '.join(settings.tool.namespaces)}) is denied"
        )

    def with_identities(self, extra: Mapping[str, Identity]) -> Policy:
        """The same policy with the tool identities of an identities file added."""
        settings = self.pod_security
        if settings is None or settings.tool is None:
            return self
        tool = replace(settings.tool, identities={**settings.tool.identities, **extra})
        return replace(self, pod_security=replace(settings, tool=tool))


def _one_per_namespace(grants: Sequence[Grant]) -> dict[str, list[Grant]]:
    """The grants by namespace; :class:`PolicyError` naming both when a namespace has two."""
    by_namespace: dict[str, list[Grant]] = {}
    for grant in grants:
        earlier = by_namespace.get(grant.namespace)
        if earlier:  # which one would apply? Their registries, expiry and checks differ
            raise grant.error(
                "namespace",
                f"{grant.namespace} has a grant already, at {earlier[0].source}: one grant per namespace "
                "(merge the two, or revoke one)",
            )
        by_namespace[grant.namespace] = [grant]
    return by_namespace


def _assemble(base: Policy, grants: Sequence[Grant], *, what_if: bool = False) -> Policy:
    if not what_if:
        for grant in grants:
            base.check_grant(grant)
    by_namespace = _one_per_namespace(grants)
    return replace(
        base,
        grants=tuple(grants),
        grants_by_namespace={k: tuple(v) for k, v in by_namespace.items()},
        signatures=base.signatures.with_grant_rules(_grant_signature_rules(base, grants)),
    )


def _grant_signature_rules(base: Policy, grants: Sequence[Grant]) -> dict[str, SignatureRule]:
    """A rule per grant with ``signedBy``: one signature by that key on every image the grant admits,
    in the grant's mode (else the policy's) and the signatures section's ``onError``."""
    rules: dict[str, SignatureRule] = {}
    for grant in grants:
        name = grant.signature_rule
        if name is None or grant.signed_by is None:
            continue
        rules[grant.namespace] = SignatureRule(
            name,
            grant.registries or PatternSet(()),  # asked for by grant, for the images the grant admits
            (grant.signed_by,),
            (),
            1,
            grant.mode if grant.mode is not None else base.mode,
            base.signatures.on_error,
        )
    return rules


# --- loading ---------------------------------------------------------------------------


def _convert(doc: LocatedDocument, kind: type[Any], hint: str) -> Any:
    if not isinstance(doc.data, dict):
        raise doc.error("$", f"expected a mapping ({hint}), got {type(doc.data).__name__}")
    try:
        return msgspec.convert(doc.data, kind)
    except UnicodeEncodeError:
        raise doc.error("$", "holds text that is not valid Unicode (a lone surrogate escape?)") from None
    except msgspec.ValidationError as exc:
        found = explain(exc, doc.data, kind)
        message = found.message
        if found.unknown_key is not None:
            message = f"unknown key {found.unknown_key!r} (a typo? see docs/policy.md)"
        elif "got `datetime`" in message or "RFC3339 encoded date" in message:
            message = "write a date (2026-12-31): a grant is good through that whole day, UTC"
        elif found.allowed:
            message = f"{message}; write one of: {', '.join(found.allowed)}"
        raise doc.error(found.path, message) from None


def _patterns(doc: LocatedDocument, path: str, entries: Sequence[str], *, templates: bool = False) -> PatternSet:
    """The entries at ``path``; with ``templates``, they may name ``{namespace}``/``{tool}``."""
    plain: list[RepositoryPattern] = []
    found: list[PatternTemplate] = []
    written: list[RepositoryPattern | PatternTemplate] = []
    for index, entry in enumerate(entries):
        try:
            if templates and has_placeholder(entry):
                found.append(parse_template(entry))
                written.append(found[-1])
            else:
                plain.append(parse_pattern(entry))
                written.append(plain[-1])
        except PatternError as exc:
            raise doc.error(f"{path}[{index}]", str(exc)) from None
    return PatternSet(tuple(plain), tuple(found), tuple(written))


def _check_name_globs(doc: LocatedDocument, path: str, names: Sequence[str]) -> tuple[str, ...]:
    for index, name in enumerate(names):
        if not _GLOB_NAME_RE.fullmatch(name):
            raise doc.error(f"{path}[{index}]", f"{name!r} is not a namespace name or glob")
    return tuple(names)


def _selector(doc: LocatedDocument, path: str, selector: LabelSelectorDoc) -> LabelSelector:
    expressions = []
    for index, req in enumerate(selector.match_expressions):
        needs_values = req.operator in ("In", "NotIn")
        if needs_values != bool(req.values):
            want = "needs values" if needs_values else "takes no values"
            raise doc.error(f"{path}.matchExpressions[{index}]", f"operator {req.operator} {want}")
        expressions.append((req.key, req.operator, frozenset(req.values)))
    return LabelSelector(dict(selector.match_labels), tuple(expressions))


def _grant(doc: LocatedDocument, where: str, grant: GrantDoc) -> Grant:
    if (problem := namespace_name_error(grant.namespace)) is not None:
        raise doc.error(f"{where}.namespace", problem)
    registries = None
    if grant.registries is not None:
        if not grant.registries:
            raise doc.error(
                f"{where}.registries",
                "an empty list allows nothing; leave 'registries' out to allow any registry",
            )
        written = _patterns(doc, f"{where}.registries", grant.registries, templates=True)
        # A grant names one namespace: its placeholders are filled in once, here.
        registries = written.for_namespace(grant.namespace)
        if len(registries.patterns) != len(written.patterns) + len(written.templates):
            raise doc.error(
                f"{where}.registries",
                f"{{tool}} stands for a tool's name, and {grant.namespace} is not a tool namespace (tool-<name>)",
            )
    signed_by = None
    if grant.signed_by is not None:
        if not grant.signed_by.strip():
            raise doc.error(f"{where}.signedBy", "an empty path: name a PEM public key file, or leave it out")
        problem = template_problem(grant.signed_by)
        if problem is not None:
            raise doc.error(f"{where}.signedBy", problem)
        signed_by = fill_placeholders(grant.signed_by, grant.namespace)
        if signed_by is None:
            raise doc.error(
                f"{where}.signedBy",
                f"{{tool}} stands for a tool's name, and {grant.namespace} is not a tool namespace (tool-<name>)",
            )
    if grant.proof not in (None, Proof.LAYERS) and grant.require_base_image:
        raise doc.error(
            f"{where}.proof",
            f"requireBaseImage asks proof by layers, and proof says {grant.proof.value}: write proof alone",
        )
    line = doc.line_of(where)
    return Grant(
        document=doc.source,
        line=line,
        path=where,
        namespace=grant.namespace,
        registries=registries,
        expires=grant.expires,
        reason=grant.reason,
        requested_by=grant.requested_by,
        ticket=grant.ticket,
        require_base_image=grant.require_base_image,
        mode=grant.mode,
        source=f"{doc.source}:{line}" if line else doc.source,
        signed_by=signed_by,
        proof=grant.proof,
    )


def _grants(doc: LocatedDocument, path: str, grants: Sequence[GrantDoc]) -> tuple[Grant, ...]:
    return tuple(_grant(doc, f"{path}[{index}]", grant) for index, grant in enumerate(grants))


def load_grant_entry(entry: Mapping[str, Any], source: str) -> Grant:
    """One grant as data (``grants add``'s new entry), validated as in a grants document.

    Errors name ``source`` and the key, without a line: the entry is not in a file yet.
    """
    doc = LocatedDocument(source, dict(entry), {})
    return _grant(doc, "$", _convert(doc, GrantDoc, "a grant"))


# What each of imagegate's documents is, in the words of its options (--policy, --grants, --identities).
_DOCUMENT_ROLES = {"ImagePolicy": "policy", "ImageGrants": "grants file", "ToolIdentities": "identities file"}


def _document(text: str, source: str, kind: str) -> LocatedDocument:
    """The one YAML document of ``text``, which must say what it is (apiVersion and kind).

    An empty or comment-only file is an error, not an empty policy: a ConfigMap emptied
    by mistake must never replace the policy in force (it would deny, or allow, everything).
    """
    doc = load_yaml_document(text, source)
    header = f"apiVersion: {SUPPORTED_API_VERSIONS[0]} and kind: {kind}"
    if doc.data is None:
        raise doc.error("$", f"the document is empty (or only comments): it must start with {header}")
    if not isinstance(doc.data, dict):
        raise doc.error("$", f"expected a mapping (the {kind} document), got {type(doc.data).__name__}")
    for key in ("apiVersion", "kind"):
        if key not in doc.data:
            raise doc.error("$", f"missing {key}: the document must start with {header}")
    if doc.data["kind"] != kind:
        other = _DOCUMENT_ROLES.get(str(doc.data["kind"]))
        hint = f" ({'an' if other[0] in 'aeiou' else 'a'} {other}: is it given in the wrong place?)" if other else ""
        raise doc.error("$.kind", f"expected kind {kind}, got {doc.data['kind']!r}{hint}")
    if doc.data["apiVersion"] not in SUPPORTED_API_VERSIONS:
        raise doc.error(
            "$.apiVersion",
            f"unsupported apiVersion {doc.data['apiVersion']!r}; this imagegate reads {SUPPORTED_API_VERSIONS[0]}",
        )
    return doc


def _version(doc: LocatedDocument, path: str, text: str) -> tuple[int, int]:
    try:
        return parse_version(text)
    except ValueError as exc:
        raise doc.error(path, str(exc)) from None


def _identities(doc: LocatedDocument, path: str, identities: Mapping[str, IdentityDoc]) -> dict[str, Identity]:
    compiled = {}
    for namespace, identity in identities.items():
        if (problem := namespace_name_error(namespace)) is not None:
            raise doc.error(f"{path}.{namespace}", problem)
        gid = identity.gid if identity.gid is not None else identity.uid
        if not (valid_tool_id(identity.uid) and valid_tool_id(gid)):
            raise doc.error(f"{path}.{namespace}", f"a tool runs as a non-root uid and gid (1 to {MAX_ID})")
        compiled[namespace] = Identity(identity.uid, gid)
    return compiled


def _host_path_rules(doc: LocatedDocument, path: str, rules: Sequence[HostPathDoc]) -> tuple[HostPathRule, ...]:
    """The hostPath allowlist: absolute paths, each written once, placeholders as everywhere else."""
    seen: dict[str, int] = {}
    compiled = []
    for index, rule in enumerate(rules):
        where = f"{path}[{index}].path"
        written = clean_host_path(rule.path)
        if written is None:
            raise doc.error(where, f"write {HOST_PATH_FORM}")
        problem = template_problem(rule.path)
        if problem is not None:
            raise doc.error(where, problem)
        if written == "/":
            raise doc.error(where, "'/' is the node's whole filesystem: name the directories tools may mount")
        if written in seen:
            # Two rules for one path would say two things about it (read-write and read-only?).
            raise doc.error(
                where, f"{rule.path!r} is the path of hostPaths[{seen[written]}] again: write each path once"
            )
        seen[written] = index
        compiled.append(HostPathRule(written, rule.read_only, rule.match))
    return tuple(compiled)


def _pod_security(doc: LocatedDocument, parsed: PodSecurityDoc) -> PodSecuritySettings:
    path = "$.podSecurity"
    tool = None
    if parsed.tool_profile is not None:
        profile = parsed.tool_profile
        where = f"{path}.toolProfile"
        host_paths = _host_path_rules(doc, f"{where}.hostPaths", profile.host_paths)
        for index, driver in enumerate(profile.csi_drivers):
            if not _CSI_DRIVER_RE.fullmatch(driver):
                raise doc.error(f"{where}.csiDrivers[{index}]", f"{driver!r} is not a CSI driver name")
        dropped = profile.supplemental_groups_policy.when_dropped
        tool = ToolProfile(
            namespaces=_check_name_globs(doc, f"{where}.namespaces", profile.namespaces),
            identities=_identities(doc, f"{where}.identities", profile.identities),
            uid_label=profile.uid_label,
            gid_label=profile.gid_label,
            host_paths=host_paths,
            csi_drivers=frozenset(profile.csi_drivers),
            groups_policy_dropped=None if dropped is WhenDropped.DENY else Mode(dropped),
        )
    overrides = tuple(
        PodSecurityOverride(
            namespaces=_check_name_globs(doc, f"{path}.overrides[{i}].namespaces", o.namespaces),
            level=o.level,
            version=_version(doc, f"{path}.overrides[{i}].version", o.version) if o.version else None,
            mode=o.mode,
        )
        for i, o in enumerate(parsed.overrides)
    )
    return PodSecuritySettings(
        level=parsed.level,
        version=_version(doc, f"{path}.version", parsed.version),
        mode=parsed.mode,
        mutate=parsed.mutate,
        exempt=_check_name_globs(doc, f"{path}.exempt", parsed.exempt),
        overrides=overrides,
        tool=tool,
    )


def _registry_parts(doc: LocatedDocument, parsed: PolicyDoc) -> tuple[RegistryConfig, BaseImagesConfig, PinningConfig]:
    registry = parsed.registry
    if not 0 < registry.timeout_seconds <= 30:
        raise doc.error("$.registry.timeoutSeconds", "between 0 and 30 seconds (the API server waits at most 30)")
    lookup_timeout = registry.lookup_timeout_seconds
    if lookup_timeout is None:
        lookup_timeout = max(DEFAULT_LOOKUP_TIMEOUT, registry.timeout_seconds)
    elif not registry.timeout_seconds <= lookup_timeout <= 30:
        raise doc.error(
            "$.registry.lookupTimeoutSeconds",
            f"between timeoutSeconds ({registry.timeout_seconds:g}) and 30 seconds: a lookup is one request or more",
        )
    platforms = []
    for index, platform in enumerate(registry.platforms):
        try:
            platforms.append(parse_platform(platform))
        except PlatformError as exc:
            raise doc.error(f"$.registry.platforms[{index}]", str(exc)) from None
    if not registry.platforms:
        raise doc.error("$.registry.platforms", "name at least one platform the cluster runs")
    bases = []
    for index, text in enumerate(parsed.base_images.trusted):
        try:
            bases.append(parse_docker_ref(text))
        except ReferenceError as exc:
            raise doc.error(f"$.baseImages.trusted[{index}]", str(exc)) from None
    contact_any, contact = _contact_entries(doc, registry.contact)
    if parsed.base_images.remember_days < 0 or parsed.base_images.refresh_minutes < 1:
        raise doc.error("$.baseImages", "rememberDays >= 0 and refreshMinutes >= 1")
    return (
        RegistryConfig(
            registry.timeout_seconds,
            registry.on_error,
            tuple(dict.fromkeys(platforms)),  # the same platform spelled twice is one
            registry.ca_file,
            registry.credentials_file,
            contact_any,
            contact,
            lookup_timeout,
            registry.contents,
        ),
        BaseImagesConfig(
            tuple(bases),
            parsed.base_images.remember_days,
            parsed.base_images.refresh_minutes,
            _patterns(doc, "$.baseImages.requireFor", parsed.base_images.require_for),
        ),
        PinningConfig(
            parsed.pinning.enabled,
            parsed.pinning.style,
            _check_name_globs(doc, "$.pinning.namespaces", parsed.pinning.namespaces),
        ),
    )


def _contact_entries(
    doc: LocatedDocument, written: str | list[str] | None
) -> tuple[bool, tuple[RepositoryPattern, ...]]:
    """``registry.contact``: ``any``, or registries (``host[:port]``, or a glob such as ``*.example.org``)."""
    path = "$.registry.contact"
    if written is None:
        return False, ()
    if isinstance(written, str):
        if written != "any":
            raise doc.error(path, f"{written!r}: write 'any' (every registry an image names) or a list of registries")
        return True, ()
    found = []
    for index, entry in enumerate(written):
        where = f"{path}[{index}]"
        if isinstance(entry, str) and entry and entry.strip("*") == "":
            raise doc.error(where, f"{entry!r}: write 'contact: any' to let imagegate contact every registry")
        try:
            pattern = parse_pattern(entry)
        except PatternError as exc:
            raise doc.error(where, str(exc)) from None
        if len(pattern.segments) > 1 or pattern.exact:
            raise doc.error(where, f"{entry!r} names a repository; write the registry alone (host[:port])")
        found.append(pattern)
    return False, tuple(found)


def _tag_rules(doc: LocatedDocument, parsed: TagsDoc) -> TagRules:
    for index, tag in enumerate(parsed.disallow):
        if not TAG_RE.fullmatch(tag):
            raise doc.error(f"$.tags.disallow[{index}]", f"{tag!r} is not a valid tag")
    return TagRules(
        frozenset(parsed.disallow),
        parsed.require_tag,
        parsed.require_digest,
        _patterns(doc, "$.tags.exempt", parsed.exempt),
    )


def _signer_rule(
    doc: LocatedDocument, path: str, rule: SignatureRuleDoc, mode: Mode, on_error: DenyOrAllow
) -> SignatureRule:
    """A ``signatures`` or ``attestations`` rule's images, signers, count and modes, checked (``path``: the rule's)."""
    if not rule.images:
        raise doc.error(f"{path}.images", "name the images this rule covers (patterns, as in trusted)")
    if not rule.keys and not rule.identities:
        raise doc.error(path, "name keys (PEM public key files) or identities (issuer and subject) to trust")
    for position, key in enumerate(rule.keys):
        if not key.strip():
            raise doc.error(f"{path}.keys[{position}]", "an empty path: name a PEM public key file")
    identities = []
    for position, identity in enumerate(rule.identities):
        where = f"{path}.identities[{position}]"
        if not identity.issuer:
            raise doc.error(f"{where}.issuer", "name the OIDC issuer the certificate must carry")
        if (identity.subject is None) == (identity.subject_reg_exp is None):
            raise doc.error(where, "write exactly one of subject (exact) and subjectRegExp (a regular expression)")
        if identity.subject is not None and not identity.subject:
            raise doc.error(f"{where}.subject", "an empty subject matches no certificate")
        if identity.subject_reg_exp is not None:
            try:
                re.compile(identity.subject_reg_exp)
            except re.error as exc:
                raise doc.error(f"{where}.subjectRegExp", f"not a regular expression: {exc}") from None
        identities.append(KeylessIdentity(identity.issuer, identity.subject or "", identity.subject_reg_exp or ""))
    signers = len(rule.keys) + len(identities)
    if not 1 <= rule.count <= signers:
        raise doc.error(
            f"{path}.count", f"between 1 and the {signers} keys and identities the rule names, got {rule.count}"
        )
    return SignatureRule(
        path.removeprefix("$."),
        _patterns(doc, f"{path}.images", rule.images),
        tuple(dict.fromkeys(rule.keys)),
        tuple(identities),
        rule.count,
        rule.mode if rule.mode is not None else mode,
        rule.on_error if rule.on_error is not None else on_error,
    )


def _signers(
    doc: LocatedDocument,
    section: str,
    rules: Sequence[SignatureRule],
    trusted_root: str | None,
    on_error: DenyOrAllow,
) -> SignaturesConfig:
    """The signer rules of a section, with its trusted root, every key they name (once) and its ``onError``."""
    if trusted_root is not None and not trusted_root.strip():
        raise doc.error(f"$.{section}.trustedRoot", "an empty path: name a Sigstore trusted_root.json, or leave it out")
    keys = tuple(dict.fromkeys(key for rule in rules for key in rule.keys))
    return SignaturesConfig(tuple(rules), trusted_root, keys, on_error)


def _signatures(doc: LocatedDocument, parsed: SignaturesDoc, policy_mode: Mode) -> SignaturesConfig:
    mode = parsed.mode if parsed.mode is not None else policy_mode
    rules = [
        _signer_rule(doc, f"$.signatures.rules[{index}]", rule, mode, parsed.on_error)
        for index, rule in enumerate(parsed.rules)
    ]
    return _signers(doc, "signatures", rules, parsed.trusted_root, parsed.on_error)


# A forge pattern starts with a literal scheme and host: "https://github.com*" would also match
# https://github.com.evil.example/..., and "**" any repository anywhere.
_FORGE_RE = re.compile(r"[a-z][a-z0-9+.-]*://[^/*?\[\]]+/.*")


def _glob_list(doc: LocatedDocument, path: str, entries: Sequence[str]) -> tuple[str, ...]:
    for position, entry in enumerate(entries):
        if not entry.strip():
            raise doc.error(f"{path}[{position}]", "an empty pattern matches nothing")
    return tuple(dict.fromkeys(entries))


def _provenance_rule(doc: LocatedDocument, path: str, rule: AttestationRuleDoc) -> ProvenanceRule:
    for position, forge in enumerate(rule.sources):
        if not _FORGE_RE.fullmatch(forge):
            raise doc.error(
                f"{path}.sources[{position}]",
                f"{forge!r}: write a forge's URL with its scheme and host, then the repositories "
                "(https://gitlab.wikimedia.org/**, https://github.com/wikimedia/*)",
            )
    predicate_types = PROVENANCE_TYPES
    if rule.predicate_types is not None:
        if not rule.predicate_types:
            raise doc.error(f"{path}.predicateTypes", "an empty list accepts no attestation; leave it out for SLSA")
        for position, kind in enumerate(rule.predicate_types):
            if kind not in PROVENANCE_TYPES:
                raise doc.error(
                    f"{path}.predicateTypes[{position}]",
                    f"{kind!r}: imagegate reads SLSA provenance ({', '.join(PROVENANCE_TYPES)})",
                )
        predicate_types = tuple(dict.fromkeys(rule.predicate_types))
    return ProvenanceRule(
        _glob_list(doc, f"{path}.builderIds", rule.builder_ids),
        _glob_list(doc, f"{path}.buildTypes", rule.build_types),
        _glob_list(doc, f"{path}.sources", rule.sources),
        predicate_types,
    )


def _attestations(doc: LocatedDocument, parsed: AttestationsDoc, policy_mode: Mode) -> AttestationsConfig:
    mode = parsed.mode if parsed.mode is not None else policy_mode
    rules = []
    for index, rule in enumerate(parsed.rules):
        path = f"$.attestations.rules[{index}]"
        signers = _signer_rule(doc, path, rule, mode, parsed.on_error)
        rules.append(AttestationRule(signers, _provenance_rule(doc, path, rule)))
    return AttestationsConfig(
        tuple(rules),
        _signers(doc, "attestations", [rule.signers for rule in rules], parsed.trusted_root, parsed.on_error),
    )


def _limits(doc: LocatedDocument, parsed: LimitsDoc) -> ObjectLimits:
    for key, value in (("maxContainers", parsed.max_containers), ("maxVolumes", parsed.max_volumes)):
        low, high = LIMIT_BOUNDS[key]
        if not low <= value <= high:
            raise doc.error(
                f"$.limits.{key}",
                f"{value}: between {low} and {high} (real pods have a handful; each more costs every admission "
                "in the webhook's process time)",
            )
    return ObjectLimits(parsed.max_containers, parsed.max_volumes)


def load_identities(text: str, source: str = "<identities>") -> dict[str, Identity]:
    """Parse a tool identities document (namespace -> uid/gid), e.g. a generated ConfigMap."""
    doc = _document(text, source, "ToolIdentities")
    parsed: IdentitiesDoc = _convert(doc, IdentitiesDoc, "a ToolIdentities document with an 'identities' map")
    return _identities(doc, "$.identities", parsed.identities)


def load_policy(text: str, source: str = "<policy>") -> Policy:
    """Parse and validate a policy document (YAML or JSON)."""
    doc = _document(text, source, "ImagePolicy")
    parsed: PolicyDoc = _convert(doc, PolicyDoc, "an ImagePolicy")
    registry, base_images, pinning = _registry_parts(doc, parsed)
    scope = NamespaceScope(
        include=_check_name_globs(doc, "$.namespaces.include", parsed.namespaces.include),
        exclude=_check_name_globs(doc, "$.namespaces.exclude", parsed.namespaces.exclude),
        selector=(
            _selector(doc, "$.namespaces.selector", parsed.namespaces.selector)
            if parsed.namespaces.selector is not None
            else None
        ),
    )
    base = Policy(
        mode=parsed.mode,
        trusted=_patterns(doc, "$.trusted", parsed.trusted, templates=True),
        blocked=_patterns(doc, "$.blocked", parsed.blocked),
        byoc_default=parsed.byoc.default,
        byoc_require_base_image=parsed.byoc.require_base_image,
        grants=(),
        namespaces=scope,
        warn_before_expiry_days=parsed.byoc.warn_before_expiry_days,
        grants_file=parsed.byoc.grants_file,
        required_grant_fields=tuple(dict.fromkeys(parsed.byoc.required_grant_fields)),
        source=source,
        pod_security=_pod_security(doc, parsed.pod_security) if parsed.pod_security is not None else None,
        identities_file=(
            parsed.pod_security.tool_profile.identities_file
            if parsed.pod_security is not None and parsed.pod_security.tool_profile is not None
            else None
        ),
        registry=registry,
        base_images=base_images,
        pinning=pinning,
        tags=_tag_rules(doc, parsed.tags),
        signatures=_signatures(doc, parsed.signatures, parsed.mode),
        attestations=_attestations(doc, parsed.attestations, parsed.mode),
        limits=_limits(doc, parsed.limits),
        content=load_content(doc, parsed.content, parsed.mode),
    )
    return _assemble(base, _grants(doc, "$.byoc.grants", parsed.byoc.grants))


@dataclass(frozen=True, slots=True)
class GrantEvent:
    """A grant revoked, renewed or replaced: who, when, why, and the grant as it was."""

    action: GrantAction
    namespace: str
    at: dt.datetime
    by: str
    reason: str
    grant: Mapping[str, Any]  # its document form (grant_entry), as it was before


@dataclass(frozen=True, slots=True)
class GrantsFile:
    """A grants document: the grants in force, and the record of those revoked or changed."""

    grants: tuple[Grant, ...]
    history: tuple[GrantEvent, ...] = ()


def _history(doc: LocatedDocument, events: Sequence[GrantEventDoc]) -> tuple[GrantEvent, ...]:
    found = []
    for index, event in enumerate(events):
        where = f"$.history[{index}]"
        if (problem := namespace_name_error(event.namespace)) is not None:
            raise doc.error(f"{where}.namespace", problem)
        if event.grant.namespace != event.namespace:
            raise doc.error(
                f"{where}.grant.namespace", f"the record of {event.namespace} holds another namespace's grant"
            )
        if not event.by.strip():
            raise doc.error(f"{where}.by", "say who (a name or account): a record without it tells nothing")
        found.append(
            GrantEvent(
                event.action,
                event.namespace,
                event.at,
                event.by,
                event.reason,
                msgspec.to_builtins(event.grant),
            )
        )
    return tuple(found)


def load_grants_file(text: str, source: str = "<grants>") -> GrantsFile:
    """Parse and validate a grants document: its grants and its ``history``."""
    doc = _document(text, source, "ImageGrants")
    parsed: GrantsDoc = _convert(doc, GrantsDoc, "an ImageGrants document with a 'grants' list")
    grants = _grants(doc, "$.grants", parsed.grants)
    _one_per_namespace(grants)  # within the file too: its errors then name lines of this document
    return GrantsFile(grants, _history(doc, parsed.history))


def load_grants(text: str, source: str = "<grants>") -> tuple[Grant, ...]:
    """Parse and validate a grants document (the ConfigMap's file): its grants."""
    return load_grants_file(text, source).grants


def grant_entry(
    namespace: str,
    *,
    registries: Sequence[str] | None = None,
    expires: str | None = None,
    reason: str = "",
    requested_by: str = "",
    ticket: str = "",
    require_base_image: bool = False,
    mode: str | None = None,
    signed_by: str | None = None,
    proof: str | None = None,
) -> dict[str, Any]:
    """One grant in its document form, keys in the documented order and only those that are set.

    Derived from :class:`GrantDoc` (its keys, their order, their defaults left out): the one
    writer of that form, which ``load_grant_entry`` reads back.
    """
    doc = GrantDoc(
        namespace=namespace,
        registries=None if registries is None else list(registries),
        expires=None if expires is None else dt.date.fromisoformat(expires),
        reason=reason,
        requested_by=requested_by,
        ticket=ticket,
        require_base_image=require_base_image,
        mode=None if mode is None else Mode(mode),
        signed_by=signed_by,
        proof=None if proof is None else Proof(proof),
    )
    entry: dict[str, Any] = msgspec.to_builtins(doc)
    return entry


def grant_document(grant: Grant) -> dict[str, Any]:
    """A loaded grant back in its document form (placeholders as filled in for its namespace)."""
    return grant_entry(
        grant.namespace,
        registries=None if grant.registries is None else [p.text for p in grant.registries],
        expires=None if grant.expires is None else grant.expires.isoformat(),
        reason=grant.reason,
        requested_by=grant.requested_by,
        ticket=grant.ticket,
        require_base_image=grant.require_base_image,
        mode=None if grant.mode is None else grant.mode.value,
        signed_by=grant.signed_by,
        proof=None if grant.proof is None else grant.proof.value,
    )


def event_document(event: GrantEvent) -> dict[str, Any]:
    """A history entry in its document form (``at`` in UTC, to the second)."""
    out: dict[str, Any] = {
        "action": event.action.value,
        "namespace": event.namespace,
        "at": event.at.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "by": event.by,
    }
    if event.reason:
        out["reason"] = event.reason
    out["grant"] = dict(event.grant)
    return out


def dump_grants(grants: Sequence[Grant], history: Sequence[GrantEvent] = ()) -> dict[str, Any]:
    """Grants (and the history of those revoked or changed) back to their document form."""
    document: dict[str, Any] = {
        "apiVersion": SUPPORTED_API_VERSIONS[0],
        "kind": "ImageGrants",
        "grants": [grant_document(grant) for grant in grants],
    }
    if history:
        document["history"] = [event_document(event) for event in history]
    return document
