"""The central collector: ingest server, store, alerting and scheduled jobs."""
