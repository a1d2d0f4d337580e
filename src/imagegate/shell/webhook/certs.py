"""Certificates for the webhook's HTTPS endpoint, made with ``cryptography``.

``imagegate certs`` makes a CA and a serving certificate for clusters without
cert-manager and prints the ``caBundle`` for the webhook configurations; ``serve``
without ``--tls-cert`` makes a self-signed development certificate the same way.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from imagegate.core.names import DNS_LABEL_RULE, is_dns_label
from imagegate.shell.webhook.cert_terms import CA_DAYS, CertificateError

__all__ = [
    "CA_DAYS",
    "CertificateError",
    "CertificateFiles",
    "check_leaf_fits",
    "check_pair",
    "dns_names_of",
    "find_ca",
    "load_ca",
    "make_certificates",
    "prepare_directory",
    "service_dns_names",
]


MAX_DAYS = 36500  # a hundred years: anything longer is a typo, and near year 9999 datetime overflows
_CLOCK_SKEW = dt.timedelta(minutes=5)  # certificates start a little in the past: clocks differ

CertificateAuthority = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


@dataclass(frozen=True)
class CertificateFiles:
    ca_cert: Path
    cert: Path
    key: Path

    def ca_bundle(self) -> str:
        """The CA certificate, base64-encoded, as a webhook's ``clientConfig.caBundle``."""
        return base64.b64encode(self.ca_cert.read_bytes()).decode()


def check_dns_label(value: str, what: str) -> None:
    """Raise :class:`CertificateError` unless ``value`` is an RFC 1123 label (Kubernetes' DNS label)."""
    # a Service or namespace name, and one label of the DNS names the API server uses to reach the webhook
    if not is_dns_label(value):
        raise CertificateError(f"{what} {value!r} is not a DNS label (RFC 1123): {DNS_LABEL_RULE}")


def service_dns_names(service: str, namespace: str) -> list[str]:
    """The names the API server may use to reach a Service (both names checked as DNS labels)."""
    check_dns_label(service, "service name")
    check_dns_label(namespace, "namespace")
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
    ]


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "imagegate"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64]),  # X.509 caps a CN at 64 characters
        ]
    )


