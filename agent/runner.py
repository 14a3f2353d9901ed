"""The agent process: sample on interval boundaries, spool, ship, stop cleanly.

Each interval, every source is sampled at the same instant (a multiple of
the interval: :00, :10, :20 for 10 s) so series of different hosts line up.
Sources run in a worker thread: a source that blocks (a hung disk) costs its
own interval, not the shipping. One interval becomes one batch, split when
it is too large. On SIGTERM/SIGINT sampling stops, the shipper gets a short
bounded time to have what is in flight acked, and the spool is closed.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from agent.abc import EndpointSource, Source
from agent.aggregate import EndpointAggregator
from agent.batching import split
from agent.connection import Endpoint
from agent.errors import AgentError
from agent.intake import IntakeCountersSource, IntakeError, IntakeServer
from agent.settings import AgentConfig
from agent.shipper import Shipper
from agent.sources.host import PsutilHostSource
from agent.spool import SqliteSpool
from dealerpulse.clock import Clock, SystemClock, sleep_until_event, to_unix_ms
from dealerpulse.model import EndpointStat, Sample

if TYPE_CHECKING:
    from agent.check import CheckReport

__all__ = ["Agent", "AgentConfig", "check", "next_boundary_ms", "run_agent"]

logger = logging.getLogger(__name__)

FLUSH_TIMEOUT_S = 5.0
# After stop() the shipper's own shutdown is quick; this only bounds a hang.
_SHIPPER_EXIT_TIMEOUT_S = 2.0


class Background(Protocol):
    """A helper with its own threads (API intake, probes), run alongside sampling."""

    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...


async def check(config: AgentConfig, clock: Clock | None = None) -> CheckReport:
    """``dealerpulse agent --check``; agent.check is loaded only for it (memory)."""
    from agent.check import check as check_config

    return await check_config(config, clock)


def next_boundary_ms(now_ms: int, interval_ms: int) -> int:
    """The first multiple of interval_ms strictly after now_ms."""
    return (now_ms // interval_ms + 1) * interval_ms


class Agent:
    """Samples ``sources`` every interval into ``spool``; ``shipper`` drains it."""

    def __init__(
        self,
        config: AgentConfig,
        sources: Sequence[Source],
        spool: SqliteSpool,
        shipper: Shipper,
        clock: Clock | None = None,
        *,
        endpoint_sources: Sequence[EndpointSource] = (),
        background: Sequence[Background] = (),
        flush_timeout_s: float = FLUSH_TIMEOUT_S,
    ) -> None:
        self.config = config
        self.sources = tuple(sources)
        self.endpoint_sources = tuple(endpoint_sources)
        self.background = tuple(background)
        self.spool = spool
        self.shipper = shipper
        self.clock = clock or SystemClock()
        self.flush_timeout_s = flush_timeout_s
        self.interval_ms = max(1, round(config.interval_s * 1000))
        self._stop = asyncio.Event()
        self._collecting: asyncio.Future[list[Sample]] | None = None

    def stop(self) -> None:
        """Ask run() to finish; safe to call from a signal handler on the loop."""
        self._stop.set()

    async def run(self) -> None:
        """Sample until stop(), then flush the shipper and close the spool."""
        shipping = asyncio.create_task(self.shipper.run(), name="dealerpulse-shipper")
        started = self._start_background()
        try:
            await self._sample_until_stopped()
        finally:
            for helper in reversed(started):
                await asyncio.to_thread(_stop_quietly, helper)
            await self._shut_down(shipping)

    def _start_background(self) -> list[Background]:
        started: list[Background] = []
        for helper in self.background:
            try:
                helper.start()
            except Exception as exc:  # the host metrics are still worth sending
                logger.error("%s could not start, running without it: %s", helper.name, exc)
                continue
            started.append(helper)
        return started

    async def sample_once(self, now_ms: int) -> list[int]:
        """Take one interval's samples stamped now_ms, spool them; the new seqs."""
        samples = await self._collect(now_ms)
        endpoints = self._drain(now_ms)
        seqs: list[int] = []
        for chunk in split(samples, endpoints):
            try:
                seqs.append(self.spool.append(chunk.samples, chunk.endpoints))
            except AgentError as exc:  # disk full, ...: keep sampling, try again next time
                logger.error("could not spool %s samples: %s", len(chunk), exc)
        if seqs:
            logger.debug("spooled batch seq %s..%s", seqs[0], seqs[-1])
            self.shipper.notify()
        return seqs

    # ---- the loop

    async def _sample_until_stopped(self) -> None:
        boundary = next_boundary_ms(to_unix_ms(self.clock.now()), self.interval_ms)
        while not self._stop.is_set():
            now_ms = to_unix_ms(self.clock.now())
            if boundary - now_ms > self.interval_ms:
                # The wall clock was set back: realign instead of waiting it out.
                logger.warning("clock went back by %s ms; realigning", boundary - now_ms)
                boundary = next_boundary_ms(now_ms, self.interval_ms)
            if await sleep_until_event(self._stop, (boundary - now_ms) / 1000):
                return
            now_ms = to_unix_ms(self.clock.now())
            if now_ms - boundary >= self.interval_ms:
                # Suspended or starved: sample now, on the latest boundary, and
                # skip the missed ones rather than catching up in a burst.
                logger.warning("sampling fell behind by %s ms", now_ms - boundary)
                boundary = now_ms - now_ms % self.interval_ms
            await self.sample_once(boundary)
            boundary += self.interval_ms

    async def _collect(self, now_ms: int) -> list[Sample]:
        if self._collecting is not None and not self._collecting.done():
            logger.warning("sources still busy with the previous interval; skipping %s", now_ms)
            return []
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(None, self._collect_blocking, now_ms)
        self._collecting = future
        done, _ = await asyncio.wait({future}, timeout=self.config.interval_s * 0.8)
        if not done:
            logger.warning("sources took longer than the interval; their samples are lost")
            return []
        return future.result()

    def _collect_blocking(self, now_ms: int) -> list[Sample]:
        samples: list[Sample] = []
        for source in self.sources:
            try:
                samples.extend(source.collect(now_ms))
            except Exception:  # one broken source must not cost the others
                logger.exception("source %s failed", getattr(source, "name", source))
        return samples

    def _drain(self, now_ms: int) -> list[EndpointStat]:
        stats: list[EndpointStat] = []
        for source in self.endpoint_sources:
            try:
                stats.extend(source.drain(now_ms))
            except Exception:
                logger.exception("endpoint source %s failed", getattr(source, "name", source))
        return stats

    async def _shut_down(self, shipping: asyncio.Task[None]) -> None:
        try:
            await self.shipper.stop(self.flush_timeout_s)
            await asyncio.wait_for(shipping, _SHIPPER_EXIT_TIMEOUT_S)
        except TimeoutError:
            logger.warning("shipper did not stop in time; cancelled")
        finally:
            shipping.cancel()
            self.spool.close()
            logger.info("agent stopped; spool %s closed", self.spool.path)


