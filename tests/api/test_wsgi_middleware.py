"""The WSGI middleware on real servers (wsgiref): a plain WSGI app and a Flask app."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import flask
import pytest

from agent.aggregate import UNMATCHED_ROUTE, RequestRecord
from agent.instrument import DealerPulseWSGIMiddleware, RecordSink
from agent.instrument.recorder import Recorder
from agent.instrument.wsgi import StartResponse, WSGIApp
from dealerpulse.clock import FakeClock

from .conftest import Intake, assert_latency_matches, http_get, wait_until

REQUESTS = 2_000


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serve_wsgi(app: WSGIApp) -> Iterator[int]:
    server: WSGIServer = make_server("127.0.0.1", 0, app, handler_class=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def vehicle_latency_ms(n: int) -> float:
    return 1.0 + (n * 37 % 500) / 10  # 1.0 .. 50.9 ms


def deal_latency_ms(n: int) -> float:
    return float(n * 53 % 1000)  # 0 .. 999 ms


def dealer_app(clock: FakeClock) -> WSGIApp:
    """Latency and outcome follow from the path, so the test knows the truth.

    The handler moves the fake clock instead of sleeping: wsgiref serves one
    request at a time, so each request's duration is exactly its latency.
    """

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        _, _, family, number = environ["PATH_INFO"].split("/")
        n = int(number)
        if family == "vehicles":
            clock.advance(vehicle_latency_ms(n) / 1000)
            status = "200 OK"
        elif family == "leads":
            clock.advance(0.002)
            status = "404 Not Found" if n % 5 == 0 else "200 OK"
        else:
            clock.advance(deal_latency_ms(n) / 1000)
            if n % 20 == 3:
                raise RuntimeError(f"deal {n} exploded")
            status = "503 Service Unavailable" if n % 20 == 7 else "200 OK"
        start_response(status, [("Content-Type", "text/plain")])
        return [b"ok"]

    return app


def test_two_thousand_requests_aggregate_to_the_truth(intake: Intake) -> None:
    clock = FakeClock()
    sink = intake.sink()
    app = DealerPulseWSGIMiddleware(dealer_app(clock), sink=sink, clock=clock)
    expected: dict[str, list[float]] = {"vehicles": [], "leads": [], "deals": []}
    statuses: dict[int, int] = {}
    with serve_wsgi(app) as port:
        for i in range(REQUESTS):
            family = ("vehicles", "vehicles", "leads", "deals")[i % 4]
            status, _ = http_get(port, f"/api/{family}/{i}")
            statuses[status] = statuses.get(status, 0) + 1
            latency = {"vehicles": vehicle_latency_ms, "deals": deal_latency_ms}.get(family)
            expected[family].append(latency(i) if latency else 2.0)
    assert sink.flush(timeout_s=10)
    intake.wait_for_records(REQUESTS)

    stats = {s.route: s for s in intake.aggregator.drain(10**13)}
    assert set(stats) == {"/api/vehicles/{id}", "/api/leads/{id}", "/api/deals/{id}"}
    for family, latencies in expected.items():
        assert_latency_matches(stats[f"/api/{family}/{{id}}"], latencies)
    deals, leads = stats["/api/deals/{id}"], stats["/api/leads/{id}"]
    # Deals (i % 4 == 3): i % 20 == 3 raised (500), i % 20 == 7 answered 503.
    raised = sum(1 for i in range(3, REQUESTS, 4) if i % 20 == 3)
    unavailable = sum(1 for i in range(3, REQUESTS, 4) if i % 20 == 7)
    assert deals.errors == raised + unavailable
    assert dict(deals.status_counts) == {200: 500 - raised - unavailable, 500: raised, 503: 100}
    assert raised == statuses[500] == 100
    assert deals.last_error == "HTTP 503"  # the last deal error, request 1987, was a 503
    assert leads.client_errors == sum(1 for i in range(2, REQUESTS, 4) if i % 5 == 0)
    assert leads.errors == 0
    assert app.recorder.failures == 0
    sink.close()


def test_streamed_bodies_are_timed_until_the_body_is_closed(intake: Intake) -> None:
    clock = FakeClock()

    def streaming(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        for _ in range(3):
            clock.advance(0.010)
            yield b"chunk"

    sink = intake.sink()
    with serve_wsgi(DealerPulseWSGIMiddleware(streaming, sink=sink, clock=clock)) as port:
        assert http_get(port, "/export/7") == (200, b"chunkchunkchunk")
    assert sink.flush()
    intake.wait_for_records(1)
    [stat] = intake.aggregator.drain(10**13)
    assert stat.route == "/export/{id}"
    assert stat.duration_max_ms == pytest.approx(30.0, abs=1e-6)
    sink.close()


def test_an_exception_is_recorded_with_its_message_and_reraised(intake: Intake) -> None:
    def failing(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        raise LookupError("VIN 1HGCM82633A004352 unknown; db postgresql://dp:s3cret@db/x")

    sink = intake.sink()
    with serve_wsgi(DealerPulseWSGIMiddleware(failing, sink=sink)) as port:
        assert http_get(port, "/api/vin/1HGCM82633A004352")[0] == 500  # wsgiref saw it raise
    assert sink.flush()
    intake.wait_for_records(1)
    [stat] = intake.aggregator.drain(10**13)
    assert (stat.route, stat.errors, stat.status_counts) == ("/api/vin/{id}", 1, ((500, 1),))
    assert stat.last_error == (
        "LookupError: VIN 1HGCM82633A004352 unknown; db postgresql://dp:***@db/x"
    )


def test_real_time_is_measured_with_the_default_clock(intake: Intake) -> None:
    def slow(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        time.sleep(0.02)  # the latency under test, not a synchronisation
        start_response("204 No Content", [])
        return []

    sink = intake.sink()
    with serve_wsgi(DealerPulseWSGIMiddleware(slow, sink=sink)) as port:
        for _ in range(3):
            assert http_get(port, "/slow")[0] == 204
    assert sink.flush()
    intake.wait_for_records(3)
    [stat] = intake.aggregator.drain(10**13)
    assert stat.duration_min_ms >= 20.0
    assert stat.last_error_ms == 0


def flask_app() -> flask.Flask:
    app = flask.Flask("dealer")
    crm = flask.Blueprint("crm", "dealer", url_prefix="/crm")

    @app.get("/api/vehicles/<int:vehicle_id>")
    def vehicle(vehicle_id: int) -> str:
        return f"vehicle {vehicle_id}"

    @app.post("/api/vehicles/<int:vehicle_id>/price")
    def reprice(vehicle_id: int) -> str:
        raise ValueError(f"no price for {vehicle_id}")

    @crm.get("/leads/<lead_ref>")
    def lead(lead_ref: str) -> tuple[str, int]:
        return "gone", 410

    app.register_blueprint(crm)
    return app


def test_flask_routes_are_named_by_their_url_rule(intake: Intake) -> None:
    sink = intake.sink()
    app = flask_app()
    app.wsgi_app = DealerPulseWSGIMiddleware(app.wsgi_app, sink=sink)  # type: ignore[method-assign]
    with serve_wsgi(app) as port:
        for n in range(20):
            assert http_get(port, f"/api/vehicles/{n}")[0] == 200
            assert http_get(port, f"/crm/leads/lead-{n}")[0] == 410
            assert http_get(port, f"/wp-admin/{n}.php")[0] == 404
        assert http_get(port, "/api/vehicles/3/price", method="POST")[0] == 500
    assert sink.flush()
    intake.wait_for_records(61)

    stats = {(s.route, s.method): s for s in intake.aggregator.drain(10**13)}
    assert stats[("/api/vehicles/{vehicle_id}", "GET")].count == 20
    assert stats[("/crm/leads/{lead_ref}", "GET")].client_errors == 20
    assert stats[(UNMATCHED_ROUTE, "GET")].count == 20  # scanners add no series
    # Flask answers its own exceptions with a 500: an error, status known.
    assert stats[("/api/vehicles/{vehicle_id}/price", "POST")].errors == 1


def test_a_broken_sink_or_resolver_never_breaks_the_app(intake: Intake) -> None:
    class ExplodingSink:
        def offer(self, record: RequestRecord) -> bool:
            raise OSError("disk on fire")

    def resolver(environ: dict[str, Any]) -> str | None:
        raise KeyError("resolver bug")

    def hello(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [])
        return [b"hi"]

    broken_sink = DealerPulseWSGIMiddleware(hello, sink=ExplodingSink())
    broken_resolver = DealerPulseWSGIMiddleware(hello, sink=intake.sink(), route_resolver=resolver)
    for app in (broken_sink, broken_resolver):
        with serve_wsgi(app) as port:
            assert http_get(port, "/x") == (200, b"hi")
        # wsgiref closes the body (and so records) just after the client has its answer.
        wait_until(partial(failures_are, app.recorder, 1), what="the failure counted")


def failures_are(recorder: Recorder, count: int) -> bool:
    return recorder.failures == count


def test_an_absent_agent_leaves_the_app_working(socket_dir: Any) -> None:
    sink = RecordSink(socket_dir / "nobody.sock")

    def hello(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [])
        return [b"hi"]

    with serve_wsgi(DealerPulseWSGIMiddleware(hello, sink=sink)) as port:
        for _ in range(20):
            assert http_get(port, "/x") == (200, b"hi")
    assert sink.flush()
    assert sink.stats().send_failed == 20
    sink.close()
