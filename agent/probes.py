"""Synthetic HTTP probes: availability and response time measured from the dealer server.

Each probe runs in its own daemon thread with the standard library's
``http.client`` (the agent takes no HTTP dependency). A check is one request;
it succeeds when an answer arrives within ``timeout_s`` with the expected
status and, if asked, a body holding ``body_contains``. Every check becomes a
:class:`RequestRecord` of route ``probe:<name>`` in a probe
:class:`EndpointAggregator` (source "probe"), so probe latencies travel with
sketches like any API traffic, and its outcome is the ``probe.up`` gauge
(1 or 0, label ``probe``) that :class:`ProbeSource` reports every interval.

A check that got no HTTP answer at all (refused, timed out, TLS failure) is
recorded with status 599, a code no server sends, and the reason as its error.
"""

from __future__ import annotations

import http.client
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from agent.abc import Source
from agent.aggregate import EndpointAggregator, RequestRecord
from dealerpulse.clock import Clock, SystemClock, unix_ms
from dealerpulse.model import Sample, labels_of

logger = logging.getLogger(__name__)

__all__ = [
    "NO_ANSWER_STATUS",
    "ProbeError",
    "ProbeResult",
    "ProbeRunner",
    "ProbeSource",
    "ProbeSpec",
    "parse_probes",
    "run_check",
]

PROBE_SOURCE = "probe"
ROUTE_PREFIX = "probe:"
NO_ANSWER_STATUS = 599
# The collector's limits on routes and label values; longer would refuse whole batches.
MAX_ROUTE_CHARS = 500
MAX_LABEL_CHARS = 256
DEFAULT_INTERVAL_S = 30.0
DEFAULT_TIMEOUT_S = 5.0
# Read at most this much of a body when looking for body_contains.
MAX_BODY_BYTES = 1024 * 1024
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_KEYS = frozenset(
    {"url", "name", "method", "interval_s", "timeout_s", "expected_status", "body_contains"}
)


