"""The ingest server end to end: a real grpc.aio server, the real store, a real client."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from ingest_batches import CORRUPTIONS, encode, expected_field
from ingest_harness import (
    FAST_RETRY,
    FailingStore,
    HeldStore,
    RevocableStore,
    add_dealer,
    bearer,
    run,
    running_collector,
    wait_until,
    within,
)

from collector.abc import MetricStore
from collector.ingest.validate import Limits
from collector.settings import CollectorSettings
from dealerpulse.tokens import hash_token, new_token
from dealerpulse.v1 import ingest_pb2 as pb

# Small limits keep the oversized cases small; the rules are the same.
SMALL = CollectorSettings(
    max_batch_samples=50, max_batch_bytes=16 * 1024, max_receive_bytes=1024 * 1024
)
SMALL_LIMITS = Limits(max_samples=50, max_batch_bytes=16 * 1024)
STORED, DUPLICATE, REJECTED, RETRY = pb.Ack.STORED, pb.Ack.DUPLICATE, pb.Ack.REJECTED, pb.Ack.RETRY
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def code_number(code: grpc.StatusCode) -> int:
    number: int = code.value[0]
    return number


def test_a_batch_is_acked_stored_only_once_its_rows_are_committed(store: MetricStore) -> None:
    held = HeldStore(store)

    async def scenario() -> None:
        async with running_collector(held) as collector:
            agent = collector.agent()
            stream = collector.open_stream()
            await stream.send(collector.batch(agent, 1, n_samples=4))
            await wait_until(held.writing.is_set, "the write to start")
            ack_read = asyncio.ensure_future(stream.ack())
            # While the transaction is held open, no ack may be sent.
            done, _ = await asyncio.wait({ack_read}, timeout=0.2)
            assert not done, "acked before the commit"
            held.released.set()
            ack = await within(ack_read)
            assert (ack.seq, ack.status, ack.samples_stored) == (1, STORED, 4)
            rows = await asyncio.to_thread(store.count_samples, agent)
            assert rows == 4
            assert await stream.finish() == grpc.StatusCode.OK

    run(scenario())


def test_a_resent_batch_is_a_duplicate_and_adds_no_rows(store: MetricStore) -> None:
    async def scenario() -> None:
        async with running_collector(store) as collector:
            agent = collector.agent()
            batch = collector.batch(agent, 1)
            first = collector.open_stream()
            assert (await first.roundtrip(batch)).status == STORED
            assert await first.finish() == grpc.StatusCode.OK
            # The agent reconnects and resends what it did not see acked.
            second = collector.open_stream()
            ack = await second.roundtrip(batch)
            assert (ack.seq, ack.status) == (1, DUPLICATE)
            assert await asyncio.to_thread(store.count_samples, agent) == 3
            assert await asyncio.to_thread(store.committed_batches, agent) == {1: 3}
            # The same seq with other content is refused for good.
            changed = dataclasses.replace(batch, samples=batch.samples[:1])
            ack = await second.roundtrip(changed)
            assert (ack.status, ack.code, ack.field) == (REJECTED, 3, "seq")
            assert "seq 1 was already stored with different content" in ack.message
            assert await second.finish() == grpc.StatusCode.OK

    run(scenario())


def test_every_bad_input_is_rejected_by_name_and_the_stream_goes_on(store: MetricStore) -> None:
    async def scenario() -> None:
        async with running_collector(store, SMALL) as collector:
            other_dealer, _ = await asyncio.to_thread(add_dealer, store, collector.clock)
            agent = collector.agent()
            stream = collector.open_stream()
            now_ms = collector.now_ms()
            cases: list[tuple[str, pb.Batch, grpc.StatusCode, str]] = []
            for seq, corruption in enumerate(CORRUPTIONS, start=1):
                spoiled = corruption.spoil(collector.batch(agent, seq), now_ms, SMALL_LIMITS)
                field = expected_field(corruption, spoiled)
                cases.append((corruption.name, encode_unchecked(spoiled), corruption.code, field))
            cases += stream_only_cases(collector.batch(agent, 999), other_dealer)
            seq = 1000
            for name, message, code, field in cases:
                ack = await stream.roundtrip(message)
                assert (ack.status, ack.code, ack.field) == (
                    REJECTED,
                    code_number(code),
                    field,
                ), name
                assert field in ack.message, name
                seq += 1
                good = await stream.roundtrip(collector.batch(agent, seq))
                assert (good.seq, good.status) == (seq, STORED), f"after {name}"
            assert await stream.finish() == grpc.StatusCode.OK
            stored = await asyncio.to_thread(store.committed_batches, agent)
            assert sorted(stored) == list(range(1001, seq + 1))

    run(scenario())


def encode_unchecked(batch: object) -> pb.Batch:
    assert dataclasses.is_dataclass(batch)
    return encode(batch)  # type: ignore[arg-type]


def stream_only_cases(
    template: object, other_dealer: str
) -> list[tuple[str, pb.Batch, grpc.StatusCode, str]]:
    """What only the service can judge: the token's dealer, registration, encoded size."""
    base = encode_unchecked(template)
    invalid, denied = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED
    cases = []
    for name, dealer, code in (
        ("another dealer", other_dealer, denied),
        ("unknown dealer", "ghost-motors", invalid),
        ("malformed dealer", "Not A Dealer!", invalid),
        ("no dealer", "", invalid),
    ):
        message = pb.Batch()
        message.CopyFrom(base)
        message.dealer_id = dealer
        cases.append((name, message, code, "dealer_id"))
    oversized = pb.Batch()
    oversized.CopyFrom(base)
    del oversized.samples[:]
    for i in range(40):  # 40 samples (under the count limit) of ~500 bytes: over 16 KiB
        labels = {f"k{j}": f"{i}-{j}-" + "v" * 100 for j in range(4)}
        oversized.samples.add(name="big.metric", value=1.0, time_unix_ms=base.created_unix_ms)
        oversized.samples[-1].labels.update(labels)
    assert oversized.ByteSize() > SMALL_LIMITS.max_batch_bytes
    cases.append(("oversized encoding", oversized, invalid, "batch"))
    return cases


