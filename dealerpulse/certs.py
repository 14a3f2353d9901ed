"""``dealerpulse certs``: a private CA, a server certificate and client certificates.

Enough PKI for TLS and mutual TLS between agents, collector, reporter and the
CLI, without an external tool. Keys are ECDSA P-256 (small, fast handshakes,
supported by gRPC); key files are written 0600. An existing ``ca.pem`` and
``ca.key`` in the output directory are reused, so that running the command
again with ``--client NAME`` adds a client certificate the collector already
trusts instead of replacing the CA.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

logger = logging.getLogger(__name__)

CA_CERT, CA_KEY = "ca.pem", "ca.key"
SERVER_CERT, SERVER_KEY = "server.pem", "server.key"
DEFAULT_HOSTS = ("127.0.0.1", "localhost")
_CLIENT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# Certificates are valid from a little before "now": clocks of peers differ.
_BACKDATE = timedelta(minutes=5)

PrivateKey = ec.EllipticCurvePrivateKey


class CertError(ValueError):
    """Bad input for the certificates (a host name, a client name, an unreadable CA)."""


@dataclass(frozen=True, slots=True)
class CertFiles:
    """Where the files were written."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    # client name -> (certificate, key)
    clients: dict[str, tuple[Path, Path]] = field(default_factory=dict)


def make_certs(
    out_dir: Path,
    hosts: Sequence[str] = DEFAULT_HOSTS,
    clients: Sequence[str] = (),
    *,
    now: datetime | None = None,
    days: int = 365,
) -> CertFiles:
    """Write (or reuse) the CA, then a server certificate for ``hosts`` and one client
    certificate per name in ``clients``."""
    if not hosts:
        raise CertError("hosts: give at least one host name or IP address for the server")
    for name in clients:
        if not _CLIENT_NAME_RE.match(name):
            raise CertError(
                f"client name {name!r}: use 1-64 characters of letters, digits, '.', '_', '-'"
            )
    now = now or datetime.now(UTC)
    out_dir.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = _load_or_make_ca(out_dir, now, days)
    sans = [_san(host) for host in hosts]
    server_key = _new_key()
    server = _issue(ca_key, ca_cert, server_key, hosts[0], now, days, sans, server=True)
    _write_pair(out_dir / SERVER_CERT, out_dir / SERVER_KEY, server, server_key)
    written: dict[str, tuple[Path, Path]] = {}
    for name in clients:
        key = _new_key()
        cert = _issue(ca_key, ca_cert, key, name, now, days, [], server=False)
        paths = (out_dir / f"client-{name}.pem", out_dir / f"client-{name}.key")
        _write_pair(*paths, cert, key)
        written[name] = paths
    logger.info("certificates written to %s (server for %s)", out_dir, ", ".join(hosts))
    return CertFiles(
        out_dir / CA_CERT, out_dir / CA_KEY, out_dir / SERVER_CERT, out_dir / SERVER_KEY, written
    )


def _load_or_make_ca(
    out_dir: Path, now: datetime, days: int
) -> tuple[PrivateKey, x509.Certificate]:
    cert_path, key_path = out_dir / CA_CERT, out_dir / CA_KEY
    if cert_path.exists() and key_path.exists():
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise CertError(f"cannot reuse the CA in {out_dir}: {exc}") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise CertError(f"{key_path}: not an ECDSA key made by dealerpulse certs")
        logger.info("reusing the CA in %s", cert_path)
        return key, cert
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "DealerPulse CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        # The CA outlives the certificates it signs, so they can be renewed alone.
        .not_valid_after(now + timedelta(days=days * 10))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_pair(cert_path, key_path, cert, key)
    return key, cert


def _issue(
    ca_key: PrivateKey,
    ca_cert: x509.Certificate,
    key: PrivateKey,
    common_name: str,
    now: datetime,
    days: int,
    sans: list[x509.GeneralName],
    *,
    server: bool,
) -> x509.Certificate:
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _san(host: str) -> x509.GeneralName:
    host = host.strip()
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not re.fullmatch(r"[A-Za-z0-9*]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?", host):
        raise CertError(f"host {host!r} is neither an IP address nor a DNS name")
    return x509.DNSName(host)


def _new_key() -> PrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_pair(cert_path: Path, key_path: Path, cert: x509.Certificate, key: PrivateKey) -> None:
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write(key_path, key_pem, 0o600)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _write(path: Path, data: bytes, mode: int) -> None:
    # Created with its final mode: a key must never exist readable by others,
    # not even between open() and chmod().
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.fchmod(fd, mode)  # an existing file keeps its old mode otherwise
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
