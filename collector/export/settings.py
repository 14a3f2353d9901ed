"""Settings of the OTLP export: options, the header format, TLS defaults.

Headers come from the environment in OpenTelemetry's format
(``OTEL_EXPORTER_OTLP_HEADERS``): ``k1=v1,k2=v2``, keys and values trimmed,
values percent-decoded (``%2C`` for a comma). Vendor keys are turned into the
header their intake expects, unless a header of that name is given already:

- ``DATADOG_API_KEY`` -> ``dd-api-key`` (Datadog's OTLP intake / agent)
- ``NEW_RELIC_LICENSE_KEY`` -> ``api-key`` (New Relic's OTLP endpoint)

TLS: an ``https://`` endpoint always uses TLS, an ``http://`` one never does.
Without a scheme, ``OTLP_EXPORT_INSECURE`` decides, and by default only
loopback endpoints (127.0.0.0/8, ::1, localhost) go in plain text; any other
host gets TLS with the default roots (gRPC's bundle, or ``OTLP_EXPORT_CA_FILE``).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from dealerpulse import logs
from dealerpulse.config import (
    ConfigError,
    Option,
    boolean,
    optional_text,
    path,
    positive_float,
    positive_int,
)

if TYPE_CHECKING:
    from collector.settings import CollectorSettings

Headers = tuple[tuple[str, str], ...]

DATADOG_HEADER = "dd-api-key"
NEW_RELIC_HEADER = "api-key"
# gRPC metadata keys: lower case letters, digits, "-", "_", "."; "grpc-" is reserved.
_KEY_RE = re.compile(r"[0-9a-z_.-]+")
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def parse_headers(value: Any) -> Headers:
    """``'k1=v1, k2=v%202'`` -> ``(('k1', 'v1'), ('k2', 'v 2'))``.

    Errors name the entry and its key, never a value: values are often API keys.
    """
    if isinstance(value, dict):  # a TOML table
        value = list(value.items())
    if isinstance(value, tuple | list):
        pairs = enumerate(value, 1)
        return tuple(_check_header(str(k).strip().lower(), str(v), n) for n, (k, v) in pairs)
    headers: list[tuple[str, str]] = []
    for number, entry in enumerate(str(value).split(","), 1):
        if not entry.strip():
            continue  # "a=1," and blank settings are harmless
        key, sep, raw = entry.partition("=")
        if not sep:
            raise ValueError(f"header entry {number} has no '=' (expected key=value)")
        headers.append(_check_header(key.strip().lower(), unquote(raw.strip()), number))
    return tuple(headers)


def _check_header(key: str, value: str, number: int) -> tuple[str, str]:
    if not _KEY_RE.fullmatch(key) or key.startswith("grpc-") or key.endswith("-bin"):
        raise ValueError(
            f"header entry {number}: key {key!r} is not a usable gRPC metadata key "
            "(letters, digits, '-', '_', '.'; not grpc-*, not *-bin)"
        )
    if not all(" " <= char <= "~" for char in value):
        raise ValueError(f"header {key!r}: the value must be printable ASCII after decoding")
    return key, value


def parse_endpoint(value: Any) -> str:
    """``host:port``, ``http://host:port`` or ``https://host:port``."""
    raw = str(value).strip()
    _split_endpoint(raw)
    return raw


def _split_endpoint(raw: str) -> tuple[str | None, str, str]:
    """(scheme or None, host, port) of an endpoint, or ValueError."""
    scheme: str | None = None
    rest = raw
    if "://" in raw:
        scheme, rest = raw.split("://", 1)
        scheme = scheme.lower()
        if scheme not in ("http", "https"):
            raise ValueError(f"scheme must be http or https, got {scheme!r}")
        rest = rest.rstrip("/")
    host, sep, port = rest.rpartition(":")
    if not sep or not host or "/" in rest or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ValueError(f"must be HOST:PORT, optionally with http:// or https://, got {raw!r}")
    return scheme, host, port


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def optional_path(value: Any) -> Path | None:
    return None if value is None or value == "" else path(value)


