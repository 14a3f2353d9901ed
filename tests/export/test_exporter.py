"""OtlpGrpcExporter against a real local OTLP receiver: delivery, retries, drops, stop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest

from collector.export.abc import ExportStats
from collector.export.otlp_grpc import OtlpGrpcExporter
from collector.export.retry import ExportRetry
from collector.export.settings import ExportSettings
from dealerpulse.certs import make_certs
from dealerpulse.tls import ServerTls, server_credentials

from .batches import make_batch
from .receiver import WAIT_S, Answer, OtlpReceiver, closed_port, running_receiver, wait_until

T = TypeVar("T")
NOW_MS = 1_760_000_000_000
FAST = ExportRetry(attempts=4, base_delay_s=0.01, max_delay_s=0.05)
# Far longer than any test waits: a test passing with it did not wait for our own backoff.
PATIENT = ExportRetry(attempts=4, base_delay_s=120.0, max_delay_s=120.0)
API_KEY = "dd-secret-0123456789abcdef"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 60.0))


def settings(port: int, **overrides: Any) -> ExportSettings:
    values: dict[str, Any] = {"queue_batches": 1000, "timeout_s": WAIT_S} | overrides
    return ExportSettings.resolve(f"127.0.0.1:{port}", **values)


@asynccontextmanager
async def running_exporter(
    export: ExportSettings, retry: ExportRetry = FAST
) -> AsyncIterator[OtlpGrpcExporter]:
    exporter = OtlpGrpcExporter(export, retry=retry)
    await exporter.start()
    try:
        yield exporter
    finally:
        await exporter.stop(5.0)


def batches(*seqs: int) -> list[Any]:
    return [make_batch("dealer-1", "agent-1", seq, NOW_MS) for seq in seqs]


def received_seqs(receiver: OtlpReceiver) -> set[int]:
    """make_batch gives sample i of batch seq the value seq * 100 + i."""
    return {int(point.value) // 100 for point in receiver.gauge_points()}


def assert_conserved(stats: ExportStats) -> None:
    settled = stats.exported + stats.dropped_queue_full + stats.failed + stats.dropped_at_shutdown
    assert stats.offered == settled + stats.queued + stats.in_flight, stats


def test_offered_batches_arrive_with_headers_and_secrets_stay_out_of_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="collector.export")

    async def scenario() -> None:
        receiver = OtlpReceiver()
        receiver.answers.append(Answer(grpc.StatusCode.UNAVAILABLE, retry_delay_s=0.01))
        async with (
            running_receiver(receiver),
            running_exporter(
                settings(
                    receiver.port,
                    headers=(("x-team", "a b,c"),),
                    datadog_api_key=API_KEY,
                )
            ) as exporter,
        ):
            # From another thread, as the writer thread does.
            await asyncio.to_thread(exporter.offer, batches(1, 2, 3, 4, 5))
            await wait_until(lambda: exporter.stats().exported == 5, "5 batches exported")
            assert received_seqs(receiver) == {1, 2, 3, 4, 5}
            assert all(h["x-team"] == "a b,c" for h in receiver.headers)
            assert all(h["dd-api-key"] == API_KEY for h in receiver.headers)
            stats = exporter.stats()
            assert stats.exported_points == len(receiver.points())
            assert (stats.failed, stats.dropped_queue_full, stats.retries) == (0, 0, 1)
            assert_conserved(stats)

    run(scenario())
    assert caplog.records, "the exporter should have logged its start and the retry"
    assert API_KEY not in caplog.text


def test_retry_info_delay_is_honoured_over_our_own_backoff() -> None:
    async def scenario() -> None:
        receiver = OtlpReceiver()
        for code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED):
            receiver.answers.append(Answer(code, retry_delay_s=0.02))
        async with (
            running_receiver(receiver),
            running_exporter(settings(receiver.port), PATIENT) as exporter,
        ):
            exporter.offer(batches(1, 2))
            await wait_until(lambda: exporter.stats().exported == 2, "the retried export")
            assert receiver.calls == 3
            assert received_seqs(receiver) == {1, 2}
            assert exporter.stats().retries == 2

    run(scenario())


def test_a_refused_request_is_not_retried_and_export_goes_on() -> None:
    async def scenario() -> None:
        receiver = OtlpReceiver()
        receiver.answers.append(Answer(grpc.StatusCode.INVALID_ARGUMENT))
        async with (
            running_receiver(receiver),
            running_exporter(settings(receiver.port)) as exporter,
        ):
            exporter.offer(batches(1))
            await wait_until(lambda: exporter.stats().failed == 1, "the refused batch failed")
            assert receiver.calls == 1
            assert "INVALID_ARGUMENT" in exporter.stats().last_error
            exporter.offer(batches(2))
            await wait_until(lambda: exporter.stats().exported == 1, "the next batch exported")
            assert received_seqs(receiver) == {2}
            assert_conserved(exporter.stats())

    run(scenario())


def test_retries_are_bounded() -> None:
    async def scenario() -> None:
        receiver = OtlpReceiver(default=Answer(grpc.StatusCode.UNAVAILABLE))
        async with (
            running_receiver(receiver),
            running_exporter(settings(receiver.port)) as exporter,
        ):
            exporter.offer(batches(1, 2))
            await wait_until(lambda: exporter.stats().failed == 2, "giving up")
            assert receiver.calls == FAST.attempts
            assert receiver.requests == []
            assert_conserved(exporter.stats())

    run(scenario())


def test_a_request_past_its_deadline_is_retried() -> None:
    async def scenario() -> None:
        receiver = OtlpReceiver()
        receiver.answers.append(Answer(hold=asyncio.Event()))  # never answers in time
        async with (
            running_receiver(receiver),
            running_exporter(settings(receiver.port, timeout_s=0.2)) as exporter,
        ):
            exporter.offer(batches(7))
            await wait_until(lambda: exporter.stats().exported == 1, "the retried export")
            assert receiver.calls == 2
            assert "DEADLINE_EXCEEDED" in exporter.stats().last_error  # the first attempt
            assert exporter.stats().retries == 1
            assert received_seqs(receiver) == {7}

    run(scenario())


def test_a_full_queue_drops_the_oldest_batches_and_counts_them() -> None:
    async def scenario() -> None:
        hold = asyncio.Event()
        receiver = OtlpReceiver()
        receiver.answers.append(Answer(hold=hold))
        async with (
            running_receiver(receiver),
            running_exporter(settings(receiver.port, queue_batches=3)) as exporter,
        ):
            exporter.offer(batches(1))
            await wait_until(lambda: receiver.holding == 1, "batch 1 in flight, held")
            for seq in range(2, 9):
                exporter.offer(batches(seq))  # never blocks, although nothing moves
            stats = exporter.stats()
            assert (stats.in_flight, stats.queued, stats.dropped_queue_full) == (1, 3, 4)
            assert_conserved(stats)
            hold.set()
            await wait_until(lambda: exporter.stats().exported == 4, "the rest exported")
            # The oldest queued (2..5) made room; the newest arrived.
            assert received_seqs(receiver) == {1, 6, 7, 8}
            assert_conserved(exporter.stats())

    run(scenario())


def test_partial_success_counts_rejected_points() -> None:
    async def scenario() -> None:
        receiver = OtlpReceiver()
        receiver.answers.append(Answer(rejected_points=2))
        async with (
            running_receiver(receiver),
            running_exporter(settings(receiver.port)) as exporter,
        ):
            exporter.offer(batches(1))
            await wait_until(lambda: exporter.stats().exported == 1, "the export")
            assert exporter.stats().rejected_points == 2

    run(scenario())


def test_stop_flushes_what_is_queued() -> None:
    async def scenario() -> None:
        async with running_receiver() as receiver:
            exporter = OtlpGrpcExporter(
                settings(receiver.port), retry=FAST, max_points_per_request=20
            )
            await exporter.start()
            exporter.offer(batches(*range(1, 11)))
            assert await exporter.stop(WAIT_S)
            stats = exporter.stats()
            assert (stats.exported, stats.dropped_at_shutdown) == (10, 0)
            assert received_seqs(receiver) == set(range(1, 11))
            # Batches of 3 gauges + 5 endpoint points: 20 points hold at most two.
            assert len(receiver.requests) >= 5

    run(scenario())


def test_stop_against_a_dead_endpoint_is_bounded_and_counts_what_is_lost() -> None:
    async def scenario() -> None:
        retry = ExportRetry(attempts=1000, base_delay_s=0.01, max_delay_s=0.02)
        exporter = OtlpGrpcExporter(settings(closed_port()), retry=retry)
        await exporter.start()
        exporter.offer(batches(1, 2, 3))
        await wait_until(lambda: exporter.stats().retries >= 2, "failing attempts")
        assert not await exporter.stop(0.2)
        exporter.offer(batches(4))  # after the stop: counted, not queued
        stats = exporter.stats()
        assert (stats.exported, stats.dropped_at_shutdown, stats.queued) == (0, 4, 0)
        assert "UNAVAILABLE" in stats.last_error
        assert_conserved(stats)

    run(scenario())


def test_tls_export_checks_the_endpoint_certificate(tmp_path: Path) -> None:
    certs = make_certs(tmp_path, hosts=("localhost", "127.0.0.1"))
    tls = server_credentials(ServerTls(certs.server_cert, certs.server_key))

    async def scenario() -> None:
        async with running_receiver(tls=tls) as receiver:
            endpoint = f"https://localhost:{receiver.port}"
            trusted = ExportSettings.resolve(endpoint, ca_file=certs.ca_cert, timeout_s=WAIT_S)
            async with running_exporter(trusted) as exporter:
                exporter.offer(batches(1))
                await wait_until(lambda: exporter.stats().exported == 1, "the TLS export")
            # gRPC's own roots do not know our private CA: the handshake fails.
            untrusted = ExportSettings.resolve(endpoint, timeout_s=WAIT_S)
            async with running_exporter(untrusted) as exporter:
                exporter.offer(batches(2))
                await wait_until(lambda: exporter.stats().failed == 1, "the refused handshake")
            assert received_seqs(receiver) == {1}

    run(scenario())
