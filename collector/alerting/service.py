"""The Alerts gRPC service: rules, alert episodes and silences, per caller.

Callers send the same ``authorization: Bearer <token>`` metadata as agents;
:mod:`collector.auth` says who they are. An admin token may do everything; a
dealer token only sees and changes its own dealer's rules, alerts and
silences, and never those that apply to every dealer; a viewer token of a
dealer sees what that dealer's token sees and changes nothing. What a dealer may not see answers
NOT_FOUND, so ids of other dealers' objects are not revealed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, NoReturn, TypeVar

import grpc
from sqlalchemy import Engine

from collector.abc import MetricStore, StoreError
from collector.alerting import manage
from collector.alerting.codec import (
    alert_to_proto,
    rule_from_proto,
    rule_to_proto,
    silence_from_proto,
    silence_to_proto,
)
from collector.alerting.errors import AlertingError
from collector.alerting.manage import AlertFilter, Conflict, NotFound
from collector.alerting.rules import Rule
from collector.auth import Authenticator, NotAuthenticated, Principal, Role
from collector.ingest.errors import StoreUnavailable
from dealerpulse.clock import Clock, from_unix_ms
from dealerpulse.v1 import alerts_pb2 as pb
from dealerpulse.v1 import alerts_pb2_grpc

logger = logging.getLogger(__name__)

ALERTS_SERVICE = pb.DESCRIPTOR.services_by_name["Alerts"].full_name
_T = TypeVar("_T")


class PermissionDenied(AlertingError):
    """The caller's token does not reach that dealer (or needs to be an admin)."""


class Caller:
    """What a principal may do with alerting objects, with the refusals worded for it."""

    def __init__(self, principal: Principal) -> None:
        self.principal = principal

    @property
    def name(self) -> str:
        return self.principal.name

    def may_see(self, dealer_id: str | None) -> bool:
        return self.principal.may_read(dealer_id)

    def require(self, dealer_id: str | None, what: str) -> None:
        """Refuse a change to ``dealer_id``'s objects (None: every dealer's)."""
        principal = self.principal
        if principal.may_write(dealer_id):
            return
        if principal.role is Role.VIEWER:
            raise PermissionDenied(
                f"the viewer token of dealer {principal.dealer_id!r} is read-only: it cannot "
                "change rules, acknowledge or resolve alerts, or change silences"
            )
        if dealer_id is None:
            raise PermissionDenied(f"{what} for every dealer needs an admin token; set dealer_id")
        raise PermissionDenied(
            f"dealer {principal.dealer_id!r} may not change dealer {dealer_id!r}"
        )

    def scope(self, requested: str) -> str | None:
        """The dealer a listing is limited to."""
        if self.principal.may_manage():
            return requested or None
        if requested and not self.principal.may_read(requested):
            raise PermissionDenied(
                f"dealer {self.principal.dealer_id!r} may not list dealer {requested!r}"
            )
        return self.principal.dealer_id


