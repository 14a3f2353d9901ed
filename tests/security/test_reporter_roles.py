"""The reporter's authorization matrix: every Reporter RPC and every HTTP API endpoint
x role x scope (own dealer, other dealer, every dealer).

Roles: admin, dealer (the agents' token), viewer (read-only), none (no token),
revoked (a dealer token revoked before the call; a token revoked while cached
stops working after the auth cache TTL, see the last test). The caller's own
dealer is A; "other" names dealer B; "all" leaves the dealer out (an
all-dealers report or alert when the object is named by id).

The rules the tables encode:

- admin reaches everything; a real-time view still needs one named dealer.
- dealer and viewer read only A: naming B is PERMISSION_DENIED / 403; an
  object of B (or of every dealer) named by id is NOT_FOUND / 404, so ids
  reveal nothing. Leaving the dealer out means "my dealer" for GetRealtime,
  ListReports and every HTTP read, and "every dealer" (refused) for
  GetAnalytics, ListRecommendations and GenerateReport.
- Generating a report only reads a dealer's data, so a viewer may generate
  its own dealer's report; a viewer may not create alert rules nor
  acknowledge alerts (403).
- Whatever a dealer or viewer token is answered never holds B's id (which is
  also in B's name and agent ids), except a 403 repeating the dealer it asked for.
"""

from __future__ import annotations

import asyncio
import http.client
import itertools
import json
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from collector.store import SQLAlchemyMetricStore, open_store
from collector.store.schema import system_alerts
from dealerpulse.clock import FakeClock, unix_ms
from dealerpulse.tokens import hash_token, new_token
from dealerpulse.v1 import reporter_pb2 as pb
from dealerpulse.v1 import reporter_pb2_grpc
from reporter import codec
from reporter.core import ReporterCore
from reporter.http.app import create_app
from reporter.http.server import HttpServer
from reporter.http.settings import HttpSettings
from reporter.model import ReportFormat
from reporter.server import ReporterServer
from reporter.settings import ReporterSettings

from .kit import START, WAIT_S, Tokens, add_admin, add_dealer, batch, sample

A, B = "acme-motors", "zenith-cars"
ROLES = ("admin", "dealer", "viewer", "none", "revoked")
SCOPES = ("own", "other", "all")
AUTH_TTL_S = 1.0
_T = TypeVar("_T")

OK = grpc.StatusCode.OK
DENIED = grpc.StatusCode.PERMISSION_DENIED
NOT_FOUND = grpc.StatusCode.NOT_FOUND
INVALID = grpc.StatusCode.INVALID_ARGUMENT
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED


# ---- the world: one reporter (gRPC + HTTP) on SQLite for the whole module