HELLO = pb.HelloRequest(agent_id="agent-1", hostname="dms-01")


def test_an_agent_id_of_another_dealer_is_permission_denied(store: MetricStore) -> None:
    async def scenario() -> None:
        async with running_collector(store) as collector:
            agent = collector.agent()
            stream = collector.open_stream()
            assert (await stream.roundtrip(collector.batch(agent, 1))).status == STORED
            # A second dealer's agent claims the same agent id.
            other_dealer, other_token = await asyncio.to_thread(add_dealer, store, collector.clock)
            intruder = collector.open_stream(other_token)
            claimed = dataclasses.replace(collector.batch(agent, 2), dealer_id=other_dealer)
            ack = await intruder.roundtrip(claimed)
            assert (ack.status, ack.code, ack.field) == (REJECTED, 7, "agent_id")
            request = pb.HelloRequest(agent_id=agent, hostname="dms-01")
            with pytest.raises(grpc.aio.AioRpcError) as hello:
                await within(collector.stub.Hello(request, metadata=bearer(other_token)))
            assert hello.value.code() == grpc.StatusCode.PERMISSION_DENIED
            # Both streams go on.
            assert (await stream.roundtrip(collector.batch(agent, 2))).status == STORED
            other_agent = dataclasses.replace(
                collector.batch(collector.agent(), 1), dealer_id=other_dealer
            )
            assert (await intruder.roundtrip(other_agent)).status == STORED
            assert await stream.finish() == grpc.StatusCode.OK
            assert await intruder.finish() == grpc.StatusCode.OK
            assert sorted(await asyncio.to_thread(store.committed_batches, agent)) == [1, 2]

    run(scenario())


