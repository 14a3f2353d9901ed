"""The reporter speaks TLS on both of its servers: gRPC and the HTTP API/dashboard."""

from __future__ import annotations

import asyncio
import json
import ssl
import urllib.error
import urllib.request

import pytest

from collector.store import SQLAlchemyMetricStore
from dealerpulse.certs import CertFiles
from dealerpulse.clock import FakeClock
from reporter.client import connect
from reporter.server import ReporterServer, http_part
from reporter.settings import ReporterSettings

from .kit import START, add_dealer, run


def _get(url: str, token: str, context: ssl.SSLContext | None) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10, context=context) as response:
        return response.status, json.loads(response.read())


def test_reporter_grpc_and_http_serve_over_tls_only(
    store: SQLAlchemyMetricStore, certs: CertFiles
) -> None:
    clock = FakeClock(START)
    tokens = add_dealer(store, clock, "acme-motors")
    settings = ReporterSettings(
        listen="127.0.0.1:0",
        http="127.0.0.1:0",
        tls_cert=certs.server_cert,
        tls_key=certs.server_key,
    )
    trusted = ssl.create_default_context(cafile=str(certs.ca_cert))

    async def scenario() -> None:
        http = http_part(settings, store, clock)
        server = ReporterServer(store, "127.0.0.1:0", settings, clock, http=http)
        port = await server.start()
        try:
            base = f"127.0.0.1:{server.http_port}"
            url = f"https://{base}/api/ai/performance-monitoring?dealerId=acme-motors"
            status, body = await asyncio.to_thread(_get, url, tokens.dealer, trusted)
            assert status == 200 and body["success"] is True
            # Plain HTTP to the TLS port gets no answer it could read.
            with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
                await asyncio.to_thread(_get, f"http://{base}/api/dealers", tokens.dealer, None)
            # A client that does not trust our CA refuses the server.
            with pytest.raises(urllib.error.URLError):
                await asyncio.to_thread(_get, url, tokens.dealer, ssl.create_default_context())

            def over_grpc() -> str:
                root = certs.ca_cert.read_bytes()
                with connect(f"127.0.0.1:{port}", tokens.dealer, tls_root=root) as client:
                    return client.realtime("acme-motors").health.dealer_id

            assert await asyncio.to_thread(over_grpc) == "acme-motors"
        finally:
            await server.stop(1.0)

    run(scenario())
