"""Forwarding what the collector stored to other systems (OTLP/gRPC: Datadog, New Relic...)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from collector.export.abc import ExportError, ExportStats, MetricExporter
from collector.export.settings import ExportSettings, export_settings_of

if TYPE_CHECKING:
    from collector.settings import CollectorSettings

__all__ = [
    "ExportError",
    "ExportSettings",
    "ExportStats",
    "MetricExporter",
    "exporter_from_settings",
]


def exporter_from_settings(settings: CollectorSettings) -> MetricExporter | None:
    """The configured exporter, or None without an export endpoint."""
    export = export_settings_of(settings)
    if export is None:
        return None
    # Imported only when used: it needs grpc.aio and opentelemetry-proto.
    from collector.export.otlp_grpc import OtlpGrpcExporter

    return OtlpGrpcExporter(export)
