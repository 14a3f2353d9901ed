"""The shared PostgreSQL fixtures skip on a laptop without PostgreSQL but fail under CI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# One test through each way to a PostgreSQL database: ``store`` (a copy of the
# migrated template, via ``db_url``) and a bare ``pg_url``.
PG_TESTS = (
    "tests/store/test_contract.py::test_resent_batch_is_a_duplicate_and_adds_no_rows[postgresql]",
    "tests/store/test_failures.py::test_the_store_reconnects_after_postgresql_drops_its_connections",
)

CHILD_PYTEST = (
    sys.executable,
    "-m",
    "pytest",
    "-q",
    "-p",
    "no:cacheprovider",
    "-p",
    "pytest_timeout",
)


def _start_without_postgres(ci: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    # Nothing listens on loopback port 1: "PostgreSQL is down".
    env["DEALERPULSE_TEST_PG_URL"] = "postgresql+psycopg://postgres@127.0.0.1:1/test"
    env["CI"] = ci
    # The fixtures under test need no third-party pytest plugin; loading them
    # all (hypothesis, schemathesis, locust) would triple the child's start-up.
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    return subprocess.Popen(
        [*CHILD_PYTEST, *PG_TESTS],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _summary(child: subprocess.Popen[str]) -> tuple[int, str, str]:
    """Exit code, the final ``N skipped in ...`` line, and all the output."""
    try:
        stdout, stderr = child.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        raise
    lines = stdout.strip().splitlines()
    return child.returncode, lines[-1] if lines else "", stdout + stderr


def test_missing_postgresql_skips_locally_and_fails_under_ci() -> None:
    # Both child runs at once: each spends most of its time starting up.
    local = _start_without_postgres("false")
    ci = _start_without_postgres("true")
    local_code, local_line, local_output = _summary(local)
    ci_code, ci_line, ci_output = _summary(ci)

    assert local_code == 0, local_output
    assert local_line.startswith("2 skipped in"), local_output
    assert "unreachable" in local_output
    # A setup failure: pytest counts it as an error, and CI goes red.
    assert ci_code == 1, ci_output
    assert ci_line.startswith("2 errors in"), ci_output
    assert "mandatory under CI=true" in ci_output