def test_missing_wrong_or_malformed_tokens_are_unauthenticated(store: MetricStore) -> None:
    async def scenario() -> None:
        async with running_collector(store) as collector:
            real = collector.token
            for metadata in (
                (),
                (("authorization", "Basic dXNlcjpwYXNz"),),
                (("authorization", "Bearer not-a-token"),),
                (("authorization", f"Bearer {real}x"),),
                (("authorization", f"Bearer {new_token('ghost-motors')}"),),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as hello:
                    await within(collector.stub.Hello(HELLO, metadata=metadata))
                assert hello.value.code() == grpc.StatusCode.UNAUTHENTICATED
                assert real not in (hello.value.details() or "")
                call = collector.stub.Stream(metadata=metadata)
                await within(call.done_writing())
                assert await within(call.code()) == grpc.StatusCode.UNAUTHENTICATED

    run(scenario())


def test_hello_registers_the_agent_and_reports_its_last_seq(store: MetricStore) -> None:
    async def scenario() -> None:
        async with running_collector(store) as collector:
            agent = collector.agent()
            request = pb.HelloRequest(
                agent_id=agent, hostname="dms-01", agent_version="0.1.0", boot_id="b1"
            )
            reply = await within(collector.stub.Hello(request, metadata=collector.metadata))
            assert (reply.dealer_id, reply.last_committed_seq) == (collector.dealer_id, 0)
            assert reply.dealer_name == f"Dealer {collector.dealer_id}"
            assert abs(reply.server_time_unix_ms - collector.now_ms()) < 1000
            stream = collector.open_stream()
            for seq in (1, 2, 3):
                assert (await stream.roundtrip(collector.batch(agent, seq))).status == STORED
            await stream.finish()
            reply = await within(collector.stub.Hello(request, metadata=collector.metadata))
            assert reply.last_committed_seq == 3
            agents = await asyncio.to_thread(store.list_agents, collector.dealer_id)
            assert [a.agent_id for a in agents] == [agent]
            bad = pb.HelloRequest(agent_id="", hostname="dms-01")
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await within(collector.stub.Hello(bad, metadata=collector.metadata))
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "agent_id" in (refused.value.details() or "")

    run(scenario())


def test_a_full_writer_answers_retry_with_a_delay_and_stays_bounded(store: MetricStore) -> None:
    held = HeldStore(store)
    # Each test batch weighs 4 rows (3 samples, 1 endpoint): room for two queued.
    settings = CollectorSettings(max_queue_samples=9, max_group_samples=9, group_delay_s=0)

    async def scenario() -> None:
        async with running_collector(held, settings) as collector:
            stats = collector.server.writer_stats
            busy, late = collector.open_stream(), collector.open_stream()
            busy_agent, late_agent = collector.agent(), collector.agent()
            await busy.send(collector.batch(busy_agent, 1))
            await wait_until(held.writing.is_set, "the first write to start")
            for seq in (2, 3):
                await busy.send(collector.batch(busy_agent, seq))
            await wait_until(lambda: stats().queued_batches == 2, "a full queue")
            # Another agent's batches meet a full queue: refused at once, with a delay.
            for seq in (1, 2, 3):
                ack = await late.roundtrip(collector.batch(late_agent, seq))
                assert (ack.seq, ack.status) == (seq, RETRY)
                assert ack.code == code_number(grpc.StatusCode.RESOURCE_EXHAUSTED)
                assert ack.retry_after_ms > 0
                assert stats().queued_samples <= 9
            assert stats().submissions_refused == 3
            held.released.set()
            acks = [await busy.ack() for _ in range(3)]
            assert sorted((a.seq, a.status) for a in acks) == [(s, STORED) for s in (1, 2, 3)]
            # Once the writer caught up, the refused batches go through on resend.
            for seq in (1, 2, 3):
                assert (await late.roundtrip(collector.batch(late_agent, seq))).status == STORED
            assert await busy.finish() == grpc.StatusCode.OK
            assert await late.finish() == grpc.StatusCode.OK

    run(scenario())


def test_a_stream_reads_no_further_than_its_in_flight_bound(store: MetricStore) -> None:
    held = HeldStore(store)
    settings = CollectorSettings(max_in_flight_per_stream=2, group_delay_s=0)

    async def scenario() -> None:
        async with running_collector(held, settings) as collector:
            stats = collector.server.writer_stats
            agent = collector.agent()
            stream = collector.open_stream()
            for seq in range(1, 6):
                await stream.send(collector.batch(agent, seq))
            await wait_until(held.writing.is_set, "the first write to start")

            def taken() -> int:  # batches in the held transaction or queued for the next
                return held.held_batches + stats().queued_batches

            await wait_until(lambda: taken() == 2, "two batches taken")
            # Batches 3-5 wait in HTTP/2 flow control, not in the collector.
            stuck = asyncio.ensure_future(wait_until(lambda: taken() > 2, "more"))
            done, _ = await asyncio.wait({stuck}, timeout=0.2)
            stuck.cancel()
            assert not done, "read past the in-flight bound"
            held.released.set()
            acks = [await stream.ack() for _ in range(5)]
            assert sorted(a.seq for a in acks) == [1, 2, 3, 4, 5]
            assert {a.status for a in acks} == {STORED}
            assert await stream.finish() == grpc.StatusCode.OK

    run(scenario())


def test_a_store_outage_is_answered_retry_unavailable(store: MetricStore) -> None:
    # As many failing writes as the writer attempts: the group is given up once.
    flaky = FailingStore(store, failures=FAST_RETRY.attempts)

    async def scenario() -> None:
        async with running_collector(flaky) as collector:
            agent = collector.agent()
            stream = collector.open_stream()
            ack = await stream.roundtrip(collector.batch(agent, 1))
            assert (ack.status, ack.code) == (RETRY, code_number(grpc.StatusCode.UNAVAILABLE))
            assert ack.retry_after_ms > 0
            assert await asyncio.to_thread(store.committed_batches, agent) == {}
            # The database is back: the resend is stored.
            assert (await stream.roundtrip(collector.batch(agent, 1))).status == STORED
            assert await stream.finish() == grpc.StatusCode.OK

    run(scenario())


def test_graceful_stop_commits_and_acks_everything_accepted(store: MetricStore) -> None:
    held = HeldStore(store)

    async def scenario() -> None:
        async with running_collector(held, CollectorSettings(group_delay_s=0)) as collector:
            health = health_pb2_grpc.HealthStub(collector.channel)
            check = health_pb2.HealthCheckRequest(service="dealerpulse.v1.Ingest")
            assert (await within(health.Check(check))).status == SERVING
            stats = collector.server.writer_stats
            agent = collector.agent()
            stream = collector.open_stream()
            for seq in range(1, 6):
                await stream.send(collector.batch(agent, seq))
            await wait_until(held.writing.is_set, "the first write to start")
            await wait_until(
                lambda: held.held_batches + stats().queued_batches == 5, "all five accepted"
            )
            stopping = asyncio.create_task(collector.server.stop(10.0))
            for _ in range(200):  # the health service turns first
                if (await within(health.Check(check))).status == NOT_SERVING:
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError("health never said NOT_SERVING during the stop")
            held.released.set()
            acks = [await stream.ack() for _ in range(5)]
            assert sorted((a.seq, a.status) for a in acks) == [(s, STORED) for s in range(1, 6)]
            assert await stream.end_code() == grpc.StatusCode.UNAVAILABLE
            await within(stopping)
            assert await asyncio.to_thread(store.count_samples, agent) == 15

    run(scenario())


def test_health_and_reflection(store: MetricStore) -> None:
    async def scenario() -> None:
        async with running_collector(store) as collector:
            health = health_pb2_grpc.HealthStub(collector.channel)
            for service in ("", "dealerpulse.v1.Ingest"):
                reply = await within(health.Check(health_pb2.HealthCheckRequest(service=service)))
                assert reply.status == SERVING
            reflection = reflection_pb2_grpc.ServerReflectionStub(collector.channel)

            async def ask() -> Any:
                yield reflection_pb2.ServerReflectionRequest(list_services="")

            replies = [r async for r in reflection.ServerReflectionInfo(ask())]
            names = {s.name for s in replies[0].list_services_response.service}
            assert "dealerpulse.v1.Ingest" in names
            assert "grpc.health.v1.Health" in names

    run(scenario())


def test_many_streams_share_few_transactions(store: MetricStore) -> None:
    held = HeldStore(store)
    streams_n, batches_n = 8, 5

    async def scenario() -> None:
        async with running_collector(held, CollectorSettings(group_delay_s=0)) as collector:
            stats = collector.server.writer_stats
            streams = [collector.open_stream() for _ in range(streams_n)]
            agents = [collector.agent() for _ in streams]
            await streams[0].send(collector.batch(agents[0], 1))
            await wait_until(held.writing.is_set, "the first write to start")
            for stream, agent in zip(streams, agents, strict=True):
                first = 2 if stream is streams[0] else 1
                for seq in range(first, batches_n + 1):
                    await stream.send(collector.batch(agent, seq))
            total = streams_n * batches_n
            await wait_until(lambda: stats().queued_batches == total - 1, "everything queued")
            held.released.set()
            for stream in streams:
                acks = [await stream.ack() for _ in range(batches_n)]
                assert {a.status for a in acks} == {STORED}
                assert await stream.finish() == grpc.StatusCode.OK
            assert stats().batches_committed == total
            assert stats().groups_committed == 2  # the held one, then all the rest

    run(scenario())


def test_a_revoked_token_stops_working_within_the_cache_ttl(store: MetricStore) -> None:
    revocable = RevocableStore(store)

    async def scenario() -> None:
        async with running_collector(revocable, CollectorSettings(auth_cache_ttl_s=10)) as c:
            agent = c.agent()
            stream = c.open_stream()
            assert (await stream.roundtrip(c.batch(agent, 1))).status == STORED
            revocable.revoked.add(hash_token(c.token))
            # Within the TTL the stream goes on...
            assert (await stream.roundtrip(c.batch(agent, 2))).status == STORED
            c.clock.advance(11)
            # ...after it, the stream ends, and new calls are refused.
            await stream.send(c.batch(agent, 3))
            assert await stream.end_code() == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.aio.AioRpcError) as hello:
                await within(c.stub.Hello(pb.HelloRequest(agent_id=agent), metadata=c.metadata))
            assert hello.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert sorted(await asyncio.to_thread(store.committed_batches, agent)) == [1, 2]

    run(scenario())


def test_a_second_server_on_the_same_port_fails_to_start(store: MetricStore) -> None:
    async def scenario() -> None:
        async with running_collector(store) as collector:
            from collector.server import CollectorError, CollectorServer

            twin = CollectorServer(store, f"127.0.0.1:{collector.port}")
            with pytest.raises(CollectorError, match=str(collector.port)):
                await twin.start()

    run(scenario())
