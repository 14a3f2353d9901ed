"""Secrets registered with the log scrubber by one test do not leak into the next."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dealerpulse import logs


@pytest.fixture(autouse=True)
def _restore_log_secrets() -> Iterator[None]:
    before = set(logs._SECRETS)
    yield
    logs._SECRETS.clear()
    logs._SECRETS.update(before)
