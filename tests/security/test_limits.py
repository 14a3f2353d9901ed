"""Limits: per-dealer sample rate, per-agent series, message size, and clients that
stall (idle streams, unfinished handshakes, connections that live for ever)."""

from __future__ import annotations

import asyncio
import socket
import time

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.ingest.limits import TokenBucket
from collector.settings import CollectorSettings
from collector.store import SQLAlchemyMetricStore
from dealerpulse.clock import FakeClock, unix_ms
from dealerpulse.model import Sample, labels_of
from dealerpulse.v1 import alerts_pb2 as pb
from dealerpulse.v1 import alerts_pb2_grpc

from .kit import add_dealer, run, running_collector, within

A, B = "acme-motors", "zenith-cars"
RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


def _settings(**values: object) -> CollectorSettings:
    return CollectorSettings(listen="127.0.0.1:0", run_jobs=False, **values)  # type: ignore[arg-type]


def _samples(
    clock: FakeClock, count: int, prefix: str = "core", **labels: str
) -> tuple[Sample, ...]:
    now_ms = unix_ms(clock)
    return tuple(
        Sample("cpu.percent", 12.5, "percent", now_ms, labels_of({prefix: str(i), **labels}))
        for i in range(count)
    )


# ---- the token bucket


@settings(max_examples=200, deadline=None)
@given(
    rate=st.floats(1, 1000),
    burst_s=st.floats(0.1, 5),
    requests=st.lists(st.tuples(st.floats(0, 2), st.integers(1, 500)), max_size=60),
)
def test_a_token_bucket_admits_no_more_than_rate_and_burst_plus_one_request(
    rate: float, burst_s: float, requests: list[tuple[float, int]]
) -> None:
    bucket = TokenBucket(rate, rate * burst_s, now=0.0)
    now, admitted = 0.0, 0
    for pause, amount in requests:
        now += pause
        wait = bucket.take(amount, now)
        if wait == 0:
            admitted += amount
        else:
            # After the wait it names, the same request is admitted.
            assert bucket.take(amount, now + wait + 1e-9) == 0
            now += wait
            admitted += amount
    largest = max((amount for _, amount in requests), default=0)
    assert admitted <= rate * burst_s + rate * now + largest + 1e-6 * (1 + admitted)


def test_a_token_bucket_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="rate and burst must be positive"):
        TokenBucket(0, 10, now=0)


# ---- end to end


def test_a_dealer_over_its_rate_is_told_to_retry_and_others_are_not_slowed(
    sqlite_store: SQLAlchemyMetricStore, clock: FakeClock
) -> None:
    acme, zenith = add_dealer(sqlite_store, clock, A), add_dealer(sqlite_store, clock, B)

    async def scenario() -> None:
        settings = _settings(ingest_dealer_rate_limit=100.0)
        async with (
            running_collector(sqlite_store, settings, clock) as collector,
            collector.agent(acme.dealer, A) as agent,
            collector.agent(zenith.dealer, B) as other,
        ):
            stream = agent.stream()
            for seq in (1, 2):  # 120 of the 100-sample burst: one batch of debt
                ack = await stream.roundtrip(agent.batch(seq, _samples(clock, 60)))
                assert ack.status.name == "STORED"
            ack = await stream.roundtrip(agent.batch(3, _samples(clock, 60)))
            assert ack.status.name == "RETRY" and ack.code == RESOURCE_EXHAUSTED.value[0]
            assert "rate limit of 100 samples/s" in ack.message
            assert ack.retry_after_ms == 210  # 20 samples of debt + 1, at 100/s
            theirs = await other.stream().roundtrip(other.batch(1, _samples(clock, 60)))
            assert theirs.status.name == "STORED"
            clock.advance(ack.retry_after_ms / 1000)
            ack = await stream.roundtrip(agent.batch(3, _samples(clock, 60)))
            assert ack.status.name == "STORED"
            assert sqlite_store.count_samples(agent.agent_id) == 180

    run(scenario())


@pytest.mark.parametrize("columnar", [False, True], ids=["rows", "columns"])
def test_new_series_beyond_the_agent_limit_are_refused_and_existing_ones_flow(
    sqlite_store: SQLAlchemyMetricStore, clock: FakeClock, columnar: bool
) -> None:
    acme = add_dealer(sqlite_store, clock, A)
    settings = _settings(max_series_per_agent=5)

    async def scenario() -> None:
        async with (
            running_collector(sqlite_store, settings, clock) as collector,
            collector.agent(acme.dealer, A) as agent,
        ):
            stream = agent.stream()
            ack = await stream.roundtrip(agent.batch(1, _samples(clock, 3)), columnar=columnar)
            assert ack.status.name == "STORED" and ack.samples_stored == 3 and not ack.message
            clock.advance(1)
            ack = await stream.roundtrip(agent.batch(2, _samples(clock, 7)), columnar=columnar)
            assert ack.status.name == "STORED" and ack.samples_stored == 5
            assert ack.code == RESOURCE_EXHAUSTED.value[0] and ack.field == "samples"
            assert "max_series_per_agent=5" in ack.message
            clock.advance(1)
            ack = await stream.roundtrip(agent.batch(3, _samples(clock, 5)), columnar=columnar)
            assert ack.samples_stored == 5 and not ack.message
            agent_id = agent.agent_id
        # A restarted collector knows the agent's series from the store.
        async with (
            running_collector(sqlite_store, settings, clock) as collector,
            collector.agent(acme.dealer, A) as agent,
        ):
            agent.agent_id = agent_id
            clock.advance(1)
            ack = await agent.stream().roundtrip(
                agent.batch(4, _samples(clock, 6)), columnar=columnar
            )
            assert ack.samples_stored == 5 and "max_series_per_agent=5" in ack.message
        assert sqlite_store.count_samples(agent_id) == 3 + 5 + 5 + 5

    run(scenario())