class ProbeError(ValueError):
    """A probe configured wrongly; the message names the probe and the field."""


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    url: str
    name: str = ""
    method: str = "GET"
    interval_s: float = DEFAULT_INTERVAL_S
    timeout_s: float = DEFAULT_TIMEOUT_S
    expected_status: int = 200
    body_contains: str = ""

    def __post_init__(self) -> None:
        where = f"probe {self.name or self.url!r}"
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ProbeError(f"{where}: url must be http(s)://HOST[:PORT]/PATH, got {self.url!r}")
        try:
            parts.port  # noqa: B018  (raises on a bad port)
        except ValueError as exc:
            raise ProbeError(f"{where}: url has a bad port: {exc}") from None
        if self.method not in _METHODS:
            raise ProbeError(f"{where}: method must be one of {sorted(_METHODS)}")
        for key in ("interval_s", "timeout_s"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ProbeError(f"{where}: {key} must be a positive number, got {value!r}")
        if self.timeout_s > self.interval_s:
            raise ProbeError(f"{where}: timeout_s must not exceed interval_s")
        status = self.expected_status
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise ProbeError(f"{where}: expected_status must be 100..599, got {status!r}")
        if len(self.route) > MAX_ROUTE_CHARS:
            raise ProbeError(f"{where}: name or url longer than {MAX_ROUTE_CHARS} characters")

    @property
    def label(self) -> str:
        return self.name or self.url

    @property
    def route(self) -> str:
        return ROUTE_PREFIX + self.label


def parse_probes(value: Any) -> tuple[ProbeSpec, ...]:
    """A TOML list of tables or URLs, a sequence of URLs, or URLs separated by spaces."""
    if isinstance(value, str):
        items: Sequence[Any] = value.split()
    elif isinstance(value, list | tuple):
        items = value
    else:
        raise ProbeError(f"probes must be a list of tables or URLs, got {value!r}")
    specs = tuple(_spec(item, index) for index, item in enumerate(items))
    labels = [spec.label for spec in specs]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ProbeError(f"probe names must be unique; repeated: {duplicates[0]!r}")
    return specs


def _spec(item: Any, index: int) -> ProbeSpec:
    if isinstance(item, ProbeSpec):
        return item
    if isinstance(item, str):
        return ProbeSpec(url=item)
    if not isinstance(item, Mapping):
        raise ProbeError(f"probes[{index}] must be a table or a URL, got {item!r}")
    unknown = sorted(set(item) - _KEYS)
    if unknown:
        raise ProbeError(f"probes[{index}]: unknown key {unknown[0]!r} (known: {sorted(_KEYS)})")
    if not isinstance(item.get("url"), str):
        raise ProbeError(f"probes[{index}]: url is required")
    fields = dict(item)
    fields["method"] = str(fields.get("method", "GET")).upper()
    for key in ("name", "body_contains"):
        if key in fields and not isinstance(fields[key], str):
            raise ProbeError(f"probes[{index}]: {key} must be a string")
    return ProbeSpec(**fields)


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    status_code: int
    duration_ms: float
    time_ms: int
    error: str = ""


def run_check(spec: ProbeSpec, clock: Clock) -> ProbeResult:
    """One request of the probe; never raises for what the target does."""
    started_ms = unix_ms(clock)
    started = time.perf_counter()
    try:
        status, body = _request(spec)
    except (OSError, http.client.HTTPException) as exc:
        elapsed = (time.perf_counter() - started) * 1000
        reason = f"no answer: {type(exc).__name__}: {exc}"[:1000]
        return ProbeResult(False, NO_ANSWER_STATUS, elapsed, started_ms, reason)
    elapsed = (time.perf_counter() - started) * 1000
    if status != spec.expected_status:
        error = f"expected status {spec.expected_status}, got {status}"
        return ProbeResult(False, status, elapsed, started_ms, error)
    if spec.body_contains and spec.body_contains.encode() not in body:
        error = f"body does not contain {spec.body_contains[:100]!r}"
        return ProbeResult(False, status, elapsed, started_ms, error)
    return ProbeResult(True, status, elapsed, started_ms)


def _request(spec: ProbeSpec) -> tuple[int, bytes]:
    parts = urlsplit(spec.url)
    connection_class = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    host = parts.hostname or ""
    connection = connection_class(host, parts.port, timeout=spec.timeout_s)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request(spec.method, target, headers={"User-Agent": "dealerpulse-probe"})
        response = connection.getresponse()
        body = response.read(MAX_BODY_BYTES) if spec.body_contains else b""
        return response.status, body
    finally:
        connection.close()


class ProbeRunner:
    """Runs every probe on its interval in its own thread; start() and stop()."""

    name = "probes"

    def __init__(
        self,
        specs: Sequence[ProbeSpec],
        aggregator: EndpointAggregator | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.specs = tuple(specs)
        self.clock = clock or SystemClock()
        self.aggregator = aggregator or EndpointAggregator(clock=self.clock, source=PROBE_SOURCE)
        self._lock = threading.Lock()
        self._last: dict[str, ProbeResult] = {}
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def check(self, spec: ProbeSpec) -> ProbeResult:
        """Run one check now and record it (the threads call this; so may tests)."""
        result = run_check(spec, self.clock)
        record = RequestRecord(
            spec.route,
            spec.method,
            result.status_code,
            result.duration_ms,
            result.time_ms,
            result.error,
        )
        self.aggregator.record(record)
        with self._lock:
            previous = self._last.get(spec.label)
            self._last[spec.label] = result
        if previous is not None and previous.ok != result.ok:
            logger.warning(
                "probe %s is %s: %s",
                spec.label,
                "up" if result.ok else "down",
                result.error or result.status_code,
            )
        return result

    def last_results(self) -> dict[str, ProbeResult]:
        with self._lock:
            return dict(self._last)

    def start(self) -> None:
        for spec in self.specs:
            thread = threading.Thread(
                target=self._loop, args=(spec,), name=f"dealerpulse-probe-{spec.label}", daemon=True
            )
            self._threads.append(thread)
            thread.start()
        if self.specs:
            logger.info("running %s probe(s)", len(self.specs))

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout_s)

    def _loop(self, spec: ProbeSpec) -> None:
        # Waiting on the stop event: a shutdown cuts the interval short.
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                self.check(spec)
            except Exception:  # a bug in one check must not end the probe for good
                logger.exception("probe %s failed unexpectedly", spec.label)
            self._stopping.wait(max(0.0, spec.interval_s - (time.monotonic() - started)))


class ProbeSource(Source):
    """``probe.up`` (1 or 0) per probe, from its latest check."""

    name = "probes"

    def __init__(self, runner: ProbeRunner) -> None:
        self._runner = runner

    def collect(self, now_ms: int) -> list[Sample]:
        return [
            Sample(
                "probe.up",
                1.0 if result.ok else 0.0,
                "bool",
                now_ms,
                labels_of(probe=label[:MAX_LABEL_CHARS]),
            )
            for label, result in sorted(self._runner.last_results().items())
        ]
