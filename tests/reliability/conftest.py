"""Soak tests (marker ``soak``) run only with DEALERPULSE_SOAK=1: they take minutes."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

SOAK_ENV = "DEALERPULSE_SOAK"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get(SOAK_ENV) == "1":
        return
    skip = pytest.mark.skip(reason=f"soak test: set {SOAK_ENV}=1 (and select with -m soak)")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)


# ---- a real small filesystem (tmpfs) for the full-disk tests


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    """mount(size_bytes) -> a fresh tmpfs of that size under tmp_path, unmounted at teardown.

    Mounting needs root (CAP_SYS_ADMIN): without it the test is skipped with the
    reason. Unmounted even when the test fails; lazily (umount -l) if something
    still holds a file open, so that no mount outlives the test.
    """
    mounted: list[Path] = []

    def mount(size_bytes: int) -> Path:
        point = tmp_path / f"tmpfs{len(mounted)}"
        point.mkdir()
        if shutil.which("mount") is None:
            pytest.skip("no mount(8) on this machine: cannot make a small tmpfs")
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_bytes},mode=0700", "tmpfs", str(point)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(
                "mounting a tmpfs needs root or CAP_SYS_ADMIN (uid "
                f"{os.geteuid()}): {done.stderr.strip() or done.returncode}"
            )
        mounted.append(point)
        return point

    yield mount
    for point in reversed(mounted):
        if subprocess.run(["umount", str(point)], capture_output=True, check=False).returncode:
            subprocess.run(["umount", "-l", str(point)], capture_output=True, check=True)