def test_oversized_messages_are_refused_on_every_service(
    sqlite_store: SQLAlchemyMetricStore, clock: FakeClock
) -> None:
    acme = add_dealer(sqlite_store, clock, A)
    settings = _settings(max_batch_bytes=32 * 1024, max_receive_bytes=64 * 1024)
    padding = "x" * 250  # label values: ~300 bytes per sample on the wire

    async def scenario() -> None:
        async with (
            running_collector(sqlite_store, settings, clock) as collector,
            collector.agent(acme.dealer, A) as agent,
        ):
            stream = agent.stream()
            big = agent.batch(1, _samples(clock, 150, pad=padding))  # ~45 KiB
            ack = await stream.roundtrip(big)
            assert ack.status.name == "REJECTED" and ack.field == "batch"
            assert "at most 32768 allowed" in ack.message
            ack = await stream.roundtrip(agent.batch(2))  # the stream goes on
            assert ack.status.name == "STORED"
            huge = agent.batch(3, _samples(clock, 400, pad=padding))  # ~120 KiB
            await within(stream.call.write(_encode(huge)))
            code, _ = await stream.end()
            assert code == RESOURCE_EXHAUSTED
            async with grpc.aio.insecure_channel(collector.address) as channel:
                stub = alerts_pb2_grpc.AlertsStub(channel)  # type: ignore[no-untyped-call]
                request = pb.CreateRuleRequest(rule=pb.AlertRule(name="n" * 100_000))
                metadata = (("authorization", f"Bearer {acme.dealer}"),)
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await within(stub.CreateRule(request, metadata=metadata))
                assert refused.value.code() == RESOURCE_EXHAUSTED

    run(scenario())


def _encode(batch: object) -> bytes:
    from agent.codec import encode_batch

    return encode_batch(batch)  # type: ignore[arg-type]


def test_a_stream_that_sends_nothing_is_ended_after_the_idle_timeout(
    sqlite_store: SQLAlchemyMetricStore, clock: FakeClock
) -> None:
    acme = add_dealer(sqlite_store, clock, A)

    async def scenario() -> None:
        settings = _settings(stream_idle_timeout_s=0.3)
        async with (
            running_collector(sqlite_store, settings, clock) as collector,
            collector.agent(acme.dealer, A) as agent,
        ):
            stream = agent.stream()
            assert (await stream.roundtrip(agent.batch(1))).status.name == "STORED"
            code, detail = await stream.end(timeout_s=10)
            assert code == grpc.StatusCode.UNAVAILABLE and "no batch for 0.3 s" in detail
            await wait_for_no_streams(collector)

    run(scenario())


async def wait_for_no_streams(collector: object) -> None:
    service = collector.server._service  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10
    while service.open_streams:
        assert time.monotonic() < deadline, "the idle stream was not released"
        await asyncio.sleep(0.01)


def test_a_client_that_never_finishes_the_handshake_is_disconnected(
    sqlite_store: SQLAlchemyMetricStore, clock: FakeClock
) -> None:
    def silent_client(port: int) -> None:
        """Connect, say nothing, read until the server hangs up (a 10 s timeout fails)."""
        with socket.create_connection(("127.0.0.1", port), timeout=10) as peer:
            for _ in range(100):  # the server may greet with HTTP/2 SETTINGS first
                if not peer.recv(65536):
                    return
        raise AssertionError("the server kept talking to a client that never spoke")

    async def scenario() -> None:
        settings = _settings(handshake_timeout_s=0.3)
        async with running_collector(sqlite_store, settings, clock) as collector:
            await asyncio.to_thread(silent_client, collector.port)

    run(scenario())


def test_connections_are_closed_at_their_maximum_age(
    sqlite_store: SQLAlchemyMetricStore, clock: FakeClock
) -> None:
    acme = add_dealer(sqlite_store, clock, A)

    async def scenario() -> None:
        settings = _settings(max_connection_age_s=0.5, max_connection_age_grace_s=0.5)
        async with (
            running_collector(sqlite_store, settings, clock) as collector,
            collector.agent(acme.dealer, A) as agent,
        ):
            stream = agent.stream()
            assert (await stream.roundtrip(agent.batch(1))).status.name == "STORED"
            code, _ = await stream.end(timeout_s=15)
            assert code == grpc.StatusCode.UNAVAILABLE

    run(scenario())