class LoopThread:
    """An asyncio loop in a thread, where the servers live while sync tests call them."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(WAIT_S)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(WAIT_S)
        self.loop.close()


class HttpPart:
    """The gateway app over the server's own core, as ReporterServer's HTTP part."""

    def __init__(self, core: ReporterCore, store: SQLAlchemyMetricStore, clock: FakeClock) -> None:
        settings = HttpSettings(rate_limit_requests=100_000, auth_cache_ttl_s=AUTH_TTL_S)
        self._server = HttpServer(create_app(core, store, settings, clock), "127.0.0.1:0", 1.0)

    async def start(self) -> int:
        return await self._server.start()

    async def stop(self, grace_s: float) -> None:
        await self._server.stop()


@dataclass(frozen=True)
class Answer:
    code: int
    body: bytes

    @property
    def data(self) -> Any:
        return json.loads(self.body)["data"]


@dataclass
class World:
    store: SQLAlchemyMetricStore
    clock: FakeClock
    server: ReporterServer
    stub: reporter_pb2_grpc.ReporterStub
    admin: str
    dealers: dict[str, Tokens]
    revoked: str
    # Objects made once, by dealer (None: every dealer).
    reports: dict[str | None, int] = field(default_factory=dict)
    _serial: Iterator[int] = field(default_factory=itertools.count)

    def token(self, role: str) -> str | None:
        own = self.dealers[A]
        return {
            "admin": self.admin,
            "dealer": own.dealer,
            "viewer": own.viewer,
            "none": None,
            "revoked": self.revoked,
        }[role]

    def rpc(self, token: str | None, method: str, request: Message) -> Message:
        metadata = () if token is None else (("authorization", f"Bearer {token}"),)
        answer: Message = getattr(self.stub, method)(request, metadata=metadata, timeout=WAIT_S)
        return answer

    def http(self, token: str | None, method: str, path: str, body: Any = None) -> Answer:
        assert self.server.http_port is not None
        headers = {"Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        payload = None if body is None else json.dumps(body).encode()
        if payload is not None:
            headers["Content-Type"] = "application/json"
        connection = http.client.HTTPConnection("127.0.0.1", self.server.http_port, timeout=WAIT_S)
        try:
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            return Answer(response.status, response.read())
        finally:
            connection.close()

    def next(self) -> int:
        return next(self._serial)

    def alert(self, dealer_id: str | None) -> int:
        """A firing alert of ``dealer_id`` (None: an alert about every dealer)."""
        at = self.clock.now()
        key = f"n={self.next()}"
        row = {
            "dealer_id": dealer_id,
            "type": "cpu",
            "severity": "critical",
            "message": f"cpu on {dealer_id or 'every dealer'}",
            "resolved": False,
            "created_at": at,
            "agent_id": None if dealer_id is None else f"{dealer_id}-agent",
            "labels": {"n": key},
            "labels_key": key,
            "value": 97.0,
            "threshold": 95.0,
            "state": "firing",
            "started_at": at,
            "last_change_at": at,
        }
        with self.store.engine.begin() as connection:
            inserted = connection.execute(system_alerts.insert().returning(system_alerts.c.id), row)
            return int(inserted.scalar_one())

    def acknowledged_by(self, alert_id: int) -> str | None:
        query = system_alerts.select().where(system_alerts.c.id == alert_id)
        with self.store.engine.connect() as connection:
            by: str | None = connection.execute(query).one().acknowledged_by
            return by

    def rule_body(self, dealer_id: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": f"cpu hot {self.next()}",
            "metric": "cpu.percent",
            "aggregation": "avg",
            "windowSeconds": 60,
            "comparator": ">",
            "warningThreshold": 80,
        }
        if dealer_id is not None:
            body["dealerId"] = dealer_id
        return body

    def rule_names(self) -> set[str]:
        answer = self.http(self.admin, "GET", "/api/ai/performance-alerts")
        return {rule["name"] for rule in answer.data}


def _fill(store: SQLAlchemyMetricStore, clock: FakeClock) -> None:
    """Each dealer's agent sends one batch a minute ago, so every read has data of both."""
    for dealer_id in (A, B):
        at = clock.now() - timedelta(minutes=1)
        samples = (sample(unix_ms(clock) - 60_000, "cpu.percent", 40.0),)
        sent = batch(dealer_id, f"{dealer_id}-agent", 1, unix_ms(clock) - 60_000, samples)
        store.write_batches([sent], at)


@contextmanager
def running_world(url: str) -> Iterator[World]:
    """Dealers A and B (with data, a report, an alert and a rule each), an admin, a reporter."""
    clock = FakeClock(START)
    store = open_store(url, clock=clock, pool_size=5)
    dealers = {d: add_dealer(store, clock, d) for d in (A, B)}
    admin = add_admin(store, clock)
    revoked = new_token(A)
    store.add_token(A, hash_token(revoked), clock.now())
    store.revoke_token(hash_token(revoked), clock.now())
    _fill(store, clock)
    settings = ReporterSettings(auth_cache_ttl_s=AUTH_TTL_S)
    server = ReporterServer(
        store, "127.0.0.1:0", settings, clock, http=lambda core: HttpPart(core, store, clock)
    )
    loop = LoopThread()
    channel: grpc.Channel | None = None
    try:
        port = loop.run(server.start())
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub = reporter_pb2_grpc.ReporterStub(channel)  # type: ignore[no-untyped-call]
        built = World(store, clock, server, stub, admin, dealers, revoked)
        day = codec.time_range_from_pb(pb.TimeRange(name="24h"), clock.now())
        for dealer_id in (A, B, None):
            report = server.core.generate_report(dealer_id, day, ReportFormat.JSON)
            built.reports[dealer_id] = report.report_id
            built.alert(dealer_id)
            created = built.http(
                admin, "POST", "/api/ai/performance-alerts", built.rule_body(dealer_id)
            )
            assert created.code == 201, created.body
        yield built
    finally:
        if channel is not None:
            channel.close()
        loop.run(server.stop(1.0))
        loop.close()
        store.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One world on SQLite for the whole module: the matrix runs in seconds."""
    path: Path = tmp_path_factory.mktemp("reporter-roles") / "dealerpulse.db"
    with running_world(f"sqlite:///{path}") as built:
        yield built


def _dealer_of(scope: str) -> str | None:
    return {"own": A, "other": B, "all": None}[scope]


def _dealer_ids(document: Any) -> set[str]:
    """Every non-empty ``dealerId`` anywhere in a JSON document."""
    if isinstance(document, dict):
        found = {v for k, v in document.items() if k == "dealerId" and isinstance(v, str) and v}
        for value in document.values():
            found |= _dealer_ids(value)
        return found
    if isinstance(document, list):
        return set().union(*(_dealer_ids(item) for item in document))
    return set()


def _expected_dealers(role: str, scope: str, lists: bool) -> set[str]:
    """The dealers a successful answer is about: a non-admin's always A alone."""
    if scope == "all" and role == "admin":
        return {A, B} if lists else set()
    return {B} if scope == "other" else {A}


