"""The agent's intake: records in, garbage counted and dropped, never a crash."""

from __future__ import annotations

import contextlib
import json
import os
import socket
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.aggregate import EndpointAggregator, RequestRecord
from agent.instrument.sink import RecordSink
from agent.instrument.wire import (
    HEADER,
    WireError,
    decode_datagram,
    encode_record,
    pack_datagrams,
    parse_address,
)
from agent.intake import IntakeCountersSource, IntakeError, IntakeServer
from dealerpulse.clock import FakeClock

from .conftest import Intake, wait_until


def send_raw(path: Path, *datagrams: bytes) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        for datagram in datagrams:
            sock.sendto(datagram, str(path))


def line(*fields: object) -> bytes:
    return json.dumps(list(fields)).encode()


GOOD = line("/api/leads/{id}", "POST", 201, 12.5, 1_700_000_000_000, "")


def test_records_from_a_sink_reach_the_aggregator(intake: Intake) -> None:
    sink = intake.sink()
    sink.offer(RequestRecord("/api/vehicles/{id}", "GET", 200, 8.0, 1_000))
    sink.offer(RequestRecord("/api/vehicles/{id}", "GET", 500, 30.0, 2_000, "KeyError: 'vin'\n€"))
    assert sink.flush(timeout_s=10)
    intake.wait_for_records(2)
    sink.close()

    [stat] = intake.aggregator.drain(5_000)
    assert (stat.route, stat.count, stat.errors) == ("/api/vehicles/{id}", 2, 1)
    assert stat.last_error == "KeyError: 'vin'\n€"
    assert sink.stats().sent == 2


def test_garbage_datagrams_are_counted_and_dropped_and_good_ones_still_count(
    intake: Intake,
) -> None:
    send_raw(
        intake.path,
        b"",
        b"hello",
        b"\x00\xff" * 40,
        HEADER + b"\xff\xfe",  # not UTF-8
        HEADER + GOOD + b"\n[1,2]\n" + line("/x", "GET", 200, float("nan"), 1, ""),
        HEADER + GOOD,
    )
    wait_until(lambda: intake.server.stats().datagrams >= 2, what="2 good datagrams")
    stats = intake.server.stats()
    assert stats.bad_datagrams == 4
    assert (stats.records, stats.bad_records) == (2, 2)
    [stat] = intake.aggregator.drain(5_000)
    assert (stat.route, stat.method, stat.count) == ("/api/leads/{id}", "POST", 2)
    # The counts travel as samples, so a misbehaving sender shows centrally.
    samples = IntakeCountersSource(intake.server, intake.aggregator).collect(9_000)
    assert {s.name: s.value for s in samples} == {
        "api.intake.datagrams": 2.0,
        "api.intake.records": 2.0,
        "api.intake.bad_datagrams": 4.0,
        "api.intake.bad_records": 2.0,
        "api.endpoints.overflow_records": 0.0,
    }
    assert {s.time_ms for s in samples} == {9_000}


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        (b"not json", "not JSON"),
        (b'{"route": "/a"}', "array of 6"),
        (line("/a", "GET", 200, 1.0, 1), "array of 6"),
        (line("/a", "GET", "200", 1.0, 1, ""), "status_code"),
        (line("/a", "GET", True, 1.0, 1, ""), "status_code"),
        (line("/a", "GET", 200, 1.0, 1.5, ""), "time_ms"),
        (line("/a", "GET", 200, -1.0, 1, ""), "duration_ms"),
        (b'["/a","GET",200,NaN,1,""]', "not a valid number"),
        (b'["/a","GET",200,1e999,1,""]', "duration_ms"),
        (line("", "GET", 200, 1.0, 1, ""), "route"),
        (line("/a", "get", 200, 1.0, 1, ""), "method"),
        (line("/a", "GET", 700, 1.0, 1, ""), "status_code"),
        (b"[" * 50_000, "not JSON"),
    ],
)
def test_bad_lines_are_refused_with_a_reason(bad_line: bytes, message: str) -> None:
    decoded = decode_datagram(HEADER + GOOD + b"\n" + bad_line)
    assert len(decoded.records) == 1
    [reason] = decoded.rejected
    assert reason.startswith("line 2:")
    assert message in reason


