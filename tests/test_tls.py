"""TLS certificates and server contexts (web/tls.py): the self-signed certificate
for a LAN trial, its printed fingerprint, and the operator's own files."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import ssl
import tempfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from confide.web.tls import (
    context_from_files,
    context_from_self_signed,
    fingerprint,
    make_self_signed,
)

NOW = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.UTC)


def alternative_names(certificate: x509.Certificate) -> tuple[list[str], list[str]]:
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return (names.get_values_for_type(x509.DNSName),
            [str(ip) for ip in names.get_values_for_type(x509.IPAddress)])


def test_self_signed_certificate_is_ecdsa_p256_and_signed_by_itself() -> None:
    made = make_self_signed(["192.0.2.10"], NOW)
    key = made.certificate.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    made.certificate.verify_directly_issued_by(made.certificate)
    assert made.certificate.signature_hash_algorithm is not None
    assert made.certificate.signature_hash_algorithm.name == "sha256"


def test_self_signed_certificate_names_localhost_the_public_ip_and_the_host() -> None:
    made = make_self_signed(["192.0.2.10", "10.0.0.5", "meet.lan"], NOW)
    dns, ips = alternative_names(made.certificate)
    assert dns == ["localhost", "meet.lan"]
    assert ips == ["192.0.2.10", "10.0.0.5"]


def test_wildcard_listen_addresses_and_repeats_are_left_out() -> None:
    made = make_self_signed(["192.0.2.10", "0.0.0.0", "::", "192.0.2.10", "localhost"], NOW)
    assert alternative_names(made.certificate) == (["localhost"], ["192.0.2.10"])


def test_self_signed_certificate_is_for_servers_only_and_valid_from_just_before_now() -> None:
    certificate = make_self_signed(["127.0.0.1"], NOW).certificate
    assert certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    usage = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]
    assert certificate.not_valid_before_utc < NOW < certificate.not_valid_after_utc
    assert certificate.not_valid_after_utc - NOW <= datetime.timedelta(days=31)


def test_fingerprint_is_the_sha256_of_the_der_certificate_in_colon_hex() -> None:
    made = make_self_signed(["127.0.0.1"], NOW)
    der = made.certificate.public_bytes(serialization.Encoding.DER)
    digest = hashlib.sha256(der).hexdigest().upper()
    assert made.fingerprint == fingerprint(der)
    assert made.fingerprint == ":".join(digest[i:i + 2] for i in range(0, 64, 2))


def test_each_start_makes_a_new_key() -> None:
    assert make_self_signed([], NOW).fingerprint != make_self_signed([], NOW).fingerprint


def test_self_signed_context_leaves_no_key_file_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    context = context_from_self_signed(make_self_signed(["127.0.0.1"], NOW))
    assert isinstance(context, ssl.SSLContext)
    assert list(tmp_path.iterdir()) == []


def write_pem(tmp_path: Path, names: list[str]) -> tuple[Path, Path]:
    made = make_self_signed(names, datetime.datetime.now(datetime.UTC))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(made.certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(made.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return cert_file, key_file


def test_the_operators_certificate_files_load(tmp_path: Path) -> None:
    cert_file, key_file = write_pem(tmp_path, ["127.0.0.1"])
    context = context_from_files(cert_file, key_file)
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_a_key_that_does_not_match_the_certificate_is_refused(tmp_path: Path) -> None:
    cert_file, _ = write_pem(tmp_path, ["127.0.0.1"])
    other = tmp_path / "other"
    other.mkdir()
    _, other_key = write_pem(other, ["127.0.0.1"])
    with pytest.raises(ssl.SSLError):
        context_from_files(cert_file, other_key)


def test_missing_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        context_from_files(tmp_path / "nope.pem", tmp_path / "nope.key")


def test_ip_names_in_the_certificate_are_addresses_not_dns_names() -> None:
    made = make_self_signed(["2001:db8::1"], NOW)
    _, ips = alternative_names(made.certificate)
    assert [ipaddress.ip_address(ip) for ip in ips] == [ipaddress.ip_address("2001:db8::1")]