def _assert_no_leak(world: World, role: str, token: str | None, shown: bytes, echo: bool) -> None:
    """A dealer or viewer of A is never shown B, save a 403 repeating what it asked for."""
    if token is not None:
        assert token.encode() not in shown
    if role != "admin" and not echo:
        assert B.encode() not in shown.lower(), shown[:500]


# ---- gRPC: the Reporter service


GrpcOp = Callable[[World, "str | None", str], Message]
MONTH = pb.TimeRange(name="30d")


def get_realtime(world: World, token: str | None, scope: str) -> Message:
    return world.rpc(token, "GetRealtime", pb.GetRealtimeRequest(dealer_id=_dealer_of(scope) or ""))


def get_analytics(world: World, token: str | None, scope: str) -> Message:
    request = pb.GetAnalyticsRequest(dealer_id=_dealer_of(scope) or "", time_range=MONTH)
    return world.rpc(token, "GetAnalytics", request)


def list_recommendations(world: World, token: str | None, scope: str) -> Message:
    request = pb.ListRecommendationsRequest(dealer_id=_dealer_of(scope) or "", time_range=MONTH)
    return world.rpc(token, "ListRecommendations", request)


def generate_report(world: World, token: str | None, scope: str) -> Message:
    request = pb.GenerateReportRequest(
        dealer_id=_dealer_of(scope) or "", time_range=MONTH, format="json"
    )
    return world.rpc(token, "GenerateReport", request)


def list_reports(world: World, token: str | None, scope: str) -> Message:
    return world.rpc(token, "ListReports", pb.ListReportsRequest(dealer_id=_dealer_of(scope) or ""))


def get_report(world: World, token: str | None, scope: str) -> Message:
    request = pb.GetReportRequest(report_id=world.reports[_dealer_of(scope)])
    return world.rpc(token, "GetReport", request)


GRPC_OPS: dict[str, GrpcOp] = {
    "GetRealtime": get_realtime,
    "GetAnalytics": get_analytics,
    "ListRecommendations": list_recommendations,
    "GenerateReport": generate_report,
    "ListReports": list_reports,
    "GetReport": get_report,
}
# An empty dealer_id: the caller's own dealer for these; every dealer (admin only) for the rest.
GRPC_EMPTY_MEANS_OWN = {"GetRealtime", "ListReports"}
# Answers that always name the dealer they are about (the others may name none).
GRPC_NAMING = {"GetRealtime", "GenerateReport", "ListReports", "GetReport"}


def grpc_expected(role: str, op: str, scope: str) -> grpc.StatusCode:
    if role in ("none", "revoked"):
        return UNAUTHENTICATED
    if op == "GetReport":  # by id: what the token may not read does not exist for it
        return OK if role == "admin" or scope == "own" else NOT_FOUND
    if role == "admin":
        return INVALID if op == "GetRealtime" and scope == "all" else OK
    if scope == "own" or (scope == "all" and op in GRPC_EMPTY_MEANS_OWN):
        return OK  # viewers too: generating a report only reads the dealer's data
    return DENIED


