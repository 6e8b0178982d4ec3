"""DTLS-SRTP (RFC 5764) server side for one participant, on memory BIOs.

The browser is the DTLS client (`a=setup:passive` in our answer). After the
handshake the peer's certificate must match the fingerprint from its SDP offer,
and the exported keying material gives the SRTP keys. Sans-IO: datagrams in,
datagrams out, the caller sends them.
"""

from __future__ import annotations

import datetime
import hmac
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL

MAX_DTLS_RECORD_BYTES = 4096

# (OpenSSL profile name, pylibsrtp profile id, key bytes, salt bytes)
SRTP_PROFILES = {
    b"SRTP_AEAD_AES_128_GCM": (7, 16, 12),
    b"SRTP_AES128_CM_SHA1_80": (1, 16, 14),
}


DTLS_CONTENT_TYPES = {20, 21, 22, 23}
"""change_cipher_spec, alert, handshake, application_data (RFC 6347 section 4.1)."""
ALERT = 21
APPLICATION_DATA = 23
RECORD_HEADER_BYTES = 13


class DtlsRecordRejected(ValueError):
    """A datagram dropped before it reached the handshake: the session goes on."""


def check_handshake_datagram(data: bytes) -> None:
    """Raise DtlsRecordRejected unless every record in a datagram could be part of
    a client's handshake: well framed, DTLS, epoch 0 or 1, and no alert.

    Anyone who can send from a participant's address could otherwise end its
    handshake with one forged alert or malformed record. A real client's alert
    during the handshake is dropped too; its handshake then times out instead.
    """
    if not data:
        raise DtlsRecordRejected("empty DTLS datagram")
    offset = 0
    while offset < len(data):
        if len(data) - offset < RECORD_HEADER_BYTES:
            raise DtlsRecordRejected("DTLS record header is cut short")
        content_type, major = data[offset], data[offset + 1]
        epoch = int.from_bytes(data[offset + 3 : offset + 5], "big")
        length = int.from_bytes(data[offset + 11 : offset + 13], "big")
        if content_type not in DTLS_CONTENT_TYPES or major != 0xFE:
            raise DtlsRecordRejected("not a DTLS record")
        if epoch > 1 or (epoch == 0 and content_type == APPLICATION_DATA):
            raise DtlsRecordRejected("DTLS record from an epoch the handshake has not reached")
        if content_type == ALERT:
            raise DtlsRecordRejected("DTLS alert during the handshake")
        offset += RECORD_HEADER_BYTES + length
        if offset > len(data):
            raise DtlsRecordRejected("DTLS record is longer than its datagram")


@dataclass(frozen=True)
class SrtpKeys:
    profile: int
    """pylibsrtp profile id."""
    local_key: bytes
    """Key and salt for what the server sends."""
    remote_key: bytes
    """Key and salt for what the server receives."""


def certificate_fingerprint(cert: x509.Certificate) -> str:
    """The SHA-256 fingerprint as SDP writes it: upper-case hex pairs and colons."""
    return ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA256()))


def self_signed_certificate(
    common_name: str = "confide",
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey, str]:
    """A WebRTC-style certificate (ECDSA P-256, self-signed) and its SDP fingerprint."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return cert, key, certificate_fingerprint(cert)


class DtlsCertificate:
    """One ECDSA P-256 certificate for all of this server's DTLS sessions."""

    def __init__(self) -> None:
        cert, key, self.fingerprint = self_signed_certificate()
        self.context = SSL.Context(SSL.DTLS_METHOD)
        self.context.use_certificate(cert)
        self.context.use_privatekey(key)
        # The peer's certificate is self-signed; it is checked against the SDP
        # fingerprint after the handshake, so the chain check accepts it here.
        self.context.set_verify(
            SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, lambda *args: True
        )
        self.context.set_tlsext_use_srtp(b":".join(SRTP_PROFILES))


class DtlsServerSession:
    """One participant's DTLS handshake and, once done, its SRTP keys."""

    def __init__(self, certificate: DtlsCertificate, remote_fingerprints: list[str]) -> None:
        self.remote_fingerprints = [fp.upper() for fp in remote_fingerprints]
        self.connection = SSL.Connection(certificate.context, None)
        self.connection.set_accept_state()
        self.keys: SrtpKeys | None = None
        self.closed = False

    def receive(self, data: bytes) -> list[bytes]:
        """Feed one DTLS datagram; returns the datagrams to send back.

        Raises ValueError if the handshake fails or the peer is not who its
        offer said, and DtlsRecordRejected (after which the session goes on) for
        a datagram that cannot be part of the handshake.
        """
        if len(data) > MAX_DTLS_RECORD_BYTES:
            raise DtlsRecordRejected("DTLS datagram is too long")
        if self.keys is None:
            check_handshake_datagram(data)
        self.connection.bio_write(data)
        try:
            if self.keys is None:
                self.connection.do_handshake()
                self.keys = self._export_keys()
            else:
                # After the handshake only alerts arrive here (close_notify).
                self.connection.recv(1500)
        except SSL.WantReadError:
            pass
        except SSL.ZeroReturnError:
            self.closed = True
        except SSL.Error as exc:
            raise ValueError(f"DTLS failed: {exc}") from exc
        return self._pending()

    def handle_timeout(self) -> list[bytes]:
        """Retransmit handshake flights whose timer ran out."""
        if self.keys is None:
            try:
                self.connection.DTLSv1_handle_timeout()
            except SSL.Error:
                pass
        return self._pending()

    def timeout(self) -> float | None:
        return self.connection.DTLSv1_get_timeout() if self.keys is None else None

    def _pending(self) -> list[bytes]:
        out: list[bytes] = []
        while True:
            try:
                out.append(self.connection.bio_read(MAX_DTLS_RECORD_BYTES))
            except SSL.WantReadError:
                return out

    def _export_keys(self) -> SrtpKeys:
        certificate = self.connection.get_peer_certificate()
        if certificate is None:
            raise ValueError("DTLS peer sent no certificate")
        digest = certificate.digest("sha256").decode("ascii").upper()
        if not any(hmac.compare_digest(digest, fp) for fp in self.remote_fingerprints):
            raise ValueError("DTLS certificate does not match the offer's fingerprint")
        profile_name = self.connection.get_selected_srtp_profile()
        if profile_name not in SRTP_PROFILES:
            raise ValueError("DTLS peer chose no SRTP profile we offer")
        profile, key_len, salt_len = SRTP_PROFILES[profile_name]
        material = self.connection.export_keying_material(
            b"EXTRACTOR-dtls_srtp", 2 * (key_len + salt_len)
        )
        client_key = material[:key_len]
        server_key = material[key_len : 2 * key_len]
        client_salt = material[2 * key_len : 2 * key_len + salt_len]
        server_salt = material[2 * key_len + salt_len :]
        return SrtpKeys(
            profile=profile,
            local_key=server_key + server_salt,
            remote_key=client_key + client_salt,
        )
