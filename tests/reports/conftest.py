"""Fixtures of the report tests: a local SMTP server and a local Slack (the alerting ones)."""

from __future__ import annotations

from alerting.conftest import slack, smtp_server

__all__ = ["slack", "smtp_server"]
