"""Export settings: the OpenTelemetry header format, vendor keys, TLS defaults, secrets."""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.export import exporter_from_settings
from collector.export.settings import ExportSettings, export_settings_of, parse_headers
from collector.settings import COLLECTOR_OPTIONS, CollectorSettings
from dealerpulse import logs
from dealerpulse.config import ConfigError, resolve

KEYS = st.from_regex(r"[a-z][a-z0-9_.-]{0,20}", fullmatch=True).filter(
    lambda key: not key.startswith("grpc-") and not key.endswith("-bin")
)
VALUES = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)


@given(st.dictionaries(KEYS, VALUES, max_size=6))
def test_percent_encoded_headers_decode_to_what_was_encoded(headers: dict[str, str]) -> None:
    text = ",".join(f"{key}={quote(value, safe='')}" for key, value in headers.items())
    # Trimmed before decoding: a percent-encoded space is part of the value.
    assert dict(parse_headers(text)) == headers


def test_header_format_details() -> None:
    assert parse_headers(" API-Key = abc%3Ddef , x-b=1,") == (("api-key", "abc=def"), ("x-b", "1"))
    assert parse_headers("") == ()
    assert parse_headers({"x-a": "1"}) == (("x-a", "1"),)  # a TOML table


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("a=1,broken", "entry 2"),
        ("grpc-timeout=1", "'grpc-timeout'"),
        ("x y=1", "'x y'"),
        ("ok=%0Asecret-value", "'ok'"),
    ],
)
def test_bad_headers_are_named_without_their_values(text: str, names: str) -> None:
    env = {"OTLP_EXPORT_HEADERS": text}
    with pytest.raises(ConfigError) as raised:
        resolve(COLLECTOR_OPTIONS, {}, env)
    message = str(raised.value)
    assert "otlp_export_headers" in message and names in message
    assert "secret-value" not in message


def collector_settings(env: dict[str, str]) -> CollectorSettings:
    return CollectorSettings.from_values(resolve(COLLECTOR_OPTIONS, {}, env))


def test_environment_gives_endpoint_headers_and_vendor_keys() -> None:
    env = {
        "OTLP_EXPORT_ENDPOINT": "127.0.0.1:4317",
        "OTEL_EXPORTER_OTLP_HEADERS": "x-scope=dealers",
        "DATADOG_API_KEY": "dd-0123456789",
        "NEW_RELIC_LICENSE_KEY": "nr-0123456789",
        "OTLP_EXPORT_QUEUE_BATCHES": "50",
        "OTLP_EXPORT_TIMEOUT_S": "2.5",
    }
    export = export_settings_of(collector_settings(env))
    assert export is not None
    assert (export.target, export.insecure, export.queue_batches, export.timeout_s) == (
        "127.0.0.1:4317",
        True,
        50,
        2.5,
    )
    assert dict(export.headers) == {
        "x-scope": "dealers",
        "dd-api-key": "dd-0123456789",
        "api-key": "nr-0123456789",
    }
    # OTLP_EXPORT_HEADERS wins over the OpenTelemetry variable; an explicit header
    # of the same name wins over the vendor key.
    env["OTLP_EXPORT_HEADERS"] = "dd-api-key=override"
    export = export_settings_of(collector_settings(env))
    assert export is not None
    assert dict(export.headers) == {"dd-api-key": "override", "api-key": "nr-0123456789"}


def test_no_endpoint_no_exporter() -> None:
    assert export_settings_of(CollectorSettings()) is None
    assert exporter_from_settings(CollectorSettings()) is None


def test_secrets_stay_out_of_reprs() -> None:
    settings = CollectorSettings(
        otlp_export_endpoint="127.0.0.1:4317",
        otlp_export_headers=(("api-key", "hidden-0123456789"),),
        datadog_api_key="dd-hidden-0123456789",
    )
    export = export_settings_of(settings)
    for text in (repr(settings), repr(export)):
        assert "hidden-0123456789" not in text


@pytest.mark.parametrize(
    ("endpoint", "insecure", "plain_text"),
    [
        ("127.0.0.1:4317", None, True),
        ("localhost:4317", None, True),
        ("[::1]:4317", None, True),
        ("otlp.example.com:4317", None, False),
        ("10.0.0.5:4317", None, False),
        ("otlp.example.com:4317", True, True),
        ("127.0.0.1:4317", False, False),
        ("https://otlp.example.com:443", None, False),
        ("http://collector.internal:4317", None, True),
    ],
)
def test_tls_unless_loopback_or_asked(
    endpoint: str, insecure: bool | None, plain_text: bool
) -> None:
    export = ExportSettings.resolve(endpoint, insecure=insecure)
    assert export.insecure is plain_text
    assert "://" not in export.target


@pytest.mark.parametrize(
    ("endpoint", "insecure", "names"),
    [
        ("https://otlp.example.com:443", True, "otlp_export_insecure"),
        ("ftp://otlp.example.com:21", None, "otlp_export_endpoint"),
        ("otlp.example.com", None, "otlp_export_endpoint"),
        ("otlp.example.com:4317/v1/metrics", None, "otlp_export_endpoint"),
        ("otlp.example.com:4317", None, "otlp_export_ca_file"),
    ],
)
def test_contradictions_and_bad_endpoints_are_refused(
    endpoint: str, insecure: bool | None, names: str
) -> None:
    ca_file = Path("/nonexistent/ca.pem") if names == "otlp_export_ca_file" else None
    with pytest.raises(ConfigError, match=names):
        ExportSettings.resolve(endpoint, insecure=insecure, ca_file=ca_file)


def test_api_keys_are_scrubbed_from_log_records() -> None:
    key = "nr-license-scrub-me-0123456789"
    ExportSettings.resolve("127.0.0.1:4317", new_relic_license_key=key)
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed with %s", (key,), None)
    assert logs.RedactTokens().filter(record)
    assert key not in record.getMessage() and "***" in record.getMessage()
    # Short header values are not secrets and are not scrubbed (they would mangle words).
    ExportSettings.resolve("127.0.0.1:4317", headers=(("x-env", "prod"),))
    assert logs.scrub("prod database") == "prod database"