def build_agent(
    config: AgentConfig,
    *,
    clock: Clock | None = None,
    extra_sources: Sequence[Source] = (),
    endpoint_sources: Sequence[EndpointSource] = (),
) -> Agent:
    """The agent of ``config``: host source, spool and shipper wired together."""
    clock = clock or SystemClock()
    spool = SqliteSpool(
        config.spool_path,
        config.spool_max_bytes,
        clock,
        dealer_id=config.dealer_id,
        hostname=config.hostname,
        agent_id=config.agent_id,
    )
    endpoint = Endpoint(config.collector, config.token, config.tls)
    shipper = Shipper(endpoint, spool, hostname=config.hostname)
    sources: list[Source] = [PsutilHostSource(clock=clock), *extra_sources]
    endpoints = list(endpoint_sources)
    background: list[Background] = []
    if config.intake is not None:
        api = EndpointAggregator(clock=clock)
        intake = IntakeServer(api, config.intake)
        endpoints.append(api)
        sources.append(IntakeCountersSource(intake, api))
        background.append(_IntakeService(intake))
    if config.probes:
        # Only with probes configured: it loads http.client (and email) for them.
        from agent.probes import ProbeRunner, ProbeSource

        probes = ProbeRunner(config.probes, clock=clock)
        endpoints.append(probes.aggregator)
        sources.append(ProbeSource(probes))
        background.append(probes)
    agent = Agent(
        config,
        sources,
        spool,
        shipper,
        clock,
        endpoint_sources=endpoints,
        background=background,
    )
    logger.info(
        "agent %s for dealer %s: sampling every %s s, shipping to %s",
        spool.agent_id,
        config.dealer_id,
        config.interval_s,
        config.collector,
    )
    return agent


async def run_agent(
    config: AgentConfig,
    *,
    extra_sources: Sequence[Source] = (),
    endpoint_sources: Sequence[EndpointSource] = (),
) -> None:
    """The ``dealerpulse agent`` command: run until SIGTERM or SIGINT.

    The host is always sampled; ``extra_sources`` and ``endpoint_sources``
    (API statistics from the intake) join it in every interval's batch.
    """
    agent = build_agent(config, extra_sources=extra_sources, endpoint_sources=endpoint_sources)
    with _stop_on_signals(agent.stop):
        await agent.run()


class _IntakeService:
    """The intake as a Background: a socket that cannot be opened is an IntakeError."""

    name = "API intake"

    def __init__(self, server: IntakeServer) -> None:
        self.server = server

    def start(self) -> None:
        try:
            self.server.start()
        except IntakeError as exc:
            raise IntakeError(f"{exc}; no API metrics from the middleware") from exc

    def stop(self) -> None:
        self.server.stop()


def _stop_quietly(helper: Background) -> None:
    try:
        helper.stop()
    except Exception:
        logger.exception("%s did not stop cleanly", helper.name)


@contextmanager
def _stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    on_loop: list[signal.Signals] = []
    previous: dict[signal.Signals, Any] = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(signum, stop)
            on_loop.append(signum)
        except NotImplementedError:  # Windows: a plain handler that hops onto the loop
            previous[signum] = signal.signal(signum, lambda *_: loop.call_soon_threadsafe(stop))
        except RuntimeError:  # not the main thread: the caller handles signals
            logger.debug("cannot handle %s outside the main thread", signum.name)
    try:
        yield
    finally:
        for signum in on_loop:
            loop.remove_signal_handler(signum)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