GRPC_CASES = list(itertools.product(ROLES, GRPC_OPS, SCOPES))


@pytest.mark.parametrize(("role", "op", "scope"), GRPC_CASES, ids=["-".join(c) for c in GRPC_CASES])
def test_reporter_rpc_by_role_and_dealer(world: World, role: str, op: str, scope: str) -> None:
    check_rpc(world, role, op, scope)


def check_rpc(world: World, role: str, op: str, scope: str) -> None:
    token = world.token(role)
    want = grpc_expected(role, op, scope)
    answer: Message | None = None
    try:
        answer = GRPC_OPS[op](world, token, scope)
    except grpc.RpcError as refused:
        code, shown = refused.code(), (refused.details() or "").encode()
    else:
        code, shown = OK, answer.SerializeToString()
    assert code == want, f"got {code.name}, expected {want.name}: {shown[:300]!r}"
    _assert_no_leak(world, role, token, shown, echo=code == DENIED and scope == "other")
    if answer is not None:
        found = _dealer_ids(MessageToDict(answer))
        expected = _expected_dealers(role, scope, lists=op == "ListReports")
        assert found == expected if op in GRPC_NAMING else found <= expected, found


# ---- HTTP: every endpoint of the JSON API


HttpOp = Callable[[World, "str | None", str], Answer]


def _query(scope: str) -> str:
    dealer_id = _dealer_of(scope)
    return "" if dealer_id is None else f"?dealerId={dealer_id}"


def _getter(path: str) -> HttpOp:
    def get(world: World, token: str | None, scope: str) -> Answer:
        return world.http(token, "GET", path + _query(scope))

    return get


def create_rule(world: World, token: str | None, scope: str) -> Answer:
    body = world.rule_body(_dealer_of(scope))
    answer = world.http(token, "POST", "/api/ai/performance-alerts", body)
    assert (body["name"] in world.rule_names()) == (answer.code == 201)
    return answer


def acknowledge(world: World, token: str | None, scope: str) -> Answer:
    alert_id = world.alert(_dealer_of(scope))
    answer = world.http(token, "POST", f"/api/ai/alerts/{alert_id}/acknowledge")
    assert (world.acknowledged_by(alert_id) is not None) == (answer.code == 200)
    return answer


def get_report_http(world: World, token: str | None, scope: str) -> Answer:
    return world.http(token, "GET", f"/api/ai/reports/{world.reports[_dealer_of(scope)]}")


HTTP_OPS: dict[str, HttpOp] = {
    "monitoring": _getter("/api/ai/performance-monitoring"),
    "analytics": _getter("/api/ai/performance-analytics"),
    "list-rules": _getter("/api/ai/performance-alerts"),
    "create-rule": create_rule,
    "list-alerts": _getter("/api/ai/alerts"),
    "acknowledge": acknowledge,
    "list-reports": _getter("/api/ai/reports"),
    "get-report": get_report_http,
    "dealers": _getter("/api/dealers"),
}
HTTP_BY_ID = {"acknowledge", "get-report"}
HTTP_LISTS = {"list-rules", "list-alerts", "list-reports", "dealers"}
# Not JSON envelopes: the report's own rendering (checked for leaks only).
HTTP_RAW = {"get-report"}


def http_expected(role: str, op: str, scope: str) -> int:
    if role in ("none", "revoked"):
        return 401
    if op in HTTP_BY_ID:  # another dealer's (or every dealer's) object does not exist for it
        if role == "admin":
            return 200
        if scope != "own":
            return 404
        return 403 if role == "viewer" and op == "acknowledge" else 200
    if op == "create-rule":  # no dealerId: a rule for every dealer, an admin's
        return 201 if role == "admin" or (role == "dealer" and scope == "own") else 403
    if role == "admin":
        return 400 if op == "monitoring" and scope == "all" else 200
    return 403 if scope == "other" else 200  # no dealerId: the token's own dealer


HTTP_CASES = [
    (role, op, scope)
    for role, op, scope in itertools.product(ROLES, HTTP_OPS, SCOPES)
    if op != "dealers" or scope == "all"  # /api/dealers names no dealer
]


@pytest.mark.parametrize(("role", "op", "scope"), HTTP_CASES, ids=["-".join(c) for c in HTTP_CASES])
def test_http_api_by_role_and_dealer(world: World, role: str, op: str, scope: str) -> None:
    check_http(world, role, op, scope)


