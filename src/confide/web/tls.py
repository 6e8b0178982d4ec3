"""TLS for `confide serve`: server contexts from the operator's certificate files,
or a self-signed ECDSA P-256 certificate made at startup for a LAN trial."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import secrets
import ssl
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SELF_SIGNED_VALIDITY = datetime.timedelta(days=30)
CLOCK_SKEW = datetime.timedelta(hours=1)
"""How far before now the certificate starts to be valid, for clients whose clock is behind."""


@dataclass(frozen=True)
class SelfSigned:
    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.certificate.public_bytes(serialization.Encoding.DER))


def fingerprint(certificate_der: bytes) -> str:
    """SHA-256 of the DER certificate as colon-separated upper-case hex pairs, the form
    browsers show on their certificate pages."""
    return ":".join(f"{byte:02X}" for byte in hashlib.sha256(certificate_der).digest())


def make_self_signed(names: Iterable[str], now: datetime.datetime) -> SelfSigned:
    """An ECDSA P-256 certificate for `localhost` and each of `names` (IP addresses
    become IP SANs, anything else a DNS SAN; wildcard addresses are left out)."""
    private_key = ec.generate_private_key(ec.SECP256R1())
    alternative_names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    for name in dict.fromkeys(names):
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            if name != "localhost":
                alternative_names.append(x509.DNSName(name))
            continue
        if not address.is_unspecified:
            alternative_names.append(x509.IPAddress(address))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Confide self-signed")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + SELF_SIGNED_VALIDITY)
        .add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(private_key, hashes.SHA256())
    )
    return SelfSigned(certificate=certificate, private_key=private_key)


def _server_context() -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def context_from_files(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """The operator's certificate chain and key (PEM). Raises OSError or ssl.SSLError."""
    context = _server_context()
    context.load_cert_chain(cert_file, key_file)
    return context


def context_from_self_signed(self_signed: SelfSigned) -> ssl.SSLContext:
    """Python's ssl module loads keys only from files: the key goes to a 0600 file in
    a private temporary directory, encrypted under a one-time password, and the
    directory is deleted as soon as the context holds the key."""
    password = secrets.token_bytes(32)
    key_pem = self_signed.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )
    cert_pem = self_signed.certificate.public_bytes(serialization.Encoding.PEM)
    context = _server_context()
    with tempfile.TemporaryDirectory(prefix="confide-tls-") as directory:
        cert_file = Path(directory) / "cert.pem"
        key_file = Path(directory) / "key.pem"
        for path, data in ((cert_file, cert_pem), (key_file, key_pem)):
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as file:
                file.write(data)
        context.load_cert_chain(cert_file, key_file, password=password)
    return context
