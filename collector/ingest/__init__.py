"""The collector's ingest path: decode, validate, group-commit, acknowledge."""
