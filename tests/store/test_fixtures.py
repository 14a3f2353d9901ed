"""The shared PostgreSQL fixtures skip on a laptop without PostgreSQL but fail under CI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ONE_PG_TEST = (
    "tests/store/test_contract.py::test_resent_batch_is_a_duplicate_and_adds_no_rows[postgresql]"
)


def _run_without_postgres(ci: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    # Nothing listens on loopback port 1: "PostgreSQL is down".
    env["DEALERPULSE_TEST_PG_URL"] = "postgresql+psycopg://postgres@127.0.0.1:1/test"
    env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", ONE_PG_TEST],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(("ci", "outcome"), [("false", "1 skipped"), ("true", "1 failed")])
def test_missing_postgresql_skips_locally_and_fails_under_ci(ci: str, outcome: str) -> None:
    result = _run_without_postgres(ci)

    assert outcome in result.stdout, result.stdout + result.stderr
    assert "unreachable" in result.stdout
