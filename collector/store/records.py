"""Conversions between the model's dataclasses and table rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row

from collector.abc import AgentRecord, GapRecord
from collector.store.sketch import sketch_from_json, sketch_to_json
from dealerpulse.clock import from_unix_ms, to_unix_ms
from dealerpulse.model import EndpointStat, Gap, MetricBatch


@dataclass(frozen=True, slots=True)
class EndpointRecord:
    """One api_performance row read back: whose, and the statistics as the agent sent them."""

    id: int
    dealer_id: str
    agent_id: str
    stat: EndpointStat


def endpoint_row(batch: MetricBatch, stat: EndpointStat) -> dict[str, Any]:
    count = stat.count
    return {
        "timestamp": from_unix_ms(stat.end_ms),
        "interval_start": from_unix_ms(stat.start_ms),
        "dealer_id": batch.dealer_id,
        "agent_id": batch.agent_id,
        "endpoint": stat.route,
        "method": stat.method,
        "request_count": count,
        "error_count": stat.errors,
        "client_error_count": stat.client_errors,
        "duration_sum_ms": stat.duration_sum_ms,
        "duration_min_ms": stat.duration_min_ms,
        "duration_max_ms": stat.duration_max_ms,
        "avg_response_time": stat.duration_sum_ms / count if count else 0.0,
        "success_rate": max(0.0, 100.0 * (count - stat.errors) / count) if count else 100.0,
        "status_counts": {str(code): n for code, n in stat.status_counts},
        "last_error": stat.last_error,
        "last_error_at": from_unix_ms(stat.last_error_ms) if stat.last_error_ms else None,
        "source": stat.source,
        "latency_sketch": sketch_to_json(stat.latency) if stat.latency else None,
    }


def endpoint_record(row: Row[Any]) -> EndpointRecord:
    stat = EndpointStat(
        route=row.endpoint,
        method=row.method,
        start_ms=to_unix_ms(row.interval_start),
        end_ms=to_unix_ms(row.timestamp),
        count=row.request_count,
        errors=row.error_count,
        client_errors=row.client_error_count,
        duration_sum_ms=row.duration_sum_ms,
        duration_min_ms=row.duration_min_ms,
        duration_max_ms=row.duration_max_ms,
        status_counts=tuple(sorted((int(code), n) for code, n in row.status_counts.items())),
        last_error=row.last_error,
        last_error_ms=to_unix_ms(row.last_error_at) if row.last_error_at else 0,
        latency=sketch_from_json(row.latency_sketch) if row.latency_sketch is not None else None,
        source=row.source,
    )
    return EndpointRecord(id=row.id, dealer_id=row.dealer_id, agent_id=row.agent_id, stat=stat)


def gap_row(batch: MetricBatch, gap: Gap, received_at: datetime) -> dict[str, Any]:
    return {
        "agent_id": batch.agent_id,
        "dealer_id": batch.dealer_id,
        "first_seq": gap.first_seq,
        "last_seq": gap.last_seq,
        "from_time": from_unix_ms(gap.from_ms),
        "to_time": from_unix_ms(gap.to_ms),
        "batches": gap.batches,
        "samples": gap.samples,
        "reason": gap.reason,
        "received_at": received_at,
    }


def gap_record(row: Row[Any]) -> GapRecord:
    return GapRecord(
        agent_id=row.agent_id,
        dealer_id=row.dealer_id,
        first_seq=row.first_seq,
        last_seq=row.last_seq,
        from_time=row.from_time,
        to_time=row.to_time,
        batches=row.batches,
        samples=row.samples,
        reason=row.reason,
    )


def agent_record(row: Row[Any]) -> AgentRecord:
    return AgentRecord(
        agent_id=row.agent_id,
        dealer_id=row.dealer_id,
        hostname=row.hostname,
        version=row.version,
        boot_id=row.boot_id,
        first_seen=row.first_seen,
        last_seen=row.last_seen,
        last_seq=row.last_seq,
        generated_samples=row.generated_samples,
        dropped_samples={str(k): int(v) for k, v in row.dropped_samples.items()},
        spool_bytes=row.spool_bytes,
        spool_batches=row.spool_batches,
        clock_offset_ms=row.clock_offset_ms,
    )
