"""The collector as it is deployed: settings, run_collector in its own process, TLS."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from ingest_batches import sample
from ingest_harness import add_dealer, bearer, new_stub, run, running_collector, within

from collector.abc import MetricStore
from collector.server import CollectorServer, run_collector
from collector.settings import COLLECTOR_OPTIONS, CollectorSettings
from collector.store import open_store
from dealerpulse.clock import FakeClock, unix_ms
from dealerpulse.config import ConfigError, resolve
from dealerpulse.v1 import ingest_pb2 as pb

REPO = Path(__file__).resolve().parents[2]


def test_settings_resolve_from_the_seed_variables_and_check_their_values() -> None:
    values = resolve(COLLECTOR_OPTIONS, {}, {"METRICS_RETENTION_DAYS": "7"})
    settings = CollectorSettings.from_values(values)
    assert settings.retention_days == 7
    assert settings.listen == "127.0.0.1:50051"
    assert settings.max_batch_bytes == 4 * 1024 * 1024
    with pytest.raises(ConfigError, match="retention_days"):
        resolve(COLLECTOR_OPTIONS, {}, {"METRICS_RETENTION_DAYS": "a month"})
    with pytest.raises(ConfigError, match="max_receive_bytes"):
        CollectorSettings(max_batch_bytes=2048, max_receive_bytes=1024)
    with pytest.raises(ConfigError, match="tls_key"):
        CollectorSettings(tls_cert=Path("cert.pem"))


def test_the_retention_setting_bounds_accepted_sample_times(store: MetricStore) -> None:
    async def scenario() -> None:
        async with running_collector(store, CollectorSettings(retention_days=7)) as collector:
            agent = collector.agent()
            ten_days_ago = collector.now_ms() - 10 * 86_400_000
            batch = dataclasses.replace(collector.batch(agent, 1), samples=(sample(ten_days_ago),))
            stream = collector.open_stream()
            ack = await stream.roundtrip(batch)
            assert (ack.status, ack.field) == (pb.Ack.REJECTED, "samples[0].time_unix_ms")
            assert "retention is 7 days" in ack.message
            assert await stream.finish() == grpc.StatusCode.OK

    run(scenario())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


RUN_COLLECTOR = textwrap.dedent(
    """
    import asyncio, logging, sys
    from collector.server import run_collector
    logging.basicConfig(level="INFO")
    asyncio.run(run_collector({"listen": sys.argv[1], "db": sys.argv[2]}))
    """
)


def test_run_collector_serves_until_sigterm_and_exits_cleanly(sqlite_url: str) -> None:
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    store = open_store(sqlite_url)
    try:
        dealer_id, token = add_dealer(store, clock)
    finally:
        store.close()
    address = f"127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [sys.executable, "-c", RUN_COLLECTOR, address, sqlite_url],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        run(talk_then_stop(process, address, dealer_id, token, unix_ms(clock)))
        output, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=20)
    assert process.returncode == 0, output
    assert "shutting down" in output
    assert token not in output
    store = open_store(sqlite_url)
    try:
        assert store.committed_batches("agent-run") == {1: 1}
    finally:
        store.close()


async def talk_then_stop(
    process: subprocess.Popen[str], address: str, dealer_id: str, token: str, now_ms: int
) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        await within(channel.channel_ready())
        health = health_pb2_grpc.HealthStub(channel)
        reply = await within(health.Check(health_pb2.HealthCheckRequest()))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        call = new_stub(channel).Stream(metadata=bearer(token))
        batch = pb.Batch(agent_id="agent-run", dealer_id=dealer_id, seq=1, created_unix_ms=now_ms)
        batch.samples.add(name="cpu.percent", value=5.0, unit="percent", time_unix_ms=now_ms)
        await within(call.write(batch))
        ack = await within(call.read())
        assert ack.status == pb.Ack.STORED
        process.send_signal(signal.SIGTERM)
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await within(call.read())
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE


# ---- TLS


def make_certificate(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (it is its own CA)."""
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
            "-subj", f"/CN={name}", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    return key, cert


needs_openssl = pytest.mark.skipif(
    shutil.which("openssl") is None, reason="the openssl command makes the test certificates"
)


@needs_openssl
def test_tls_and_mutual_tls(sqlite_url: str, tmp_path: Path) -> None:
    server_key, server_cert = make_certificate(tmp_path, "collector")
    client_key, client_cert = make_certificate(tmp_path, "agent")
    settings = CollectorSettings(
        tls_cert=server_cert, tls_key=server_key, tls_client_ca=client_cert
    )
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    store = open_store(sqlite_url)
    try:
        _, token = add_dealer(store, clock)
        run(tls_scenario(store, settings, clock, token, server_cert, client_key, client_cert))
    finally:
        store.close()


async def tls_scenario(
    store: MetricStore,
    settings: CollectorSettings,
    clock: FakeClock,
    token: str,
    server_cert: Path,
    client_key: Path,
    client_cert: Path,
) -> None:
    server = CollectorServer(store, "127.0.0.1:0", settings, clock)
    port = await server.start()
    hello = pb.HelloRequest(agent_id="agent-tls", hostname="dms-01")
    try:
        with_cert = grpc.ssl_channel_credentials(
            server_cert.read_bytes(), client_key.read_bytes(), client_cert.read_bytes()
        )
        async with grpc.aio.secure_channel(f"127.0.0.1:{port}", with_cert) as channel:
            reply = await within(new_stub(channel).Hello(hello, metadata=bearer(token)))
            assert reply.last_committed_seq == 0
        without_cert = grpc.ssl_channel_credentials(server_cert.read_bytes())
        async with grpc.aio.secure_channel(f"127.0.0.1:{port}", without_cert) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await within(new_stub(channel).Hello(hello, metadata=bearer(token), timeout=10))
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError):
                await within(new_stub(channel).Hello(hello, metadata=bearer(token), timeout=10))
    finally:
        await server.stop(5)


def test_run_collector_stops_when_its_stop_event_is_set(sqlite_url: str) -> None:
    address = f"127.0.0.1:{free_port()}"

    async def scenario() -> None:
        stop = asyncio.Event()
        serving = asyncio.create_task(run_collector({"listen": address, "db": sqlite_url}, stop))
        async with grpc.aio.insecure_channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            reply = await within(health.Check(health_pb2.HealthCheckRequest(), wait_for_ready=True))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        stop.set()
        await within(serving)

    run(scenario())
