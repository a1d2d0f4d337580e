"""An image's inventory as a software bill of materials: CycloneDX 1.6 JSON (cyclonedx-python-lib)
or SPDX 2.3 JSON (spdx-tools), each written by its own library.

Every package is one component (one SPDX package) with its package URL (``pkg:deb/debian/...``,
``pkg:apk/alpine/...``, ``pkg:pypi/...``, ``pkg:npm/...``) and its licence as imagegate read it: an
SPDX expression, a ``LicenseRef-`` for each licence with no SPDX id (SPDX documents carry each
such reference's declaration as extracted licensing info), nothing when no licence was declared.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import warnings

from license_expression import Licensing
from packageurl import PackageURL

from imagegate.core.contents.licences import licence_ids
from imagegate.core.contents.packages import Ecosystem, Package
from imagegate.core.contents.report import ImageScan

__all__ = ["cyclonedx_json", "purl", "spdx_json"]

_PURL_TYPES = {Ecosystem.DEB: ("deb", "debian"), Ecosystem.APK: ("apk", "alpine")}
_SPDX_ID_RE = re.compile(r"[^A-Za-z0-9.-]+")


def purl(package: Package) -> str:
    """The package URL of ``package`` (purl-spec's deb, apk, pypi and npm types)."""
    qualifiers = {"arch": package.architecture} if package.architecture else {}
    if package.ecosystem in _PURL_TYPES:
        kind, namespace = _PURL_TYPES[package.ecosystem]
        return str(PackageURL(kind, namespace, package.name, package.version or None, qualifiers))
    if package.ecosystem is Ecosystem.NPM and package.name.startswith("@") and "/" in package.name:
        scope, name = package.name.split("/", 1)
        return str(PackageURL("npm", scope, name, package.version or None))
    return str(PackageURL(package.ecosystem.value, None, package.name, package.version or None))


def _ref(package: Package, index: int) -> str:
    return f"{package.ecosystem.value}-{_SPDX_ID_RE.sub('-', package.name)}-{index}"


def cyclonedx_json(scan: ImageScan, created: dt.datetime) -> str:
    """The image's packages as a CycloneDX 1.6 JSON document."""
    from cyclonedx.model.bom import Bom  # noqa: PLC0415 (loaded for this command alone)
    from cyclonedx.model.component import Component, ComponentType  # noqa: PLC0415
    from cyclonedx.model.license import LicenseExpression  # noqa: PLC0415
    from cyclonedx.output.json import JsonV1Dot6  # noqa: PLC0415

    bom = Bom()
    bom.metadata.timestamp = created
    image = Component(name=scan.image, type=ComponentType.CONTAINER, bom_ref="image")
    bom.metadata.component = image
    components = []
    for index, package in enumerate(scan.packages):
        component = Component(
            name=package.name,
            version=package.version or None,
            type=ComponentType.LIBRARY,
            purl=PackageURL.from_string(purl(package)),
            bom_ref=_ref(package, index),
            licenses=[LicenseExpression(package.licence)] if package.licence else [],
        )
        bom.components.add(component)
        components.append(component)
    bom.register_dependency(image, components)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its notes on an incomplete dependency graph: the packages' own are not read
        return str(JsonV1Dot6(bom).output_as_string(indent=2))


def spdx_json(scan: ImageScan, created: dt.datetime) -> str:
    """The image's packages as an SPDX 2.3 JSON document."""
    # loaded for this command alone
    from spdx_tools.spdx.model.actor import Actor, ActorType  # noqa: PLC0415
    from spdx_tools.spdx.model.document import CreationInfo, Document  # noqa: PLC0415
    from spdx_tools.spdx.model.extracted_licensing_info import ExtractedLicensingInfo  # noqa: PLC0415
    from spdx_tools.spdx.model.package import ExternalPackageRef, ExternalPackageRefCategory  # noqa: PLC0415
    from spdx_tools.spdx.model.package import Package as SpdxPackage  # noqa: PLC0415
    from spdx_tools.spdx.model.relationship import Relationship, RelationshipType  # noqa: PLC0415
    from spdx_tools.spdx.model.spdx_no_assertion import SpdxNoAssertion  # noqa: PLC0415
    from spdx_tools.spdx.writer.json.json_writer import write_document_to_stream  # noqa: PLC0415

    grammar = Licensing()  # the expression as read: no symbol rewritten to a licence it resembles
    name = f"imagegate sbom {scan.image}"
    digest = scan.layers[-1].removeprefix("sha256:")[:16] if scan.layers else "none"
    info = CreationInfo(
        spdx_version="SPDX-2.3",
        spdx_id="SPDXRef-DOCUMENT",
        name=name,
        document_namespace=f"https://imagegate.toolforge.org/spdx/{_SPDX_ID_RE.sub('-', scan.image)}-{digest}",
        creators=[Actor(ActorType.TOOL, "imagegate")],
        created=created.replace(microsecond=0, tzinfo=None),
    )
    packages = []
    relationships = []
    references: dict[str, str] = {}
    for index, package in enumerate(scan.packages):
        spdx_id = f"SPDXRef-{_ref(package, index)}"
        declared = grammar.parse(package.licence) if package.licence else SpdxNoAssertion()
        for key in licence_ids(package.licence or ""):
            if key.startswith("LicenseRef-"):
                references.setdefault(key, package.declared or key)
        packages.append(
            SpdxPackage(
                spdx_id=spdx_id,
                name=package.name,
                download_location=SpdxNoAssertion(),
                version=package.version or None,
                files_analyzed=False,
                license_declared=declared,
                license_concluded=SpdxNoAssertion(),
                external_references=[
                    ExternalPackageRef(ExternalPackageRefCategory.PACKAGE_MANAGER, "purl", purl(package))
                ],
            )
        )
        relationships.append(Relationship("SPDXRef-DOCUMENT", RelationshipType.DESCRIBES, spdx_id))
    extracted = [
        ExtractedLicensingInfo(
            license_id=key,
            extracted_text=f"Declared in the package's metadata as: {declared}",
            license_name=key.removeprefix("LicenseRef-"),
        )
        for key, declared in references.items()
    ]
    document = Document(info, packages=packages, relationships=relationships, extracted_licensing_info=extracted)
    stream = io.StringIO()
    write_document_to_stream(document, stream, validate=False)
    return stream.getvalue()
