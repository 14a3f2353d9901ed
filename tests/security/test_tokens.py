"""Token roles, rotation and revocation: in the store, by the CLI, and in a running
collector without a restart (within the auth cache TTL, driven by a fake clock)."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import grpc
import pytest

from collector.settings import CollectorSettings
from collector.store import SQLAlchemyMetricStore, open_store
from dealerpulse import cli
from dealerpulse.clock import FakeClock
from dealerpulse.tokens import hash_token, new_token
from dealerpulse.v1 import alerts_pb2 as pb
from dealerpulse.v1 import alerts_pb2_grpc

from .kit import add_dealer, run, running_collector, within

A = "acme-motors"
TTL_S = 10.0


def test_store_keeps_roles_rotates_and_revokes_by_fingerprint(
    store: SQLAlchemyMetricStore, clock: FakeClock
) -> None:
    tokens = add_dealer(store, clock, A)
    dealer_hash, viewer_hash = hash_token(tokens.dealer), hash_token(tokens.viewer)
    assert store.token_roles(A) == {dealer_hash: "dealer", viewer_hash: "viewer"}
    assert store.token_hashes(A) == [dealer_hash]  # what may write: never a viewer's

    rotated = hash_token(new_token(A))
    now = clock.now()
    assert store.rotate_token(A, rotated, now, now + timedelta(hours=1)) == 1
    assert set(store.token_roles(A)) == {dealer_hash, viewer_hash, rotated}
    clock.advance(3600)
    assert store.token_roles(A) == {viewer_hash: "viewer", rotated: "dealer"}

    listed = {record.fingerprint: record for record in store.list_tokens(A)}
    assert set(listed) == {h[:12] for h in (dealer_hash, viewer_hash, rotated)}
    assert not listed[dealer_hash[:12]].valid_at(clock.now())
    assert store.revoke_tokens(A, clock.now(), viewer_hash[:8]) == 1
    assert store.token_roles(A) == {rotated: "dealer"}
    with pytest.raises(ValueError, match="at least 6 hex digits"):
        store.revoke_tokens(A, clock.now(), "abc")
    assert store.revoke_tokens(A, clock.now()) == 1
    assert store.token_roles(A) == {}


def test_a_revoked_token_stops_working_within_the_ttl_also_on_an_open_stream(
    sqlite_store: SQLAlchemyMetricStore, clock: FakeClock
) -> None:
    tokens = add_dealer(sqlite_store, clock, A)
    settings = CollectorSettings(listen="127.0.0.1:0", run_jobs=False, auth_cache_ttl_s=TTL_S)

    async def scenario() -> None:
        async with running_collector(sqlite_store, settings, clock) as collector:
            async with collector.agent(tokens.dealer, A) as agent:
                await agent.hello()
                stream = agent.stream()
                assert (await stream.roundtrip(agent.batch(1))).status.name == "STORED"
                assert sqlite_store.revoke_tokens(A, clock.now()) == 2
                # Still trusted from the cache: a revocation takes effect within the TTL.
                assert (await stream.roundtrip(agent.batch(2))).status.name == "STORED"
                clock.advance(TTL_S + 0.1)
                await within(stream.call.write(_encoded(agent.batch(3))))
                code, detail = await stream.end()
                assert code == grpc.StatusCode.UNAUTHENTICATED and "revoked" in detail
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await agent.hello()
                assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert sqlite_store.committed_batches(agent.agent_id).keys() == {1, 2}
            async with grpc.aio.insecure_channel(collector.address) as channel:
                stub = alerts_pb2_grpc.AlertsStub(channel)  # type: ignore[no-untyped-call]
                metadata = (("authorization", f"Bearer {tokens.viewer}"),)
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await within(stub.ListAlerts(pb.ListAlertsRequest(), metadata=metadata))
                assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED

    run(scenario())


def test_rotation_with_grace_keeps_old_agents_writing_until_the_grace_ends(
    sqlite_store: SQLAlchemyMetricStore, clock: FakeClock
) -> None:
    tokens = add_dealer(sqlite_store, clock, A)
    new = new_token(A)
    settings = CollectorSettings(listen="127.0.0.1:0", run_jobs=False, auth_cache_ttl_s=TTL_S)

    async def hello_code(collector: object, token: str) -> grpc.StatusCode:
        async with collector.agent(token, A) as agent:  # type: ignore[attr-defined]
            try:
                await agent.hello()
            except grpc.aio.AioRpcError as refused:
                return refused.code()
        return grpc.StatusCode.OK

    async def scenario() -> None:
        async with running_collector(sqlite_store, settings, clock) as collector:
            now = clock.now()
            sqlite_store.rotate_token(A, hash_token(new), now, now + timedelta(hours=1))
            clock.advance(TTL_S + 1)
            assert await hello_code(collector, tokens.dealer) == grpc.StatusCode.OK
            assert await hello_code(collector, new) == grpc.StatusCode.OK
            clock.advance(3600)
            assert await hello_code(collector, tokens.dealer) == grpc.StatusCode.UNAUTHENTICATED
            assert await hello_code(collector, new) == grpc.StatusCode.OK

    run(scenario())


def _encoded(batch: object) -> bytes:
    from agent.codec import encode_batch

    return encode_batch(batch)  # type: ignore[arg-type]


def _printed_token(output: str) -> str:
    found = re.search(r"^token:\s+(\S+)$", output, re.MULTILINE)
    assert found, output
    return found.group(1)


def _fingerprint(output: str) -> str:
    found = re.search(r"^fingerprint:\s+([0-9a-f]{12})$", output, re.MULTILINE)
    assert found, output
    return found.group(1)


def test_token_commands_add_rotate_list_and_revoke(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ["--db", sqlite_url]
    assert cli.main(["dealer", "add", "Acme Motors", *db]) == 0
    first = _printed_token(capsys.readouterr().out)
    assert cli.main(["dealer", "add-token", A, "--role", "viewer", *db]) == 0
    printed = capsys.readouterr().out
    viewer, viewer_print = _printed_token(printed), _fingerprint(printed)
    assert viewer_print == hash_token(viewer)[:12]

    assert cli.main(["dealer", "rotate-token", A, *db]) == 0
    printed = capsys.readouterr().out
    rotated = _printed_token(printed)
    assert "1 old dealer token(s) stop working now" in printed
    store = open_store(sqlite_url)
    try:
        assert store.token_roles(A) == {
            hash_token(viewer): "viewer",
            hash_token(rotated): "dealer",
        }
        assert cli.main(["dealer", "tokens", A, "--json", *db]) == 0
        listed = json.loads(capsys.readouterr().out)
        assert [(row["role"], row["valid"]) for row in listed] == [
            ("dealer", False),
            ("viewer", True),
            ("dealer", True),
        ]
        assert all(first not in json.dumps(row) for row in listed)

        assert cli.main(["dealer", "revoke", A, "--token-prefix", viewer_print[:8], *db]) == 0
        assert store.token_roles(A) == {hash_token(rotated): "dealer"}
        assert cli.main(["dealer", "revoke", A, "--token-prefix", "ffffff0", *db]) == 1
        assert "no valid token matched" in capsys.readouterr().err
        assert cli.main(["dealer", "revoke", A, "--all", *db]) == 0
        assert store.token_roles(A) == {}
        assert cli.main(["dealer", "add-token", "nobody", *db]) == 1
        assert "'nobody' is not registered" in capsys.readouterr().err
    finally:
        store.close()


def test_rotate_with_grace_keeps_the_old_token_valid_until_then(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ["--db", sqlite_url]
    assert cli.main(["dealer", "add", "Acme Motors", *db]) == 0
    first = _printed_token(capsys.readouterr().out)
    assert cli.main(["dealer", "rotate-token", A, "--grace", "1h", *db]) == 0
    rotated = _printed_token(capsys.readouterr().out)
    store = open_store(sqlite_url)
    try:
        assert set(store.token_hashes(A)) == {hash_token(first), hash_token(rotated)}
        old = next(r for r in store.list_tokens(A) if r.fingerprint == hash_token(first)[:12])
        assert old.revoked_at is not None
        assert timedelta(minutes=59) < old.revoked_at - old.created_at < timedelta(minutes=61)
    finally:
        store.close()
