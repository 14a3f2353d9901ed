"""The JSON API's endpoints: each checks who may ask, calls the domain, and answers JSON.

The domain is blocking (SQLAlchemy): every call runs in a worker thread. The
alert endpoints call the same functions as the gRPC Alerts service
(:mod:`collector.alerting.manage`) with the same role checks
(:class:`collector.auth.Principal`); the analytics and reports endpoints call
the :class:`Reporter`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Engine
from starlette.requests import Request
from starlette.responses import Response

from collector.abc import UnknownDealer
from collector.alerting import manage
from collector.alerting.manage import AlertFilter
from collector.ingest.auth import DealerDirectory
from collector.store import SQLAlchemyMetricStore
from dealerpulse.clock import Clock
from reporter.http import jsonify
from reporter.http.auth import Principal, require_write, scope_of
from reporter.http.coalesce import Coalescer
from reporter.http.errors import InvalidArgument, NotFoundError, success
from reporter.http.params import (
    MAX_ALERT_LIMIT,
    alert_state_param,
    dealer_param,
    format_param,
    id_param,
    limit_param,
    rule_from_body,
    time_range_param,
)
from reporter.model import Realtime, Reporter, ReportFormat

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
MAX_BODY_BYTES = 64 * 1024
# Dealers whose last real-time body is kept at most (as many as the result cache holds).
MAX_ENCODED = 1024
CONTENT_TYPES = {
    ReportFormat.HTML: "text/html; charset=utf-8",
    ReportFormat.JSON: "application/json",
    ReportFormat.TEXT: "text/plain; charset=utf-8",
}


class Api:
    def __init__(
        self, reporter: Reporter, store: SQLAlchemyMetricStore, clock: Clock, ttl_s: float
    ) -> None:
        self._reporter = reporter
        self._store = store
        self._db: Engine = store.engine
        self._clock = clock
        self._dealers = DealerDirectory(store, clock, ttl_s=ttl_s)
        # A burst for one dealer looks its name up once, not once per request.
        self._lookups: Coalescer[str, str | None] = Coalescer()
        # dealer id -> (the cached answer, its JSON body): a cache hit returns the very
        # same object, which is then not encoded again for each of its requests.
        self._realtime_bodies: dict[str, tuple[Realtime, bytes]] = {}

    async def _run(self, function: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.to_thread(function, *args)

    async def _one_dealer(self, caller: Principal, request: Request) -> str:
        """The single dealer a request is about: a dealer token's own, or the admin's dealerId."""
        dealer_id = self._one_dealer_id(caller, request)
        await self._known(dealer_id)
        return dealer_id

    def _one_dealer_id(self, caller: Principal, request: Request) -> str:
        """:meth:`_one_dealer` without checking that the dealer exists."""
        dealer_id = scope_of(caller, dealer_param(request.query_params))
        if dealer_id is None:
            raise InvalidArgument("dealerId: required with an admin token")
        return dealer_id

    async def _known(self, dealer_id: str) -> None:
        name = await self._lookups.run(dealer_id, lambda: self._dealers.name_of(dealer_id))
        if name is None:
            raise NotFoundError(f"dealerId: no dealer {dealer_id!r}")

    # ---- analytics

    async def performance_monitoring(self, request: Request, caller: Principal) -> Response:
        # A fresh answer in memory is served here, without a hop to a worker thread
        # (ReporterCore offers it; other Reporters need not).
        at_hand = getattr(self._reporter, "realtime_if_ready", None)
        if at_hand is None:
            dealer_id = await self._one_dealer(caller, request)
            realtime = await self._run(self._reporter.realtime, dealer_id)
        else:
            dealer_id = self._one_dealer_id(caller, request)
            realtime = at_hand(dealer_id) or await self._checked_realtime(dealer_id)
        return Response(self._realtime_body(dealer_id, realtime), media_type="application/json")

    async def _checked_realtime(self, dealer_id: str) -> Realtime:
        """ReporterCore's answer, which tells an unknown dealer itself: its read finds the
        dealer in the query that reads its agents, so a cold request costs no separate
        look-up (a thread hop and a query) before it."""
        try:
            return await self._run(self._reporter.realtime, dealer_id)
        except UnknownDealer:
            raise NotFoundError(f"dealerId: no dealer {dealer_id!r}") from None

    def _realtime_body(self, dealer_id: str, realtime: Realtime) -> bytes:
        remembered = self._realtime_bodies.get(dealer_id)
        if remembered is not None and remembered[0] is realtime:
            return remembered[1]
        body = bytes(success(jsonify.realtime_json(realtime)).body)
        if len(self._realtime_bodies) >= MAX_ENCODED:
            self._realtime_bodies.clear()
        self._realtime_bodies[dealer_id] = (realtime, body)
        return body

    async def performance_analytics(self, request: Request, caller: Principal) -> Response:
        dealer_id = scope_of(caller, dealer_param(request.query_params))
        if dealer_id is not None:
            await self._known(dealer_id)
        time_range = time_range_param(request.query_params, self._clock.now())
        analytics = await self._run(self._reporter.analytics, dealer_id, time_range)
        return success(jsonify.analytics_json(analytics))

    # ---- alert rules and alerts

    async def create_rule(self, request: Request, caller: Principal) -> Response:
        rule = rule_from_body(await _json_body(request))
        require_write(caller, rule.dealer_id, "alert rules")
        if rule.dealer_id is not None:
            await self._known(rule.dealer_id)
        created = await self._run(manage.create_rule, self._db, rule, self._clock.now())
        logger.info(
            "alert rule %r (id %s) created by %s over HTTP", rule.name, created.id, caller.name
        )
        return success(jsonify.rule_json(created), status=201)

    async def list_rules(self, request: Request, caller: Principal) -> Response:
        dealer_id = scope_of(caller, dealer_param(request.query_params))
        rules = await self._run(manage.list_rules, self._db, dealer_id)
        return success([jsonify.rule_json(rule) for rule in rules])

    async def list_alerts(self, request: Request, caller: Principal) -> Response:
        query = request.query_params
        where = AlertFilter(
            dealer_id=scope_of(caller, dealer_param(query)),
            state=alert_state_param(query),
            limit=limit_param(query, 100, MAX_ALERT_LIMIT),
        )
        episodes = await self._run(manage.list_alerts, self._db, where)
        return success([jsonify.alert_json(e) for e in episodes])

    async def acknowledge_alert(self, request: Request, caller: Principal) -> Response:
        alert_id = id_param(request.path_params["alert_id"], "id")
        body = await _json_body(request, required=False)
        by = body.get("by") if isinstance(body, dict) else None
        if by is not None and (not isinstance(by, str) or len(by) > 200):
            raise InvalidArgument("by: must be a name of at most 200 characters")
        episode = await self._run(manage.get_alert, self._db, alert_id)
        # What the token may not read does not exist for it (like the gRPC service).
        if not caller.may_read(episode.dealer_id):
            raise NotFoundError(f"no alert with id {alert_id}")
        require_write(caller, episode.dealer_id, "alerts")
        who = (by or "").strip() or caller.name
        acknowledged = await self._run(
            manage.acknowledge_alert, self._db, alert_id, who, self._clock.now()
        )
        return success(jsonify.alert_json(acknowledged))

    # ---- reports and dealers

    async def list_reports(self, request: Request, caller: Principal) -> Response:
        dealer_id = scope_of(caller, dealer_param(request.query_params))
        limit = limit_param(request.query_params, 50, 500)
        records = await self._run(self._reporter.list_reports, dealer_id, limit)
        return success([jsonify.report_json(r) for r in records])

    async def get_report(self, request: Request, caller: Principal) -> Response:
        report_id = id_param(request.path_params["report_id"], "id")
        fmt = format_param(request.query_params)
        record = await self._run(self._reporter.get_report, report_id, fmt)
        # A dealer token must not learn whether another dealer's report exists.
        if record is None or not caller.may_read(record.dealer_id):
            raise NotFoundError(f"no report with id {report_id}")
        return Response(record.body, media_type=CONTENT_TYPES[record.format])

    async def list_dealers(self, request: Request, caller: Principal) -> Response:
        dealers = await self._run(self._store.list_dealers)
        visible = [d for d in dealers if caller.may_read(d.dealer_id)]
        return success([jsonify.dealer_json(d) for d in visible])


async def _json_body(request: Request, required: bool = True) -> Any:
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise InvalidArgument(f"body: larger than {MAX_BODY_BYTES} bytes")
    if not raw.strip():
        if required:
            raise InvalidArgument("body: a JSON object is required")
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"body: not valid JSON ({exc})") from None
