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
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CertificateFiles", "check_pair", "make_certificates", "service_dns_names"]


@dataclass(frozen=True)
class CertificateFiles:
    ca_cert: Path
    cert: Path
    key: Path

    def ca_bundle(self) -> str:
        """The CA certificate, base64-encoded, as a webhook's ``clientConfig.caBundle``."""
        return base64.b64encode(self.ca_cert.read_bytes()).decode()


def service_dns_names(service: str, namespace: str) -> list[str]:
    """The names the API server may use to reach a Service."""
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
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _alt_names(hosts: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
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


def make_certificates(
    directory: Path,
    hosts: list[str],
    *,
    days: int = 365,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
    now: dt.datetime | None = None,
) -> CertificateFiles:
    """A CA (new unless given) and a serving certificate for ``hosts``, written as PEM files.

    Files: ``ca.crt``, ``tls.crt`` (serving certificate), ``tls.key`` (its key, mode 0600),
    the names cert-manager and ``kubernetes.io/tls`` Secrets use.
    """
    directory.mkdir(parents=True, exist_ok=True)
    start = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(minutes=5)
    if ca is None:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(_name("imagegate CA"))
            .issuer_name(_name("imagegate CA"))
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + dt.timedelta(days=days * 2))
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
            .sign(ca_key, hashes.SHA256())
        )
    else:
        ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(_alt_names(hosts)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = CertificateFiles(directory / "ca.crt", directory / "tls.crt", directory / "tls.key")
    _write_public(files.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM))
    # Key first, then certificate: a watcher that reloads on the certificate's change
    # then always finds the matching key.
    _write_private(
        files.key,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    _write_public(files.cert, cert.public_bytes(serialization.Encoding.PEM))
    ca_key_path = directory / "ca.key"
    if ca is None:
        _write_private(
            ca_key_path,
            ca_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
    return files


def load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The CA that :func:`make_certificates` wrote into ``directory`` (to issue a new leaf)."""
    cert = x509.load_pem_x509_certificate((directory / "ca.crt").read_bytes())
    key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("ca.key is not an EC private key")
    return cert, key


def check_pair(cert: Path, key: Path) -> None:
    """Raise ``ssl.SSLError``/``OSError`` unless ``cert`` and ``key`` load and match."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
