"""The authorization matrix: every RPC of the collector x role x own/other dealer.

Roles: admin, dealer (the agents' token), viewer (read-only), none (no token),
revoked (a dealer token revoked before the call). Nothing of dealer A can be
read, written, acknowledged or silenced with dealer B's tokens; what another
dealer owns answers NOT_FOUND when named by id, so ids are not revealed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from collector.auth import Principal, Role
from collector.store import SQLAlchemyMetricStore
from collector.store.schema import system_alerts
from dealerpulse.clock import FakeClock, to_unix_ms
from dealerpulse.tokens import hash_token, new_token
from dealerpulse.v1 import alerts_pb2 as pb
from dealerpulse.v1 import alerts_pb2_grpc

from .kit import Collector, Tokens, add_admin, add_dealer, run, running_collector, within

OK = grpc.StatusCode.OK
DENIED = grpc.StatusCode.PERMISSION_DENIED
NOT_FOUND = grpc.StatusCode.NOT_FOUND
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
A, B = "acme-motors", "zenith-cars"
OTLP_EXPORT = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"

# ---- the operations: each prepares what it needs (as admin) and makes one call


Op = Callable[["World", "str | None", str], Awaitable[None]]


class World:
    """A running collector with dealers A and B and an admin; calls as any token."""

    def __init__(self, collector: Collector, admin: str, dealers: dict[str, Tokens]) -> None:
        self.collector = collector
        self.admin = admin
        self.dealers = dealers
        self.channel = grpc.aio.insecure_channel(collector.address)
        self.stub = alerts_pb2_grpc.AlertsStub(self.channel)  # type: ignore[no-untyped-call]
        self._names = 0

    async def call(self, token: str | None, method: str, request: Any) -> Any:
        metadata = () if token is None else (("authorization", f"Bearer {token}"),)
        return await within(getattr(self.stub, method)(request, metadata=metadata, timeout=10))

    async def rule(self, dealer_id: str) -> int:
        self._names += 1
        rule = pb.AlertRule(
            name=f"cpu hot {self._names}",
            metric="cpu.percent",
            aggregation="avg",
            window_s=60,
            comparator=">",
            thresholds=pb.Thresholds(warning=80),
            dealer_id=dealer_id,
            enabled=True,
        )
        created = await self.call(self.admin, "CreateRule", pb.CreateRuleRequest(rule=rule))
        return int(created.id)

    def silence_message(self, dealer_id: str) -> pb.Silence:
        now = self.collector.clock.now()
        return pb.Silence(
            dealer_id=dealer_id,
            starts_unix_ms=to_unix_ms(now),
            ends_unix_ms=to_unix_ms(now + timedelta(hours=1)),
            comment="maintenance",
        )

    async def silence(self, dealer_id: str) -> int:
        request = pb.CreateSilenceRequest(silence=self.silence_message(dealer_id))
        return int((await self.call(self.admin, "CreateSilence", request)).id)

    def alert(self, dealer_id: str) -> int:
        at = self.collector.clock.now()
        row = {
            "dealer_id": dealer_id,
            "type": "cpu",
            "severity": "critical",
            "message": f"cpu on {dealer_id}",
            "resolved": False,
            "created_at": at,
            "agent_id": "agent-1",
            "labels": {},
            "labels_key": "",
            "value": 97.0,
            "threshold": 95.0,
            "state": "firing",
            "started_at": at,
            "last_change_at": at,
        }
        with self.collector.store.engine.begin() as connection:
            inserted = connection.execute(system_alerts.insert().returning(system_alerts.c.id), row)
            return int(inserted.scalar_one())

    def alert_row(self, alert_id: int) -> Any:
        with self.collector.store.engine.connect() as connection:
            query = system_alerts.select().where(system_alerts.c.id == alert_id)
            return connection.execute(query).one()


async def get_rule(world: World, token: str | None, target: str) -> None:
    rule_id = await world.rule(target)
    await world.call(token, "GetRule", pb.GetRuleRequest(id=rule_id))


async def list_rules(world: World, token: str | None, target: str) -> None:
    await world.rule(target)
    answer = await world.call(token, "ListRules", pb.ListRulesRequest(dealer_id=target))
    assert answer.rules and {rule.dealer_id for rule in answer.rules} == {target}


async def create_rule(world: World, token: str | None, target: str) -> None:
    rule = pb.AlertRule(
        name=f"made for {target} {id(token)}",
        metric="memory.percent",
        aggregation="max",
        window_s=60,
        comparator=">",
        thresholds=pb.Thresholds(critical=90),
        dealer_id=target,
        enabled=True,
    )
    await world.call(token, "CreateRule", pb.CreateRuleRequest(rule=rule))


async def update_rule(world: World, token: str | None, target: str) -> None:
    rule_id = await world.rule(target)
    stored = await world.call(world.admin, "GetRule", pb.GetRuleRequest(id=rule_id))
    stored.thresholds.warning = 50
    await world.call(token, "UpdateRule", pb.UpdateRuleRequest(rule=stored))
    changed = await world.call(world.admin, "GetRule", pb.GetRuleRequest(id=rule_id))
    assert changed.thresholds.warning == 50


async def delete_rule(world: World, token: str | None, target: str) -> None:
    rule_id = await world.rule(target)
    await world.call(token, "DeleteRule", pb.DeleteRuleRequest(id=rule_id))


async def list_alerts(world: World, token: str | None, target: str) -> None:
    alert_id = world.alert(target)
    answer = await world.call(token, "ListAlerts", pb.ListAlertsRequest(dealer_id=target))
    assert alert_id in [alert.id for alert in answer.alerts]


async def acknowledge(world: World, token: str | None, target: str) -> None:
    alert_id = world.alert(target)
    try:
        await world.call(token, "AcknowledgeAlert", pb.AcknowledgeAlertRequest(id=alert_id))
    except grpc.aio.AioRpcError:
        assert world.alert_row(alert_id).acknowledged_by is None
        raise


async def resolve(world: World, token: str | None, target: str) -> None:
    alert_id = world.alert(target)
    try:
        await world.call(token, "ResolveAlert", pb.ResolveAlertRequest(id=alert_id))
    except grpc.aio.AioRpcError:
        assert world.alert_row(alert_id).state == "firing"
        raise


async def create_silence(world: World, token: str | None, target: str) -> None:
    request = pb.CreateSilenceRequest(silence=world.silence_message(target))
    await world.call(token, "CreateSilence", request)


async def list_silences(world: World, token: str | None, target: str) -> None:
    silence_id = await world.silence(target)
    answer = await world.call(token, "ListSilences", pb.ListSilencesRequest(dealer_id=target))
    assert silence_id in [silence.id for silence in answer.silences]


async def delete_silence(world: World, token: str | None, target: str) -> None:
    silence_id = await world.silence(target)
    await world.call(token, "DeleteSilence", pb.DeleteSilenceRequest(id=silence_id))


READS: dict[str, Op] = {
    "GetRule": get_rule,
    "ListRules": list_rules,
    "ListAlerts": list_alerts,
    "ListSilences": list_silences,
}
# Writes naming an existing object by id: another dealer's is NOT_FOUND.
WRITES_BY_ID: dict[str, Op] = {
    "UpdateRule": update_rule,
    "DeleteRule": delete_rule,
    "AcknowledgeAlert": acknowledge,
    "ResolveAlert": resolve,
    "DeleteSilence": delete_silence,
}
CREATES: dict[str, Op] = {"CreateRule": create_rule, "CreateSilence": create_silence}
ROLES = ("admin", "dealer", "viewer", "none", "revoked")


def expected(role: str, op: str, own: bool) -> grpc.StatusCode:
    if role in ("none", "revoked"):
        return UNAUTHENTICATED
    if role == "admin":
        return OK
    by_id = op in WRITES_BY_ID or op == "GetRule"
    if not own:
        return NOT_FOUND if by_id else DENIED
    if op in READS or role == "dealer":
        return OK
    return DENIED  # a viewer writing its own dealer's objects


def _token(world: World, role: str, revoked: str) -> str | None:
    tokens = world.dealers[A]
    return {
        "admin": world.admin,
        "dealer": tokens.dealer,
        "viewer": tokens.viewer,
        "none": None,
        "revoked": revoked,
    }[role]


def test_every_alerts_rpc_by_role_and_dealer(
    sqlite_store: SQLAlchemyMetricStore, clock: FakeClock
) -> None:
    dealers = {d: add_dealer(sqlite_store, clock, d) for d in (A, B)}
    admin = add_admin(sqlite_store, clock)
    revoked = new_token(A)
    sqlite_store.add_token(A, hash_token(revoked), clock.now())
    sqlite_store.revoke_token(hash_token(revoked), clock.now())
    operations = {**READS, **WRITES_BY_ID, **CREATES}
    outcomes: dict[tuple[str, str, str], grpc.StatusCode] = {}

    async def scenario() -> None:
        async with running_collector(sqlite_store, clock=clock) as collector:
            world = World(collector, admin, dealers)
            try:
                for role in ROLES:
                    token = _token(world, role, revoked)
                    for name, op in operations.items():
                        for target in (A, B):
                            outcomes[(role, name, target)] = await _outcome(
                                op, world, token, target
                            )
            finally:
                await world.channel.close(None)

    run(scenario())
    wrong = {
        key: (code.name, expected(key[0], key[1], key[2] == A).name)
        for key, code in outcomes.items()
        if code != expected(key[0], key[1], key[2] == A)
    }
    assert not wrong, f"(role, rpc, dealer): (got, expected): {wrong}"
    assert len(outcomes) == len(ROLES) * len(operations) * 2


async def _outcome(op: Op, world: World, token: str | None, target: str) -> grpc.StatusCode:
    try:
        await op(world, token, target)
    except grpc.aio.AioRpcError as refused:
        return refused.code()
    return OK


def test_listings_without_a_dealer_show_only_the_callers_dealer(
    sqlite_store: SQLAlchemyMetricStore, clock: FakeClock
) -> None:
    dealers = {d: add_dealer(sqlite_store, clock, d) for d in (A, B)}
    admin = add_admin(sqlite_store, clock)

    async def scenario() -> None:
        async with running_collector(sqlite_store, clock=clock) as collector:
            world = World(collector, admin, dealers)
            try:
                for dealer_id in (A, B):
                    await world.rule(dealer_id)
                    await world.silence(dealer_id)
                    world.alert(dealer_id)
                for token in (dealers[A].dealer, dealers[A].viewer):
                    rules = await world.call(token, "ListRules", pb.ListRulesRequest())
                    alerts = await world.call(token, "ListAlerts", pb.ListAlertsRequest())
                    silences = await world.call(token, "ListSilences", pb.ListSilencesRequest())
                    seen = [item.dealer_id for item in (*rules.rules, *alerts.alerts)]
                    seen += [item.dealer_id for item in silences.silences]
                    assert seen and set(seen) == {A}
                everything = await world.call(admin, "ListAlerts", pb.ListAlertsRequest())
                assert {alert.dealer_id for alert in everything.alerts} == {A, B}
            finally:
                await world.channel.close(None)

    run(scenario())


@pytest.mark.parametrize("role", ROLES)
def test_ingest_and_otlp_take_metrics_only_from_the_dealers_own_token(
    sqlite_store: SQLAlchemyMetricStore, clock: FakeClock, role: str
) -> None:
    dealers = {d: add_dealer(sqlite_store, clock, d) for d in (A, B)}
    admin = add_admin(sqlite_store, clock)
    revoked = new_token(A)
    sqlite_store.add_token(A, hash_token(revoked), clock.now())
    sqlite_store.revoke_token(hash_token(revoked), clock.now())
    writer = {"dealer": OK, "viewer": DENIED, "admin": DENIED}.get(role, UNAUTHENTICATED)

    async def scenario() -> None:
        async with running_collector(sqlite_store, clock=clock) as collector:
            world = World(collector, admin, dealers)
            token = _token(world, role, revoked) or ""
            try:
                assert await _otlp_export(world, token if role != "none" else None) == writer
                async with collector.agent(token, A) as agent:
                    assert await _hello(agent, world, role) == writer
                    if writer is OK:
                        await _stream_own_and_other(agent)
                    else:
                        code, detail = await agent.stream().end()
                        assert code == writer
                        if role == "viewer":
                            assert "read-only" in detail
                        if role == "admin":
                            assert "cannot send metrics" in detail
                assert sqlite_store.list_agents(B) == []
            finally:
                await world.channel.close(None)

    run(scenario())


async def _hello(agent: Any, world: World, role: str) -> grpc.StatusCode:
    if role == "none":
        channel = world.channel
        call = channel.unary_unary(
            "/dealerpulse.v1.Ingest/Hello", request_serializer=None, response_deserializer=None
        )
        try:
            await within(call(b"", timeout=10))
        except grpc.aio.AioRpcError as refused:
            return refused.code()
        return OK
    try:
        await agent.hello()
    except grpc.aio.AioRpcError as refused:
        return refused.code()
    return OK


async def _stream_own_and_other(agent: Any) -> None:
    stream = agent.stream()
    own = await stream.roundtrip(agent.batch(1))
    assert own.status.name == "STORED"
    other = dataclasses.replace(agent.batch(2), dealer_id=B)
    refused = await stream.roundtrip(other)
    assert refused.status.name == "REJECTED" and refused.code == DENIED.value[0]
    assert refused.field == "dealer_id"


async def _otlp_export(world: World, token: str | None) -> grpc.StatusCode:
    call = world.channel.unary_unary(
        OTLP_EXPORT, request_serializer=None, response_deserializer=None
    )
    metadata = () if token is None else (("authorization", f"Bearer {token}"),)
    request = ExportMetricsServiceRequest().SerializeToString()
    try:
        await within(call(request, metadata=metadata, timeout=10))
    except grpc.aio.AioRpcError as refused:
        return refused.code()
    return OK


@pytest.mark.parametrize(
    ("principal", "reads", "writes", "manages"),
    [
        (Principal(Role.ADMIN, None, "h"), {A, B, None}, {A, B, None}, True),
        (Principal(Role.DEALER, A, "h"), {A}, {A}, False),
        (Principal(Role.VIEWER, A, "h"), {A}, set(), False),
    ],
)
def test_principal_permissions(
    principal: Principal, reads: set[str | None], writes: set[str | None], manages: bool
) -> None:
    for dealer_id in (A, B, None):
        assert principal.may_read(dealer_id) == (dealer_id in reads)
        assert principal.may_write(dealer_id) == (dealer_id in writes)
    assert principal.may_manage() == manages
    assert principal.may_ingest() == (principal.role is Role.DEALER)
