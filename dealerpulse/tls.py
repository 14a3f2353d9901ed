"""TLS credentials for every DealerPulse server and client, from PEM files.

One place reads certificate, key and CA files, so that every server (collector,
reporter) and every client (agent, CLI) fails the same way on a bad file: a
:class:`TlsError` naming the option and the file, before gRPC ever sees bytes
it would only reject with an opaque handshake failure later.

Needs only grpcio (the agent's minimal install has it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import grpc

logger = logging.getLogger(__name__)

_CERT_MARKER = b"-----BEGIN CERTIFICATE-----"
_KEY_MARKERS = (
    b"-----BEGIN PRIVATE KEY-----",
    b"-----BEGIN RSA PRIVATE KEY-----",
    b"-----BEGIN EC PRIVATE KEY-----",
)
_ENCRYPTED_KEY_MARKER = b"-----BEGIN ENCRYPTED PRIVATE KEY-----"


class TlsError(ValueError):
    """A TLS file is missing, unreadable or not what it should be. Names the file."""


@dataclass(frozen=True, slots=True)
class ServerTls:
    """A server's certificate chain and key; with ``client_ca``, clients must present a
    certificate signed by it (mutual TLS)."""

    cert: Path
    key: Path
    client_ca: Path | None = None


@dataclass(frozen=True, slots=True)
class ClientTls:
    """What a client trusts (``ca``; None: the system roots) and, for mutual TLS, the
    certificate and key it presents."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise TlsError("tls_cert and tls_key: give both for mutual TLS, or neither")


def read_certificates(path: Path, what: str) -> bytes:
    """PEM certificates (a chain or a CA bundle) from ``path``; ``what`` names the option."""
    data = _read(path, what)
    if _CERT_MARKER not in data:
        raise TlsError(f"{what}: {path} holds no PEM certificate ('{_CERT_MARKER.decode()}')")
    return data


def read_private_key(path: Path, what: str) -> bytes:
    """An unencrypted PEM private key from ``path``."""
    data = _read(path, what)
    if _ENCRYPTED_KEY_MARKER in data:
        raise TlsError(f"{what}: {path} is an encrypted key; gRPC needs it unencrypted")
    if not any(marker in data for marker in _KEY_MARKERS):
        raise TlsError(f"{what}: {path} holds no PEM private key")
    return data


def _read(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise TlsError(f"{what}: cannot read {path}: {exc.strerror or exc}") from exc


def server_credentials(tls: ServerTls) -> grpc.ServerCredentials:
    """Credentials for ``server.add_secure_port``; mutual TLS when ``tls.client_ca``."""
    chain = read_certificates(tls.cert, "tls_cert")
    key = read_private_key(tls.key, "tls_key")
    client_ca = None if tls.client_ca is None else read_certificates(tls.client_ca, "tls_client_ca")
    logger.debug(
        "TLS server credentials from %s (client certificates %s)",
        tls.cert,
        "required" if client_ca else "not required",
    )
    return grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def channel_credentials(tls: ClientTls) -> grpc.ChannelCredentials:
    """Credentials for ``secure_channel``: trust ``tls.ca``, present ``tls.cert`` if set."""
    root = None if tls.ca is None else read_certificates(tls.ca, "tls_ca")
    chain = None if tls.cert is None else read_certificates(tls.cert, "tls_cert")
    key = None if tls.key is None else read_private_key(tls.key, "tls_key")
    return grpc.ssl_channel_credentials(
        root_certificates=root, private_key=key, certificate_chain=chain
    )
