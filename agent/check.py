"""``dealerpulse agent --check``: is this agent set up to work? Never streams.

Checks the settings, the token's form, that the spool can be written, that
the API intake can listen (or that another agent already does), runs every
configured probe once, then connects and calls Hello: the dealer the
collector knows this token as, and how far this host's clock is from the
collector's. Every problem is named precisely enough to fix without reading
logs.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import grpc
import grpc.aio

from agent.aggregate import RequestRecord
from agent.codec import Hello, HelloReply
from agent.connection import Endpoint, describe, open_channel, say_hello
from agent.errors import AgentError, SpoolBusy
from agent.intake import IntakeError, IntakeServer
from agent.settings import AgentConfig
from agent.spool import SqliteSpool
from dealerpulse import __version__
from dealerpulse.clock import Clock, SystemClock, to_unix_ms
from dealerpulse.tokens import TokenError, parse_token

logger = logging.getLogger(__name__)

HELLO_TIMEOUT_S = 5.0
# Beyond these the collector's view of "now" and ours disagree enough to matter:
# a warning first, then a problem (far-future timestamps are refused).
CLOCK_WARN_MS = 2_000
CLOCK_PROBLEM_MS = 60_000


@dataclass(frozen=True, slots=True)
class CheckReport:
    collector: str
    spool_path: Path
    token_dealer_id: str | None = None
    agent_id: str | None = None
    dealer_id: str | None = None
    dealer_name: str = ""
    last_committed_seq: int | None = None
    # The collector's clock minus ours, at the midpoint of the Hello call.
    clock_offset_ms: int | None = None
    round_trip_ms: int | None = None
    # The intake's address and what listening there showed; "off" when disabled.
    intake: str = "off"
    # One line per configured probe: its first result.
    probes: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        """The report as text lines for a terminal."""
        lines = [f"collector: {self.collector}", f"spool: {self.spool_path}"]
        lines.append(f"intake: {self.intake}")
        lines += [f"probe {line}" for line in self.probes]
        if self.agent_id:
            lines.append(f"agent id: {self.agent_id}")
        if self.dealer_id is not None:
            name = f" ({self.dealer_name})" if self.dealer_name else ""
            lines.append(f"dealer: {self.dealer_id}{name}")
            lines.append(f"collector has this agent's batches up to seq {self.last_committed_seq}")
        if self.clock_offset_ms is not None:
            lines.append(
                f"clock offset vs collector: {self.clock_offset_ms:+d} ms "
                f"(round trip {self.round_trip_ms} ms)"
            )
        lines += [f"warning: {w}" for w in self.warnings]
        lines += [f"problem: {p}" for p in self.problems]
        lines.append("OK" if self.ok else f"{len(self.problems)} problem(s)")
        return lines


async def check(config: AgentConfig, clock: Clock | None = None) -> CheckReport:
    clock = clock or SystemClock()
    problems: list[str] = []
    warnings: list[str] = []
    token_dealer = _check_token(config.token, problems)
    _check_settings(config, problems, warnings)
    agent_id = _check_spool(config, token_dealer, problems, warnings)
    intake = await asyncio.to_thread(_check_intake, config, problems, warnings)
    probes = await _check_probes(config, clock, warnings)
    report = CheckReport(
        collector=config.collector,
        spool_path=config.spool_path,
        token_dealer_id=token_dealer,
        agent_id=agent_id,
        intake=intake,
        probes=probes,
    )
    if token_dealer is not None:
        report = await _check_collector(config, report, agent_id, clock, problems, warnings)
    return replace(report, problems=tuple(problems), warnings=tuple(warnings))


def _check_token(token: str, problems: list[str]) -> str | None:
    try:
        return parse_token(token).dealer_id
    except TokenError as exc:
        problems.append(f"token: {exc}")
        return None


def _check_settings(config: AgentConfig, problems: list[str], warnings: list[str]) -> None:
    if config.interval_s <= 0:
        problems.append(f"interval: must be positive, got {config.interval_s}")
    if config.spool_max_bytes < 4 * 1024 * 1024:
        warnings.append(
            f"spool_max_bytes is only {config.spool_max_bytes} bytes; a single batch may be "
            "2 MiB, so an outage will drop data quickly"
        )


def _check_spool(
    config: AgentConfig, dealer_id: str | None, problems: list[str], warnings: list[str]
) -> str | None:
    """Open (creating) the spool as the agent would; its agent id, if it could be read."""
    path = config.spool_path
    if path.is_dir():
        problems.append(f"spool: {path} is a directory; give a file path")
        return None
    existing = _nearest_existing(path.parent)
    if not existing.is_dir():
        problems.append(f"spool: {existing} is not a directory, so {path} cannot be created")
        return None
    if not os.access(existing, os.W_OK | os.X_OK):
        problems.append(f"spool: cannot create files in {existing} (no write permission)")
        return None
    try:
        with SqliteSpool(
            path, config.spool_max_bytes, dealer_id=dealer_id or "", agent_id=config.agent_id
        ) as spool:
            return spool.agent_id
    except SpoolBusy:
        warnings.append(f"spool {path} is in use by a running agent (fine if it is this one)")
        return config.agent_id
    except (AgentError, ValueError) as exc:
        problems.append(f"spool: {exc}")
        return None


class _Discard:
    def record(self, record: RequestRecord) -> None:
        pass


def _check_intake(config: AgentConfig, problems: list[str], warnings: list[str]) -> str:
    """Listen on the intake address for a moment, as the agent would."""
    if config.intake is None:
        return "off (no API metrics from the middleware)"
    address = str(config.intake)
    try:
        with IntakeServer(_Discard(), config.intake):
            pass
    except IntakeError as exc:
        if "another process is listening" in str(exc):
            warnings.append(
                f"intake {address}: another agent listens there (fine if it is this one)"
            )
            return f"{address} (in use by another process)"
        problems.append(f"intake: {exc}; the apps' middleware records would be lost")
        return f"{address} (cannot listen)"
    return f"{address} (can listen; apps send there via DEALERPULSE_INTAKE={address})"


async def _check_probes(config: AgentConfig, clock: Clock, warnings: list[str]) -> tuple[str, ...]:
    """Run every probe once, all at the same time; a failing one is a warning (the target may
    really be down, which is what the probe is for)."""
    if not config.probes:
        return ()
    # Imported here, as the runner does: http.client only when probes are configured.
    from agent.probes import run_check

    results = await asyncio.gather(
        *(asyncio.to_thread(run_check, spec, clock) for spec in config.probes)
    )
    lines: list[str] = []
    for spec, result in zip(config.probes, results, strict=True):
        took = f"{result.duration_ms:.0f} ms"
        if result.ok:
            lines.append(f"{spec.label}: OK, {spec.method} answered {result.status_code} in {took}")
        else:
            lines.append(f"{spec.label}: FAILED after {took}: {result.error}")
            warnings.append(f"probe {spec.label} failed its first check: {result.error}")
    return tuple(lines)


def _nearest_existing(directory: Path) -> Path:
    for candidate in (directory, *directory.parents):
        if candidate.exists():
            return candidate
    return Path(directory.anchor or ".")


async def _check_collector(
    config: AgentConfig,
    report: CheckReport,
    agent_id: str | None,
    clock: Clock,
    problems: list[str],
    warnings: list[str],
) -> CheckReport:
    # An agent id the collector would register; empty when another agent
    # holds the spool and no id was configured.
    hello = Hello(agent_id or "", config.hostname, __version__, boot_id="check")
    endpoint = Endpoint(config.collector, config.token, config.tls)
    started = clock.now()
    try:
        channel = open_channel(endpoint)
    except AgentError as exc:
        problems.append(f"tls: {exc}")
        return report
    try:
        reply = await say_hello(channel, config.token, hello, HELLO_TIMEOUT_S)
    except grpc.aio.AioRpcError as exc:
        problems.append(_explain(config, report.token_dealer_id, exc))
        return report
    except AgentError as exc:
        problems.append(f"collector {config.collector}: {exc}")
        return report
    finally:
        await channel.close(grace=None)
    return _read_reply(report, reply, started, clock.now(), problems, warnings)


def _read_reply(
    report: CheckReport,
    reply: HelloReply,
    started: datetime,
    finished: datetime,
    problems: list[str],
    warnings: list[str],
) -> CheckReport:
    start_ms, end_ms = to_unix_ms(started), to_unix_ms(finished)
    offset_ms = reply.server_time_ms - (start_ms + end_ms) // 2
    if reply.dealer_id != report.token_dealer_id:
        problems.append(
            f"token: the collector knows this token as dealer {reply.dealer_id!r}, "
            f"but the token names {report.token_dealer_id!r}"
        )
    if abs(offset_ms) > CLOCK_PROBLEM_MS:
        problems.append(f"clock: {offset_ms / 1000:+.1f} s off the collector's; sync with NTP")
    elif abs(offset_ms) > CLOCK_WARN_MS:
        warnings.append(f"clock: {offset_ms / 1000:+.1f} s off the collector's; sync with NTP")
    return replace(
        report,
        dealer_id=reply.dealer_id,
        dealer_name=reply.dealer_name,
        last_committed_seq=reply.last_committed_seq,
        clock_offset_ms=offset_ms,
        round_trip_ms=end_ms - start_ms,
    )


def _explain(config: AgentConfig, dealer: str | None, exc: grpc.aio.AioRpcError) -> str:
    where = f"collector {config.collector}"
    code = exc.code()
    if code is grpc.StatusCode.UNAVAILABLE:
        return f"{where}: cannot connect ({exc.details()}); is it running, is the address right?"
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"{where}: no answer within {HELLO_TIMEOUT_S:g} s"
    if code is grpc.StatusCode.UNAUTHENTICATED:
        return f"{where} does not accept this token for dealer {dealer!r}: {exc.details()}"
    if code is grpc.StatusCode.PERMISSION_DENIED:
        return f"{where}: the token for dealer {dealer!r} is not allowed: {exc.details()}"
    if code is grpc.StatusCode.UNIMPLEMENTED:
        return f"{where} is not a DealerPulse collector (Ingest.Hello is not implemented)"
    return f"{where}: Hello failed: {describe(exc)}"