class AlertsAuth:
    def __init__(self, store: MetricStore, clock: Clock, ttl_s: float = 10.0) -> None:
        self._authenticator = Authenticator(store, clock, ttl_s=ttl_s)

    async def caller(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> Caller:
        return Caller(await self._authenticator.authenticate(metadata))


_STATUS: tuple[tuple[type[Exception], grpc.StatusCode], ...] = (
    (NotAuthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (Conflict, grpc.StatusCode.FAILED_PRECONDITION),
    (StoreUnavailable, grpc.StatusCode.UNAVAILABLE),
    (StoreError, grpc.StatusCode.UNAVAILABLE),
    (ValueError, grpc.StatusCode.INVALID_ARGUMENT),  # RuleError included
)


class AlertsService(alerts_pb2_grpc.AlertsServicer):
    def __init__(
        self, engine: Engine, store: MetricStore, clock: Clock, auth_ttl_s: float = 10.0
    ) -> None:
        self._db = engine
        self._clock = clock
        self._auth = AlertsAuth(store, clock, auth_ttl_s)

    async def _run(
        self, context: grpc.aio.ServicerContext[Any, Any], work: Callable[[Caller], Awaitable[_T]]
    ) -> _T:
        try:
            caller = await self._auth.caller(context.invocation_metadata())
            return await work(caller)
        except Exception as error:
            for kind, code in _STATUS:
                if isinstance(error, kind):
                    await _abort(context, code, str(error))
            raise

    async def _db_call(self, function: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.to_thread(function, self._db, *args)

    async def _own_rule(self, caller: Caller, rule_id: int) -> Rule:
        rule = await self._db_call(manage.get_rule, rule_id)
        if not caller.may_see(rule.dealer_id):
            raise NotFound(f"no alert rule with id {rule_id}")
        return rule

    # ---- rules

    async def CreateRule(self, request: pb.CreateRuleRequest, context: Any) -> pb.AlertRule:
        async def work(caller: Caller) -> pb.AlertRule:
            rule = rule_from_proto(request.rule)
            caller.require(rule.dealer_id, "a rule")
            created = await self._db_call(manage.create_rule, rule, self._clock.now())
            logger.info("alert rule %r (id %s) created by %s", rule.name, created.id, caller.name)
            return rule_to_proto(created)

        return await self._run(context, work)

    async def GetRule(self, request: pb.GetRuleRequest, context: Any) -> pb.AlertRule:
        async def work(caller: Caller) -> pb.AlertRule:
            return rule_to_proto(await self._own_rule(caller, request.id))

        return await self._run(context, work)

    async def ListRules(self, request: pb.ListRulesRequest, context: Any) -> pb.ListRulesResponse:
        async def work(caller: Caller) -> pb.ListRulesResponse:
            rules = await self._db_call(manage.list_rules, caller.scope(request.dealer_id))
            return pb.ListRulesResponse(rules=[rule_to_proto(rule) for rule in rules])

        return await self._run(context, work)

    async def UpdateRule(self, request: pb.UpdateRuleRequest, context: Any) -> pb.AlertRule:
        async def work(caller: Caller) -> pb.AlertRule:
            rule = rule_from_proto(request.rule)
            if rule.id is None:
                raise ValueError("rule.id: give the id of the rule to update")
            stored = await self._own_rule(caller, rule.id)
            caller.require(stored.dealer_id, "a rule")
            caller.require(rule.dealer_id, "a rule")
            updated = await self._db_call(manage.update_rule, rule, self._clock.now())
            logger.info("alert rule %s updated by %s", rule.id, caller.name)
            return rule_to_proto(updated)

        return await self._run(context, work)

    async def DeleteRule(
        self, request: pb.DeleteRuleRequest, context: Any
    ) -> pb.DeleteRuleResponse:
        async def work(caller: Caller) -> pb.DeleteRuleResponse:
            stored = await self._own_rule(caller, request.id)
            caller.require(stored.dealer_id, "a rule")
            await self._db_call(manage.delete_rule, request.id, self._clock.now())
            logger.info("alert rule %s deleted by %s", request.id, caller.name)
            return pb.DeleteRuleResponse()

        return await self._run(context, work)

    # ---- alerts

    async def ListAlerts(
        self, request: pb.ListAlertsRequest, context: Any
    ) -> pb.ListAlertsResponse:
        async def work(caller: Caller) -> pb.ListAlertsResponse:
            where = _alert_filter(request, caller.scope(request.dealer_id))
            episodes = await self._db_call(manage.list_alerts, where)
            return pb.ListAlertsResponse(alerts=[alert_to_proto(e) for e in episodes])

        return await self._run(context, work)

    async def _own_alert(self, caller: Caller, alert_id: int, what: str) -> None:
        """The alert must be the caller's to see (else NOT_FOUND) and to change."""
        episode = await self._db_call(manage.get_alert, alert_id)
        if not caller.may_see(episode.dealer_id):
            raise NotFound(f"no alert with id {alert_id}")
        caller.require(episode.dealer_id, what)

    async def AcknowledgeAlert(self, request: pb.AcknowledgeAlertRequest, context: Any) -> pb.Alert:
        async def work(caller: Caller) -> pb.Alert:
            await self._own_alert(caller, request.id, "an alert")
            by = request.by.strip() or caller.name
            episode = await self._db_call(
                manage.acknowledge_alert, request.id, by, self._clock.now()
            )
            return alert_to_proto(episode)

        return await self._run(context, work)

    async def ResolveAlert(self, request: pb.ResolveAlertRequest, context: Any) -> pb.Alert:
        async def work(caller: Caller) -> pb.Alert:
            await self._own_alert(caller, request.id, "an alert")
            by = caller.name
            episode = await self._db_call(manage.resolve_alert, request.id, self._clock.now(), by)
            logger.info("alert %s resolved by hand by %s", request.id, caller.name)
            return alert_to_proto(episode)

        return await self._run(context, work)

    # ---- silences

    async def CreateSilence(self, request: pb.CreateSilenceRequest, context: Any) -> pb.Silence:
        async def work(caller: Caller) -> pb.Silence:
            spec = silence_from_proto(request.silence, request.silence.created_by or caller.name)
            caller.require(spec.dealer_id, "a silence")
            if spec.rule_id is not None:
                await self._own_rule(caller, spec.rule_id)
            created = await self._db_call(manage.create_silence, spec, self._clock.now())
            return silence_to_proto(created)

        return await self._run(context, work)

    async def ListSilences(
        self, request: pb.ListSilencesRequest, context: Any
    ) -> pb.ListSilencesResponse:
        async def work(caller: Caller) -> pb.ListSilencesResponse:
            found = await self._db_call(
                manage.list_silences,
                self._clock.now(),
                caller.scope(request.dealer_id),
                request.include_expired,
            )
            return pb.ListSilencesResponse(silences=[silence_to_proto(s) for s in found])

        return await self._run(context, work)

    async def DeleteSilence(
        self, request: pb.DeleteSilenceRequest, context: Any
    ) -> pb.DeleteSilenceResponse:
        async def work(caller: Caller) -> pb.DeleteSilenceResponse:
            spec = await self._db_call(manage.get_silence, request.id)
            if not caller.may_see(spec.dealer_id):
                raise NotFound(f"no silence with id {request.id}")
            caller.require(spec.dealer_id, "a silence")
            await self._db_call(manage.delete_silence, request.id)
            return pb.DeleteSilenceResponse()

        return await self._run(context, work)


def _alert_filter(request: pb.ListAlertsRequest, dealer_id: str | None) -> AlertFilter:
    if request.state not in ("", "firing", "resolved"):
        raise ValueError(f"state: must be firing, resolved or empty, got {request.state!r}")
    if request.severity not in ("", "warning", "critical"):
        raise ValueError(f"severity: must be warning, critical or empty, got {request.severity!r}")
    if request.limit < 0:
        raise ValueError(f"limit: must be >= 0, got {request.limit}")
    return AlertFilter(
        dealer_id=dealer_id,
        state=request.state or None,
        severity=request.severity or None,
        since=from_unix_ms(request.since_unix_ms) if request.since_unix_ms else None,
        until=from_unix_ms(request.until_unix_ms) if request.until_unix_ms else None,
        limit=request.limit or 100,
    )


async def _abort(context: Any, code: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("context.abort returns only by raising")
