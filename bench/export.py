"""OTLP export: what forwarding costs the writer thread, and how fast it drains.

    python -m bench.export [--batches 5000] [--samples 60]

1. offer() cost: the writer thread's whole share of the export, measured while
   the endpoint holds every request (the worst case: the queue is full and
   every offer drops the oldest batch).
2. Throughput: batches of ``--samples`` gauges plus one endpoint stat, to a
   local counting OTLP receiver on 127.0.0.1, from offer to the last response.
Writes bench/results/export.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import time
from pathlib import Path
from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

from collector.export.encode import points_of
from collector.export.otlp_grpc import OtlpGrpcExporter
from collector.export.settings import ExportSettings
from dealerpulse.model import EndpointStat, MetricBatch, Sample, labels_of
from dealerpulse.sketch import DDSketch

RESULTS = Path(__file__).resolve().parent / "results"


class CountingReceiver:
    def __init__(self) -> None:
        self.points = 0
        self.hold = asyncio.Event()
        self.hold.set()

    async def export(self, request: ExportMetricsServiceRequest, _context: Any) -> Any:
        await self.hold.wait()
        for resource in request.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    kind = metric.WhichOneof("data")
                    self.points += len(getattr(metric, kind).data_points) if kind else 0
        return ExportMetricsServiceResponse()

    def handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        method = grpc.unary_unary_rpc_method_handler(
            self.export,
            request_deserializer=ExportMetricsServiceRequest.FromString,
            response_serializer=ExportMetricsServiceResponse.SerializeToString,
        )
        return grpc.method_handlers_generic_handler(
            "opentelemetry.proto.collector.metrics.v1.MetricsService", {"Export": method}
        )


def make_batches(count: int, samples: int) -> list[MetricBatch]:
    now_ms = int(time.time() * 1000)
    sketch = DDSketch.of([5.0, 20.0, 80.0, 300.0]).to_model()
    stat = EndpointStat(
        "/api/x",
        "GET",
        now_ms - 10_000,
        now_ms,
        4,
        0,
        0,
        405.0,
        5.0,
        300.0,
        ((200, 4),),
        "",
        0,
        sketch,
    )
    return [
        MetricBatch(
            f"agent-{seq % 50}",
            "dealer-1",
            seq,
            "boot",
            "host",
            "0.1.0",
            now_ms,
            tuple(
                Sample(f"m.{i % 12}", float(i), "percent", now_ms, labels_of(core=str(i)))
                for i in range(samples)
            ),
            (stat,),
        )
        for seq in range(1, count + 1)
    ]


async def measure(batches: list[MetricBatch]) -> dict[str, float]:
    receiver = CountingReceiver()
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((receiver.handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        settings = ExportSettings.resolve(f"127.0.0.1:{port}", queue_batches=len(batches))
        offer_ns = await _offer_cost(settings, receiver, batches)
        receiver.points = 0  # what the offer-cost run delivered is not part of the throughput
        exporter = OtlpGrpcExporter(settings)
        await exporter.start()
        started = time.perf_counter()
        exporter.offer(batches)
        while exporter.stats().exported < len(batches):
            await asyncio.sleep(0.001)
        elapsed = time.perf_counter() - started
        stats = exporter.stats()
        await exporter.stop(5.0)
    finally:
        await server.stop(0)
    points = sum(points_of(b) for b in batches)
    assert receiver.points == points == stats.exported_points
    return {
        "offer_us_per_call_blocked_endpoint": offer_ns / 1000,
        "export_batches_per_s": len(batches) / elapsed,
        "export_points_per_s": points / elapsed,
        "requests": stats.requests,
        "seconds": elapsed,
    }


async def _offer_cost(
    settings: ExportSettings, receiver: CountingReceiver, batches: list[MetricBatch]
) -> float:
    """ns per offer() of one batch from another thread, the endpoint holding everything."""
    receiver.hold.clear()
    small = ExportSettings.resolve(settings.target, queue_batches=100)
    exporter = OtlpGrpcExporter(small)
    await exporter.start()

    def offer_all() -> float:
        started = time.perf_counter_ns()
        for batch in batches:
            exporter.offer((batch,))
        return (time.perf_counter_ns() - started) / len(batches)

    per_call = await asyncio.to_thread(offer_all)
    assert exporter.stats().dropped_queue_full > 0
    receiver.hold.set()
    await exporter.stop(5.0)
    return per_call


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.export", description=__doc__)
    parser.add_argument("--batches", type=int, default=5000)
    parser.add_argument("--samples", type=int, default=60)
    args = parser.parse_args(argv)
    batches = make_batches(args.batches, args.samples)
    result: dict[str, Any] = {
        **asyncio.run(measure(batches)),
        "batches": args.batches,
        "samples_per_batch": args.samples,
        "python": platform.python_version(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "export.json").write_text(json.dumps(result, indent=2) + "\n")
    for key, value in result.items():
        print(f"{key}: {value:.1f}" if isinstance(value, float) else f"{key}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
