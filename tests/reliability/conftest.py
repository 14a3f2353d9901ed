"""Soak tests (marker ``soak``) run only with DEALERPULSE_SOAK=1: they take minutes."""

from __future__ import annotations

import os

import pytest

SOAK_ENV = "DEALERPULSE_SOAK"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get(SOAK_ENV) == "1":
        return
    skip = pytest.mark.skip(reason=f"soak test: set {SOAK_ENV}=1 (and select with -m soak)")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)
