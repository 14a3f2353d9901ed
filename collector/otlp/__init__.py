"""OTLP metrics ingest: apps instrumented with the OpenTelemetry SDK report API timings."""
