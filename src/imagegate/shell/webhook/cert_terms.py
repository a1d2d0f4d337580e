"""What the command line knows of certificates before it loads cryptography (shell/webhook/certs.py):
the default life of a new CA and the error the certificate commands report."""

from __future__ import annotations

CA_DAYS = 3650  # ten years, as deploy/'s cert-manager CA (87600h) and kubeadm's CAs


class CertificateError(Exception):
    """Certificates that cannot be made, loaded or used; the message is one line for the user."""