@given(st.binary(max_size=300))
def test_decoding_arbitrary_bytes_never_crashes(data: bytes) -> None:
    for candidate in (data, HEADER + data):
        with contextlib.suppress(WireError):
            decode_datagram(candidate)


records = st.builds(
    RequestRecord,
    route=st.text(min_size=1, max_size=80).filter(str.isprintable),
    method=st.sampled_from(["GET", "POST", "OTHER"]),
    status_code=st.integers(100, 599),
    duration_ms=st.floats(min_value=0, max_value=1e9),
    time_ms=st.integers(0, 2**62),
    error=st.text(max_size=200),
)


@given(st.lists(records, max_size=40), st.sampled_from([600, 2048, 8192]))
def test_encoding_round_trips_and_respects_the_datagram_size(
    batch: list[RequestRecord], max_bytes: int
) -> None:
    lines = [encode_record(record, max_bytes) for record in batch]
    datagrams = list(pack_datagrams(lines, max_bytes))
    assert all(len(d) <= max_bytes for d in datagrams)
    decoded = [r for d in datagrams for r in decode_datagram(d).records]
    assert all(not decode_datagram(d).rejected for d in datagrams)
    assert len(decoded) == len(batch)
    for sent, received in zip(batch, decoded, strict=True):
        assert received.error == sent.error or sent.error.startswith(received.error)
        assert (received.route, received.duration_ms) == (sent.route, sent.duration_ms)


def test_loopback_udp_intake_on_port_zero(socket_dir: Path) -> None:
    aggregator = EndpointAggregator(clock=FakeClock())
    with IntakeServer(aggregator, "udp://127.0.0.1:0") as server:
        assert server.address.port > 0
        sink = RecordSink(server.address)
        sink.offer(RequestRecord("/udp", "GET", 200, 1.0, 1))
        assert sink.flush()
        wait_until(lambda: aggregator.records == 1, what="the UDP record")
        sink.close()


@pytest.mark.parametrize("address", ["udp://10.0.0.1:9000", "udp://example.com:9000", "udp://x"])
def test_udp_intake_must_be_loopback(address: str) -> None:
    with pytest.raises(IntakeError, match=r"(?i)udp"):
        IntakeServer(EndpointAggregator(), address)


def test_a_stale_socket_file_is_replaced_and_removed_on_stop(socket_dir: Path) -> None:
    path = socket_dir / "intake.sock"
    leftover = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    leftover.bind(str(path))
    leftover.close()  # the file stays, nobody listens: a crashed agent's
    server = IntakeServer(EndpointAggregator(), path)
    server.start()
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o666)
    server.stop()
    assert not path.exists()


def test_a_live_intake_is_not_stolen(intake: Intake) -> None:
    with pytest.raises(IntakeError, match="another process is listening"):
        IntakeServer(EndpointAggregator(), intake.path).start()
    send_raw(intake.path, HEADER + GOOD)
    intake.wait_for_records(1)


def test_a_regular_file_is_never_replaced(socket_dir: Path) -> None:
    path = socket_dir / "intake.sock"
    path.write_text("precious")
    with pytest.raises(IntakeError, match="not a socket"):
        IntakeServer(EndpointAggregator(), path).start()
    assert path.read_text() == "precious"


def test_address_parsing() -> None:
    assert parse_address("/run/x.sock").path == "/run/x.sock"
    assert str(parse_address("udp://[::1]:7")) == "udp://[::1]:7"
    with pytest.raises(WireError, match="udp://HOST:PORT"):
        parse_address("udp://127.0.0.1:99999")
