"""The reporter: analytics RPCs, reports, HTTP API and dashboard (reads the store)."""
