"""Where an ack's time goes inside the collector, as Prometheus histograms.

An agent's ack latency is the time its batch waits in the writer queue, plus
the write and commit of its group. The writer's last-group gauges show one
moment; these histograms show the distribution, so an operator (or a
benchmark) can tell a queue that backs up from a database that is slow:

- ``dealerpulse_writer_queue_wait_seconds``: per batch, from its arrival in
  the queue to the start of its group's transaction (backpressure, a busy
  writer, the grouping delay);
- ``dealerpulse_writer_commit_seconds``: per group, its write and commit,
  retries included;
- ``dealerpulse_writer_group_batches``: batches per committed group.

prometheus-client's own Histogram keeps the buckets (thread-safe). They
belong to no registry: the collector's /metrics (``collector.metrics_http``)
asks them at every scrape, like the rest of the writer's figures.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import Histogram
from prometheus_client.core import Metric

# From 1 ms (an idle SQLite commit) to 10 s (the retry policy's worst case).
SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
GROUP_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500)


class WriterTimings:
    """The writer's histograms; observed from its threads, read at scrape time."""

    def __init__(self) -> None:
        self.queue_wait = Histogram(
            "dealerpulse_writer_queue_wait_seconds",
            "time a batch waited in the writer queue before its transaction started",
            buckets=SECONDS_BUCKETS,
            registry=None,
        )
        self.commit = Histogram(
            "dealerpulse_writer_commit_seconds",
            "time to write and commit one group of batches (retries included)",
            buckets=SECONDS_BUCKETS,
            registry=None,
        )
        self.group_batches = Histogram(
            "dealerpulse_writer_group_batches",
            "batches per committed transaction",
            buckets=GROUP_BUCKETS,
            registry=None,
        )

    def observe_group(self, waits_s: list[float], commit_s: float) -> None:
        """One committed group: each batch's wait in the queue and the commit's duration."""
        for wait_s in waits_s:
            self.queue_wait.observe(wait_s)
        self.commit.observe(commit_s)
        self.group_batches.observe(len(waits_s))

    def collect(self) -> Iterator[Metric]:
        for histogram in (self.queue_wait, self.commit, self.group_batches):
            yield from histogram.collect()