def check_http(world: World, role: str, op: str, scope: str) -> None:
    token = world.token(role)
    want = http_expected(role, op, scope)
    answer = HTTP_OPS[op](world, token, scope)
    assert answer.code == want, f"got {answer.code}, expected {want}: {answer.body[:300]!r}"
    if want < 300 and op not in HTTP_RAW:
        found = _dealer_ids(answer.data)
        assert found == _expected_dealers(role, scope, lists=op in HTTP_LISTS), found
    if want >= 400:
        code = {400: "invalid_argument", 401: "unauthenticated", 403: "permission_denied"}
        assert json.loads(answer.body)["error"]["code"] == code.get(want, "not_found")
    _assert_no_leak(world, role, token, answer.body, echo=want == 403 and scope == "other")


def test_a_token_revoked_while_cached_is_refused_after_the_auth_cache_ttl(world: World) -> None:
    token = new_token(A)
    world.store.add_token(A, hash_token(token), world.clock.now(), role="viewer")
    monitoring = "/api/ai/performance-monitoring"
    assert world.http(token, "GET", monitoring).code == 200
    get_realtime(world, token, "own")

    world.store.revoke_token(hash_token(token), world.clock.now())
    world.clock.advance(AUTH_TTL_S + 0.5)

    assert world.http(token, "GET", monitoring).code == 401
    with pytest.raises(grpc.RpcError) as refused:
        get_realtime(world, token, "own")
    assert refused.value.code() == UNAUTHENTICATED


def test_refusals_do_not_tell_whether_another_dealers_object_exists(world: World) -> None:
    """Another dealer's dealer id or object id is answered exactly like one that does not exist."""
    token, ghost, missing = world.dealers[A].viewer, "ghost-motors", 10**9

    def rpc_refusal(method: str, request: Message) -> tuple[grpc.StatusCode, str]:
        with pytest.raises(grpc.RpcError) as refused:
            world.rpc(token, method, request)
        return refused.value.code(), refused.value.details() or ""

    def http_refusal(method: str, path: str) -> tuple[int, str]:
        answer = world.http(token, method, path)
        return answer.code, json.loads(answer.body)["error"]["code"]

    for dealer_id in (B, ghost):
        code, detail = rpc_refusal(
            "GetAnalytics", pb.GetAnalyticsRequest(dealer_id=dealer_id, time_range=MONTH)
        )
        assert (code, detail.replace(dealer_id, "?")) == (
            DENIED,
            f"{A} (viewer) may not read dealer '?'",
        )
        assert http_refusal("GET", f"/api/ai/performance-monitoring?dealerId={dealer_id}") == (
            403,
            "permission_denied",
        )
    for report_id in (world.reports[B], missing):
        code, detail = rpc_refusal("GetReport", pb.GetReportRequest(report_id=report_id))
        assert (code, detail) == (NOT_FOUND, f"no report with id {report_id}")
        assert http_refusal("GET", f"/api/ai/reports/{report_id}") == (404, "not_found")
    for alert_id in (world.alert(B), missing):
        assert http_refusal("POST", f"/api/ai/alerts/{alert_id}/acknowledge") == (404, "not_found")


# A few cases of each kind once more on PostgreSQL (the store's queries differ by backend).
PG_RPC_CASES = [
    ("dealer", "GetAnalytics", "other"),
    ("viewer", "GenerateReport", "own"),
    ("dealer", "ListReports", "all"),
    ("viewer", "GetReport", "other"),
    ("admin", "ListReports", "all"),
    ("revoked", "GetRealtime", "own"),
]
PG_HTTP_CASES = [
    ("dealer", "list-alerts", "all"),
    ("viewer", "acknowledge", "own"),
    ("dealer", "acknowledge", "other"),
    ("dealer", "create-rule", "own"),
    ("viewer", "get-report", "all"),
    ("admin", "dealers", "all"),
    ("revoked", "list-reports", "own"),
]


@pytest.mark.postgres
def test_representative_cases_on_postgresql(pg_url: str) -> None:
    with running_world(pg_url) as world:
        for case in PG_RPC_CASES:
            check_rpc(world, *case)
        for case in PG_HTTP_CASES:
            check_http(world, *case)