EXPORT_OPTIONS: list[Option] = [
    Option(
        "otlp_export_endpoint",
        lambda value: parse_endpoint(value) if value not in (None, "") else None,
        None,
        "forward stored metrics to this OTLP/gRPC endpoint (HOST:PORT or http(s)://HOST:PORT)",
        env=("OTLP_EXPORT_ENDPOINT",),
    ),
    Option(
        "otlp_export_headers",
        parse_headers,
        (),
        "gRPC headers of the export, k1=v1,k2=v2 with percent-encoded values",
        env=("OTLP_EXPORT_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"),
        secret=True,
    ),
    Option(
        "otlp_export_insecure",
        boolean,
        None,
        "plain-text export (default: only to loopback addresses; http:// and https:// decide)",
        env=("OTLP_EXPORT_INSECURE",),
    ),
    Option(
        "otlp_export_ca_file",
        optional_path,
        None,
        "PEM CA bundle to check the export endpoint's certificate (default: gRPC's roots)",
        env=("OTLP_EXPORT_CA_FILE", "OTEL_EXPORTER_OTLP_CERTIFICATE"),
    ),
    Option(
        "otlp_export_queue_batches",
        positive_int,
        1000,
        "stored batches waiting for export; when full the oldest is dropped and counted",
        env=("OTLP_EXPORT_QUEUE_BATCHES",),
    ),
    Option(
        "otlp_export_timeout_s",
        positive_float,
        10.0,
        "deadline of one export request",
        env=("OTLP_EXPORT_TIMEOUT_S",),
    ),
    Option(
        "datadog_api_key",
        optional_text,
        None,
        "Datadog API key, sent as the dd-api-key header of the export",
        env=("DATADOG_API_KEY",),
        secret=True,
    ),
    Option(
        "new_relic_license_key",
        optional_text,
        None,
        "New Relic license key, sent as the api-key header of the export",
        env=("NEW_RELIC_LICENSE_KEY",),
        secret=True,
    ),
]

# Shorter header values are not secrets worth scrubbing, and scrubbing them
# would mangle ordinary words in every log line.
_MIN_SECRET_LEN = 8


@dataclass(frozen=True, slots=True)
class ExportSettings:
    """Where and how to export; built by :meth:`resolve`, which checks everything."""

    target: str
    insecure: bool
    headers: Headers = field(default=(), repr=False)
    ca_file: Path | None = None
    queue_batches: int = 1000
    timeout_s: float = 10.0

    @classmethod
    def resolve(
        cls,
        endpoint: str,
        *,
        headers: Headers = (),
        insecure: bool | None = None,
        ca_file: Path | None = None,
        queue_batches: int = 1000,
        timeout_s: float = 10.0,
        datadog_api_key: str | None = None,
        new_relic_license_key: str | None = None,
    ) -> ExportSettings:
        try:
            scheme, host, port = _split_endpoint(endpoint.strip())
        except ValueError as exc:
            raise ConfigError(f"otlp_export_endpoint: {exc}") from None
        insecure = _plain_text(scheme, host, insecure)
        if insecure and ca_file is not None:
            raise ConfigError("otlp_export_ca_file: set, but the export is plain text")
        if ca_file is not None and not ca_file.is_file():
            raise ConfigError(f"otlp_export_ca_file: {ca_file} is not a readable file")
        if queue_batches < 1 or timeout_s <= 0:
            raise ConfigError("otlp_export_queue_batches and otlp_export_timeout_s must be > 0")
        try:
            all_headers = _with_vendor_keys(
                parse_headers(headers), datadog_api_key, new_relic_license_key
            )
        except ValueError as exc:
            raise ConfigError(f"otlp_export_headers: {exc}") from None
        for _, value in all_headers:
            if len(value) >= _MIN_SECRET_LEN:
                logs.register_secret(value)
        return cls(f"{host}:{port}", insecure, all_headers, ca_file, queue_batches, timeout_s)


def _plain_text(scheme: str | None, host: str, insecure: bool | None) -> bool:
    if scheme is None:
        return is_loopback(host) if insecure is None else insecure
    wanted = scheme == "http"
    if insecure is not None and insecure != wanted:
        raise ConfigError(
            f"otlp_export_insecure: {insecure} contradicts the endpoint's {scheme}:// scheme"
        )
    return wanted


def _with_vendor_keys(
    headers: Headers, datadog_api_key: str | None, new_relic_license_key: str | None
) -> Headers:
    merged = dict(headers)
    for key, value in (
        (DATADOG_HEADER, datadog_api_key),
        (NEW_RELIC_HEADER, new_relic_license_key),
    ):
        if value:
            merged.setdefault(key, _check_header(key, value.strip(), 0)[1])
    return tuple(merged.items())


def export_settings_of(settings: CollectorSettings) -> ExportSettings | None:
    """The export settings of a collector; None when no endpoint is configured."""
    if not settings.otlp_export_endpoint:
        return None
    return ExportSettings.resolve(
        settings.otlp_export_endpoint,
        headers=settings.otlp_export_headers,
        insecure=settings.otlp_export_insecure,
        ca_file=settings.otlp_export_ca_file,
        queue_batches=settings.otlp_export_queue_batches,
        timeout_s=settings.otlp_export_timeout_s,
        datadog_api_key=settings.datadog_api_key,
        new_relic_license_key=settings.new_relic_license_key,
    )
