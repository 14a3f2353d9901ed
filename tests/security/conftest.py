"""Fixtures of the security tests: a fake clock the store also uses (token revocation
times are compared with it), stores on it, and one set of certificates per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.store import SQLAlchemyMetricStore, open_store
from dealerpulse.certs import CertFiles, make_certs
from dealerpulse.clock import FakeClock

from .kit import START


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def store(start_migrated: None, db_url: str, clock: FakeClock) -> Iterator[SQLAlchemyMetricStore]:
    """A store of each backend whose token checks use ``clock``."""
    opened = open_store(db_url, clock=clock, pool_size=5)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def sqlite_store(
    start_migrated: None, sqlite_url: str, clock: FakeClock
) -> Iterator[SQLAlchemyMetricStore]:
    """For tests whose subject does not depend on the database backend."""
    opened = open_store(sqlite_url, clock=clock, pool_size=5)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    """A CA, a server certificate for 127.0.0.1 and a client certificate 'agent-1'."""
    return make_certs(tmp_path_factory.mktemp("pki"), clients=["agent-1"])


@pytest.fixture(scope="session")
def foreign_certs(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    """Another CA, with a client certificate of the same name: trusted by nobody here."""
    return make_certs(tmp_path_factory.mktemp("other-pki"), clients=["agent-1"])


def client_files(files: CertFiles, name: str = "agent-1") -> tuple[Path, Path]:
    return files.clients[name]
