"""Rollups of metrics and endpoint statistics (1 minute, 1 hour) and retention.

- :mod:`collector.rollup.dirty`: the dirty marks the batch writer records.
- :mod:`collector.rollup.compute`: recomputing the rollups of marked minutes.
- :mod:`collector.rollup.retention`: chunked deletes of expired rows.
- :mod:`collector.rollup.jobs`: both as APScheduler jobs in the collector.

Kept free of imports: the store's writer imports :mod:`collector.rollup.dirty`.
"""