def _alt_names(hosts: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
            continue
        except ValueError:
            pass
        for label in host.lower().split("."):
            check_dns_label(label, f"host name {host!r}: label")
        names.append(x509.DNSName(host.lower()))
    return names


def _write_private(path: Path, data: bytes) -> None:
    """Write a key readable by its owner only; replace atomically (watchers see one event)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    tmp.replace(path)


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _check_days(days: int, what: str) -> None:
    if not 1 <= days <= MAX_DAYS:
        raise CertificateError(f"{what} must be between 1 and {MAX_DAYS} days, not {days}")


def prepare_directory(directory: Path, what: str) -> None:
    """Create ``directory`` for certificate files, or say in one line why it cannot be used."""
    if directory.exists() and not directory.is_dir():
        raise CertificateError(f"{what} {directory} is a file, not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CertificateError(f"{what} {directory}: cannot create it: {exc.strerror or exc}") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise CertificateError(f"{what} {directory}: not writable by this user")


def new_ca(days: int = CA_DAYS, now: dt.datetime | None = None) -> CertificateAuthority:
    """A self-signed CA (ECDSA P-256) valid for ``days``."""
    _check_days(days, "the CA's lifetime")
    start = (now or dt.datetime.now(dt.UTC)) - _CLOCK_SKEW
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("imagegate CA"))
        .issuer_name(_name("imagegate CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


def ca_days_left(ca: CertificateAuthority, now: dt.datetime | None = None) -> int:
    """Whole days until the CA expires (negative once it has)."""
    return (ca[0].not_valid_after_utc - (now or dt.datetime.now(dt.UTC))).days


def check_leaf_fits(ca: CertificateAuthority, days: int, now: dt.datetime | None = None, where: str = "") -> None:
    """Raise unless a leaf of ``days`` from ``ca`` would verify for its whole life."""
    _check_days(days, "--days")
    moment = now or dt.datetime.now(dt.UTC)
    expires = ca[0].not_valid_after_utc
    at = f" in {where}" if where else ""
    if expires <= moment:
        raise CertificateError(
            f"the CA{at} expired on {expires:%Y-%m-%d}: certificates it signs cannot verify. Make a new CA "
            "(move ca.crt and ca.key away, run without --renew) and put its caBundle in the webhook configurations"
        )
    if moment + dt.timedelta(days=days) > expires:
        raise CertificateError(
            f"--days {days}: the CA{at} expires on {expires:%Y-%m-%d} ({ca_days_left(ca, moment)} days left) and a "
            "certificate cannot outlive its CA; choose fewer days or make a new CA"
        )


def make_certificates(
    directory: Path,
    hosts: list[str],
    *,
    days: int = 365,
    ca: CertificateAuthority | None = None,
    now: dt.datetime | None = None,
    ca_days: int = CA_DAYS,
) -> CertificateFiles:
    """A CA (new unless given) and a serving certificate for ``hosts``, written as PEM files.

    Files: ``ca.crt``, ``ca.key`` (only for a new CA), ``tls.crt`` (serving certificate),
    ``tls.key`` (its key, mode 0600), the names cert-manager and ``kubernetes.io/tls``
    Secrets use. A new CA lives ``ca_days``; the serving certificate ``days``, never
    past its CA. Raises :class:`CertificateError` with the reason.
    """
    if not hosts:
        raise CertificateError("a serving certificate needs at least one host name")
    alt_names = _alt_names(hosts)
    moment = now or dt.datetime.now(dt.UTC)
    created = ca is None
    authority = ca if ca is not None else new_ca(ca_days, moment)
    check_leaf_fits(authority, days, moment)
    prepare_directory(directory, "certificate directory")
    ca_cert, ca_key = authority
    start = moment - _CLOCK_SKEW
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = CertificateFiles(directory / "ca.crt", directory / "tls.crt", directory / "tls.key")
    try:
        if created:
            _write_private(directory / "ca.key", _key_pem(ca_key))
        _write_public(files.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM))
        # Key first, then certificate: a watcher that reloads on the certificate's change
        # then always finds the matching key.
        _write_private(files.key, _key_pem(key))
        _write_public(files.cert, cert.public_bytes(serialization.Encoding.PEM))
    except OSError as exc:
        raise CertificateError(f"cannot write certificates into {directory}: {exc.strerror or exc}") from None
    return files


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CertificateError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise CertificateError(f"{what} {path}: cannot read it: {exc.strerror or exc}") from None


def _certificate(path: Path, what: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(_read(path, what))
    except ValueError:
        raise CertificateError(f"{what} {path} is not a PEM certificate") from None


def _private_key(path: Path, what: str) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(_read(path, what), password=None)
    except TypeError:
        raise CertificateError(f"{what} {path} is encrypted; imagegate needs an unencrypted key") from None
    except (ValueError, UnsupportedAlgorithm):
        raise CertificateError(f"{what} {path} is not a PEM private key") from None


def _same_key(cert: x509.Certificate, key: PrivateKeyTypes) -> bool:
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    return bool(cert.public_key().public_bytes(der, spki) == key.public_key().public_bytes(der, spki))


def dns_names_of(cert: Path) -> list[str] | None:
    """The DNS names a certificate was issued for (a renewal keeps them), or None when unreadable."""
    try:
        found = x509.load_pem_x509_certificate(cert.read_bytes())
        names = found.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return None
    return names.get_values_for_type(x509.DNSName) or None


def find_ca(directory: Path) -> CertificateAuthority | None:
    """The CA in ``directory`` (``ca.crt`` and ``ca.key``), or None when there is none at all."""
    if not (directory / "ca.crt").exists() and not (directory / "ca.key").exists():
        return None
    return load_ca(directory)


def load_ca(directory: Path) -> CertificateAuthority:
    """The CA that :func:`make_certificates` wrote into ``directory`` (to issue a new leaf)."""
    cert = _certificate(directory / "ca.crt", "CA certificate")
    key = _private_key(directory / "ca.key", "CA key")
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertificateError(f"CA key {directory / 'ca.key'} is not an EC key (imagegate's CAs are ECDSA P-256)")
    if not _same_key(cert, key):
        raise CertificateError(f"CA key {directory / 'ca.key'} does not belong to {directory / 'ca.crt'}")
    return cert, key


def check_pair(cert: Path, key: Path) -> None:
    """Raise :class:`CertificateError` unless ``cert`` and ``key`` load, match and TLS accepts them."""
    certificate = _certificate(cert, "TLS certificate")
    if not _same_key(certificate, _private_key(key, "TLS key")):
        raise CertificateError(f"TLS key {key} does not belong to the certificate {cert}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise CertificateError(f"TLS cannot use {cert} with {key}: {exc}") from None
