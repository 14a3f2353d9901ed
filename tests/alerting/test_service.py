"""The Alerts gRPC service through a real collector server on 127.0.0.1:0."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import grpc
import pytest

from collector.server import CollectorServer
from collector.settings import CollectorSettings
from collector.store import SQLAlchemyMetricStore
from collector.store.schema import system_alerts
from dealerpulse.clock import FakeClock, to_unix_ms
from dealerpulse.tokens import hash_token, new_token
from dealerpulse.v1 import alerts_pb2 as pb
from dealerpulse.v1 import alerts_pb2_grpc

from .factories import NOW

ADMIN_TOKEN = "admin-token-for-tests"
OTHER = "zenith-cars"


def _cpu_rule(dealer_id: str, name: str = "cpu hot") -> pb.AlertRule:
    return pb.AlertRule(
        name=name,
        metric="cpu.percent",
        aggregation="avg",
        window_s=60,
        comparator=">",
        thresholds=pb.Thresholds(warning=80, critical=95),
        for_s=30,
        dealer_id=dealer_id,
        channels=["slack"],
        enabled=True,
    )


class Client:
    def __init__(self, stub: alerts_pb2_grpc.AlertsStub, token: str | None) -> None:
        self.stub, self.token = stub, token

    async def __call__(self, method: str, request: Any) -> Any:
        metadata = () if self.token is None else (("authorization", f"Bearer {self.token}"),)
        call: Callable[..., Awaitable[Any]] = getattr(self.stub, method)
        return await asyncio.wait_for(call(request, metadata=metadata, timeout=10), 20)

    async def refused(self, method: str, request: Any) -> tuple[grpc.StatusCode, str]:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await self(method, request)
        return refused.value.code(), refused.value.details() or ""


def _serve(store: SQLAlchemyMetricStore, scenario: Callable[..., Awaitable[None]]) -> None:
    acme, zenith = new_token("acme-motors"), new_token(OTHER)
    store.create_dealer("acme-motors", "Acme Motors", hash_token(acme), NOW)
    store.create_dealer(OTHER, "Zenith Cars", hash_token(zenith), NOW)
    store.add_token(None, hash_token(ADMIN_TOKEN), NOW, role="admin")
    clock = FakeClock(NOW)

    async def run() -> None:
        server = CollectorServer(store, "127.0.0.1:0", CollectorSettings(), clock)
        port = await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = alerts_pb2_grpc.AlertsStub(channel)  # type: ignore[no-untyped-call]
                await scenario(
                    Client(stub, acme), Client(stub, zenith), Client(stub, ADMIN_TOKEN), stub
                )
        finally:
            await server.stop(5)

    asyncio.run(run())


def test_rules_are_managed_per_dealer_and_global_rules_need_an_admin(
    store: SQLAlchemyMetricStore,
) -> None:
    async def scenario(acme: Client, zenith: Client, admin: Client, stub: Any) -> None:
        created = await acme("CreateRule", pb.CreateRuleRequest(rule=_cpu_rule("acme-motors")))
        assert created.id > 0 and created.dealer_id == "acme-motors"
        fetched = await acme("GetRule", pb.GetRuleRequest(id=created.id))
        assert fetched.thresholds.warning == 80 and not fetched.thresholds.HasField(
            "warning_recovery"
        )
        code, _ = await zenith.refused("GetRule", pb.GetRuleRequest(id=created.id))
        assert code == grpc.StatusCode.NOT_FOUND
        code, detail = await acme.refused("CreateRule", pb.CreateRuleRequest(rule=_cpu_rule("")))
        assert code == grpc.StatusCode.PERMISSION_DENIED and "admin" in detail
        code, _ = await acme.refused("CreateRule", pb.CreateRuleRequest(rule=_cpu_rule(OTHER)))
        assert code == grpc.StatusCode.PERMISSION_DENIED
        bad = _cpu_rule("acme-motors", "median")
        bad.aggregation = "median"
        code, detail = await acme.refused("CreateRule", pb.CreateRuleRequest(rule=bad))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "aggregation" in detail
        code, detail = await acme.refused(
            "CreateRule", pb.CreateRuleRequest(rule=_cpu_rule("acme-motors"))
        )
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "name" in detail
        await admin("CreateRule", pb.CreateRuleRequest(rule=_cpu_rule("", "fleet cpu")))

        mine = await acme("ListRules", pb.ListRulesRequest())
        assert [rule.name for rule in mine.rules] == ["cpu hot"]
        everything = await admin("ListRules", pb.ListRulesRequest())
        names = {rule.name for rule in everything.rules}
        assert {"cpu hot", "fleet cpu", "builtin:cpu"} <= names

        changed = _cpu_rule("acme-motors")
        changed.id = created.id
        changed.thresholds.warning = 70
        updated = await acme("UpdateRule", pb.UpdateRuleRequest(rule=changed))
        assert updated.thresholds.warning == 70
        code, _ = await zenith.refused("UpdateRule", pb.UpdateRuleRequest(rule=changed))
        assert code == grpc.StatusCode.NOT_FOUND

        builtin = next(rule for rule in everything.rules if rule.builtin)
        code, detail = await admin.refused("DeleteRule", pb.DeleteRuleRequest(id=builtin.id))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "disable" in detail
        await acme("DeleteRule", pb.DeleteRuleRequest(id=created.id))
        code, _ = await acme.refused("GetRule", pb.GetRuleRequest(id=created.id))
        assert code == grpc.StatusCode.NOT_FOUND

        anonymous = Client(stub, None)
        code, _ = await anonymous.refused("ListRules", pb.ListRulesRequest())
        assert code == grpc.StatusCode.UNAUTHENTICATED
        code, _ = await Client(stub, "dp1.acme-motors.wrong").refused(
            "ListRules", pb.ListRulesRequest()
        )
        assert code == grpc.StatusCode.UNAUTHENTICATED

    _serve(store, scenario)


def _episode(store: SQLAlchemyMetricStore, dealer_id: str, severity: str, minutes: int) -> int:
    at = NOW - timedelta(minutes=minutes)
    row = {
        "dealer_id": dealer_id,
        "type": "cpu",
        "severity": severity,
        "message": f"cpu on {dealer_id}",
        "resolved": False,
        "created_at": at,
        "agent_id": "agent-1",
        "labels": {"mount": "/"},
        "labels_key": "mount=/",
        "value": 91.0,
        "threshold": 80.0,
        "state": "firing",
        "started_at": at,
        "last_change_at": at,
    }
    with store.engine.begin() as connection:
        return int(
            connection.execute(
                system_alerts.insert().returning(system_alerts.c.id), row
            ).scalar_one()
        )


def test_alerts_are_listed_filtered_acknowledged_and_resolved_by_their_dealer(
    store: SQLAlchemyMetricStore,
) -> None:
    async def scenario(acme: Client, zenith: Client, admin: Client, stub: Any) -> None:
        warning = _episode(store, "acme-motors", "warning", 30)
        critical = _episode(store, "acme-motors", "critical", 5)
        theirs = _episode(store, OTHER, "critical", 5)
        listed = await acme("ListAlerts", pb.ListAlertsRequest())
        assert [alert.id for alert in listed.alerts] == [critical, warning]
        assert listed.alerts[0].labels == {"mount": "/"} and listed.alerts[0].value == 91.0
        only = await acme("ListAlerts", pb.ListAlertsRequest(severity="critical"))
        assert [alert.id for alert in only.alerts] == [critical]
        recent = await admin(
            "ListAlerts",
            pb.ListAlertsRequest(since_unix_ms=to_unix_ms(NOW - timedelta(minutes=10))),
        )
        assert {alert.id for alert in recent.alerts} == {critical, theirs}
        code, _ = await acme.refused("ListAlerts", pb.ListAlertsRequest(dealer_id=OTHER))
        assert code == grpc.StatusCode.PERMISSION_DENIED
        code, detail = await acme.refused("ListAlerts", pb.ListAlertsRequest(state="open"))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "state" in detail

        acked = await acme("AcknowledgeAlert", pb.AcknowledgeAlertRequest(id=critical, by="ana"))
        assert acked.acknowledged_by == "ana" and acked.acknowledged_unix_ms == to_unix_ms(NOW)
        code, _ = await acme.refused("AcknowledgeAlert", pb.AcknowledgeAlertRequest(id=theirs))
        assert code == grpc.StatusCode.NOT_FOUND
        resolved = await acme("ResolveAlert", pb.ResolveAlertRequest(id=critical))
        assert resolved.state == "resolved" and resolved.resolved_unix_ms == to_unix_ms(NOW)
        firing = await acme("ListAlerts", pb.ListAlertsRequest(state="firing"))
        assert [alert.id for alert in firing.alerts] == [warning]

    _serve(store, scenario)


def test_silences_are_created_listed_and_deleted_within_the_callers_scope(
    store: SQLAlchemyMetricStore,
) -> None:
    start, end = to_unix_ms(NOW), to_unix_ms(NOW + timedelta(hours=2))

    async def scenario(acme: Client, zenith: Client, admin: Client, stub: Any) -> None:
        mine = pb.Silence(
            dealer_id="acme-motors", starts_unix_ms=start, ends_unix_ms=end, comment="upgrade"
        )
        created = await acme("CreateSilence", pb.CreateSilenceRequest(silence=mine))
        assert created.id > 0 and created.created_by == "acme-motors"
        everyone = pb.Silence(starts_unix_ms=start, ends_unix_ms=end)
        code, _ = await acme.refused("CreateSilence", pb.CreateSilenceRequest(silence=everyone))
        assert code == grpc.StatusCode.PERMISSION_DENIED
        await admin("CreateSilence", pb.CreateSilenceRequest(silence=everyone))
        backwards = pb.Silence(dealer_id="acme-motors", starts_unix_ms=end, ends_unix_ms=start)
        code, detail = await acme.refused(
            "CreateSilence", pb.CreateSilenceRequest(silence=backwards)
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "ends_unix_ms" in detail

        listed = await acme("ListSilences", pb.ListSilencesRequest())
        assert [s.id for s in listed.silences] == [created.id]
        assert len((await admin("ListSilences", pb.ListSilencesRequest())).silences) == 2
        code, _ = await zenith.refused("DeleteSilence", pb.DeleteSilenceRequest(id=created.id))
        assert code == grpc.StatusCode.NOT_FOUND
        await acme("DeleteSilence", pb.DeleteSilenceRequest(id=created.id))
        assert not (await acme("ListSilences", pb.ListSilencesRequest())).silences

    _serve(store, scenario)
