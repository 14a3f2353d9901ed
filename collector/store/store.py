"""SQLAlchemyMetricStore: the MetricStore on SQLite (default) or PostgreSQL."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import ColumnElement, Connection, Engine, or_, select, update
from sqlalchemy.engine import make_url

from collector.abc import (
    AgentInfo,
    AgentRecord,
    Dealer,
    DealerExists,
    GapRecord,
    LatestSample,
    MetricStore,
    StoredSample,
    UnknownDealer,
)
from collector.store import migrate as migrations
from collector.store import reads
from collector.store.agent_updates import clock_offset_update, hello_update
from collector.store.dialect import insert_ignoring_conflicts
from collector.store.engine import WRITE_OPTION, SqliteSync, create_store_engine, translated_errors
from collector.store.errors import AgentConflict
from collector.store.pool import PoolSettings
from collector.store.records import EndpointRecord
from collector.store.schema import agents, dealer_tokens, dealers, series
from collector.store.series import labels_from_json
from collector.store.writer import BatchWriter
from dealerpulse.clock import Clock, SystemClock
from dealerpulse.config import redact_url
from dealerpulse.model import Labels, MetricBatch, WriteResult
from dealerpulse.tokens import validate_dealer_id

logger = logging.getLogger(__name__)

TOKEN_ROLES = ("dealer", "viewer", "admin")
# How many hex digits of a token's hash name it in listings and `dealer revoke`.
FINGERPRINT_LEN = 12


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A stored token, as operators see it: never the token, a fingerprint of its hash."""

    id: int
    dealer_id: str | None
    role: str
    fingerprint: str
    created_at: datetime
    revoked_at: datetime | None

    def valid_at(self, moment: datetime) -> bool:
        return self.revoked_at is None or self.revoked_at > moment


class SQLAlchemyMetricStore(MetricStore):
    """See :class:`collector.abc.MetricStore`; thread-safe, blocking.

    ``clock`` decides which tokens are valid now (a revocation may lie in the
    future). ``engine`` is public so that other parts (alerting, reporter)
    can run their own queries on the same pool.

    The pool (size, idle and connect timeouts, slow-query log; see
    :mod:`collector.store.pool`): ``pool`` when given, the settings a command
    resolved (flag > environment > config file > default); otherwise the
    environment's DB_POOL_* and SLOW_QUERY_MS variables, where ``pool_size``
    (the caller's own choice) stands in for an unset DB_POOL_SIZE before the
    default of 20. Giving both is refused: which size wins would be a guess.
    """

    def __init__(
        self,
        url: str,
        *,
        clock: Clock | None = None,
        pool_size: int | None = None,
        busy_timeout_s: float = 10.0,
        sqlite_synchronous: SqliteSync = "FULL",
        sqlite_cache_mib: int = 64,
        pool: PoolSettings | None = None,
    ) -> None:
        if pool is not None and pool_size is not None:
            raise ValueError(
                "give pool_size or pool (PoolSettings), not both: "
                f"pool_size={pool_size}, pool.size={pool.size}"
            )
        self._url = url
        self._clock = clock or SystemClock()
        self._pool = pool or PoolSettings.from_env(size=pool_size)
        self._engine = create_store_engine(
            url,
            busy_timeout_s=busy_timeout_s,
            sqlite_synchronous=sqlite_synchronous,
            sqlite_cache_mib=sqlite_cache_mib,
            pool=self._pool,
        )
        self._writer = BatchWriter(self._engine)

    def __repr__(self) -> str:
        return f"SQLAlchemyMetricStore({redact_url(self._url)!r})"

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def pool_settings(self) -> PoolSettings:
        """The pool settings in force (see the class docstring for where they come from)."""
        return self._pool

    @property
    def dialect(self) -> str:
        """ "sqlite" or "postgresql"."""
        return self._engine.dialect.name

    # ---- schema

    def migrate(self) -> None:
        migrations.upgrade(self._engine)

    def schema_version(self) -> str | None:
        return migrations.current_revision(self._engine)

    # ---- ingest

    def write_batches(
        self, batches: Sequence[MetricBatch], received_at: datetime
    ) -> list[WriteResult]:
        return self._writer.write(batches, received_at)

    # ---- dealers and tokens

    def create_dealer(self, dealer_id: str, name: str, token_hash: str, now: datetime) -> Dealer:
        validate_dealer_id(dealer_id)
        if not name.strip():
            raise ValueError("dealer name must not be empty")
        with self._writing(f"creating dealer {dealer_id!r}") as connection:
            inserted = connection.execute(
                insert_ignoring_conflicts(connection, dealers).returning(dealers.c.dealer_id),
                {"dealer_id": dealer_id, "name": name.strip(), "created_at": now},
            ).one_or_none()
            if inserted is None:
                raise DealerExists(f"dealer {dealer_id!r} exists already")
            self._insert_token(connection, dealer_id, token_hash, now, "dealer")
        return Dealer(dealer_id=dealer_id, name=name.strip(), created_at=now)

    def get_dealer(self, dealer_id: str) -> Dealer | None:
        with self._reading("reading a dealer") as connection:
            row = connection.execute(
                select(dealers).where(dealers.c.dealer_id == dealer_id)
            ).one_or_none()
        return None if row is None else Dealer(row.dealer_id, row.name, row.created_at)

    def list_dealers(self) -> list[Dealer]:
        with self._reading("listing dealers") as connection:
            rows = connection.execute(select(dealers).order_by(dealers.c.dealer_id)).all()
        return [Dealer(row.dealer_id, row.name, row.created_at) for row in rows]

    def token_hashes(self, dealer_id: str) -> list[str]:
        """Hashes of the dealer's valid tokens that may write (role dealer, not viewer)."""
        return [h for h, role in self.token_roles(dealer_id).items() if role == "dealer"]

    def token_roles(self, dealer_id: str) -> dict[str, str]:
        """The dealer's tokens valid now: hash -> role ("dealer" or "viewer")."""
        now = self._clock.now()
        query = (
            select(dealer_tokens.c.token_hash, dealer_tokens.c.role)
            .where(dealer_tokens.c.dealer_id == dealer_id, _valid_at(now))
            .order_by(dealer_tokens.c.id)
        )
        with self._reading("reading token hashes") as connection:
            return {row.token_hash: row.role for row in connection.execute(query)}

    def list_tokens(self, dealer_id: str | None) -> list[TokenRecord]:
        """Every token of the dealer (None: the admin tokens), revoked ones included."""
        owner = (
            dealer_tokens.c.dealer_id.is_(None)
            if dealer_id is None
            else dealer_tokens.c.dealer_id == dealer_id
        )
        query = select(dealer_tokens).where(owner).order_by(dealer_tokens.c.id)
        with self._reading("listing tokens") as connection:
            return [
                TokenRecord(
                    row.id,
                    row.dealer_id,
                    row.role,
                    row.token_hash[:FINGERPRINT_LEN],
                    row.created_at,
                    row.revoked_at,
                )
                for row in connection.execute(query)
            ]

    def rotate_token(
        self, dealer_id: str, token_hash: str, now: datetime, revoke_old_at: datetime
    ) -> int:
        """Add a dealer token and make the dealer's other dealer tokens invalid from
        ``revoke_old_at`` (``now``: at once), in one transaction. Returns how many."""
        if revoke_old_at < now:
            raise ValueError("revoke_old_at must not be before now")
        with self._writing(f"rotating the token of dealer {dealer_id!r}") as connection:
            if not _dealer_exists(connection, dealer_id):
                raise UnknownDealer(f"dealer {dealer_id!r} is not registered")
            old = (
                update(dealer_tokens)
                .where(
                    dealer_tokens.c.dealer_id == dealer_id,
                    dealer_tokens.c.role == "dealer",
                    or_(
                        dealer_tokens.c.revoked_at.is_(None),
                        dealer_tokens.c.revoked_at > revoke_old_at,
                    ),
                )
                .values(revoked_at=revoke_old_at)
            )
            revoked = connection.execute(old).rowcount
            self._insert_token(connection, dealer_id, token_hash, now, "dealer")
        return int(revoked)

    def revoke_tokens(
        self, dealer_id: str | None, at: datetime, fingerprint: str | None = None
    ) -> int:
        """Revoke the dealer's tokens (None: admin tokens) valid at ``at``; only those
        whose hash starts with ``fingerprint`` when given. Returns how many."""
        owner = (
            dealer_tokens.c.dealer_id.is_(None)
            if dealer_id is None
            else dealer_tokens.c.dealer_id == dealer_id
        )
        statement = update(dealer_tokens).where(owner, _valid_at(at)).values(revoked_at=at)
        if fingerprint is not None:
            if len(fingerprint) < 6 or not all(c in "0123456789abcdef" for c in fingerprint):
                raise ValueError(
                    f"token fingerprint {fingerprint!r}: give at least 6 hex digits "
                    "as `dealerpulse dealer tokens` shows them"
                )
            # Hex digits only (checked above), so LIKE needs no escaping.
            statement = statement.where(dealer_tokens.c.token_hash.like(f"{fingerprint}%"))
        with self._writing("revoking tokens") as connection:
            return int(connection.execute(statement).rowcount)

    def add_token(
        self, dealer_id: str | None, token_hash: str, now: datetime, role: str = "dealer"
    ) -> None:
        """Store another token hash (rotation, or role="admin" with dealer_id=None)."""
        with self._writing("adding a token") as connection:
            if dealer_id is not None and not _dealer_exists(connection, dealer_id):
                raise UnknownDealer(f"dealer {dealer_id!r} is not registered")
            self._insert_token(connection, dealer_id, token_hash, now, role)

    def revoke_token(self, token_hash: str, at: datetime) -> bool:
        """Make the token invalid from ``at`` on; False if no such valid token."""
        statement = (
            update(dealer_tokens)
            .where(dealer_tokens.c.token_hash == token_hash, dealer_tokens.c.revoked_at.is_(None))
            .values(revoked_at=at)
        )
        with self._writing("revoking a token") as connection:
            return connection.execute(statement).rowcount > 0

    def admin_token_hashes(self) -> list[str]:
        """Hashes of the admin tokens that are valid now."""
        now = self._clock.now()
        query = select(dealer_tokens.c.token_hash).where(
            dealer_tokens.c.role == "admin", _valid_at(now)
        )
        with self._reading("reading admin token hashes") as connection:
            return list(connection.scalars(query))

    @staticmethod
    def _insert_token(
        connection: Connection, dealer_id: str | None, token_hash: str, now: datetime, role: str
    ) -> None:
        if role not in TOKEN_ROLES:
            raise ValueError(f"token role must be one of {', '.join(TOKEN_ROLES)}, not {role!r}")
        if role != "admin" and dealer_id is None:
            raise ValueError(f"a {role} token needs a dealer_id")
        if role == "admin" and dealer_id is not None:
            raise ValueError("an admin token belongs to no dealer; dealer_id must be None")
        if not token_hash:
            raise ValueError("token_hash must not be empty")
        connection.execute(
            dealer_tokens.insert(),
            {"dealer_id": dealer_id, "token_hash": token_hash, "role": role, "created_at": now},
        )

    # ---- agents

    def register_agent(self, agent: AgentInfo, now: datetime) -> int:
        with self._writing(f"registering agent {agent.agent_id!r}") as connection:
            if not _dealer_exists(connection, agent.dealer_id):
                raise UnknownDealer(f"dealer {agent.dealer_id!r} is not registered")
            connection.execute(
                insert_ignoring_conflicts(connection, agents),
                {
                    "agent_id": agent.agent_id,
                    "dealer_id": agent.dealer_id,
                    "hostname": agent.hostname,
                    "version": agent.version,
                    "boot_id": agent.boot_id,
                    "first_seen": now,
                    "last_seen": now,
                    "last_seq": 0,
                    "generated_samples": 0,
                    "dropped_samples": {},
                    "spool_bytes": 0,
                    "spool_batches": 0,
                },
            )
            row = connection.execute(
                select(agents.c.dealer_id, agents.c.last_seq).where(
                    agents.c.agent_id == agent.agent_id
                )
            ).one()
            if row.dealer_id != agent.dealer_id:
                raise AgentConflict(
                    f"agent {agent.agent_id!r} belongs to dealer {row.dealer_id!r}, "
                    f"not {agent.dealer_id!r}"
                )
            connection.execute(hello_update(agent, now))
            return int(row.last_seq)

    def agent_series(self, agent_id: str) -> list[tuple[str, Labels]]:
        """(name, labels) of every series the agent has (for the per-agent series limit)."""
        query = select(series.c.name, series.c.labels).where(series.c.agent_id == agent_id)
        with self._reading(f"listing the series of agent {agent_id!r}") as connection:
            return [(row.name, labels_from_json(row.labels)) for row in connection.execute(query)]

    def list_agents(self, dealer_id: str | None = None) -> list[AgentRecord]:
        with self._reading("listing agents") as connection:
            return reads.list_agents(connection, dealer_id)

    def record_clock_offset(
        self, dealer_id: str, agent_id: str, offset_ms: int, *, if_unknown: bool = False
    ) -> None:
        update = clock_offset_update(dealer_id, agent_id, offset_ms, if_unknown=if_unknown)
        with self._writing(f"recording the clock offset of agent {agent_id!r}") as connection:
            connection.execute(update)

    # ---- samples and bookkeeping

    def latest_samples(
        self, dealer_id: str | None = None, names: Sequence[str] | None = None
    ) -> list[LatestSample]:
        with self._reading("reading the latest samples") as connection:
            return reads.latest_samples(connection, dealer_id, names)

    def query_samples(
        self,
        dealer_id: str,
        name: str,
        start: datetime,
        end: datetime,
        agent_id: str | None = None,
    ) -> list[StoredSample]:
        with self._reading(f"querying {name!r} of dealer {dealer_id!r}") as connection:
            return reads.query_samples(connection, dealer_id, name, start, end, agent_id)

    def query_endpoint_stats(
        self, dealer_id: str, start: datetime, end: datetime, agent_id: str | None = None
    ) -> list[EndpointRecord]:
        """api_performance rows whose interval ends in [start, end), oldest first."""
        with self._reading(f"querying endpoint stats of dealer {dealer_id!r}") as connection:
            return reads.endpoint_stats(connection, dealer_id, start, end, agent_id)

    def count_samples(self, agent_id: str) -> int:
        with self._reading("counting samples") as connection:
            return reads.count_samples(connection, agent_id)

    def committed_batches(self, agent_id: str) -> dict[int, int]:
        with self._reading("reading committed batches") as connection:
            return reads.committed_batches(connection, agent_id)

    def list_gaps(self, dealer_id: str | None = None) -> list[GapRecord]:
        with self._reading("listing gaps") as connection:
            return reads.list_gaps(connection, dealer_id)

    def close(self) -> None:
        self._writer.close()
        self._engine.dispose()

    # ---- transactions

    @contextmanager
    def _reading(self, action: str) -> Iterator[Connection]:
        with translated_errors(action), self._engine.connect() as connection:
            yield connection

    @contextmanager
    def _writing(self, action: str) -> Iterator[Connection]:
        with translated_errors(action), self._engine.connect() as connection:
            connection.execution_options(**{WRITE_OPTION: True})
            with connection.begin():
                yield connection


def _valid_at(moment: datetime) -> ColumnElement[bool]:
    """Tokens not revoked at ``moment`` (a revocation may be set for later: rotation grace)."""
    return or_(dealer_tokens.c.revoked_at.is_(None), dealer_tokens.c.revoked_at > moment)


def _dealer_exists(connection: Connection, dealer_id: str) -> bool:
    query = select(dealers.c.dealer_id).where(dealers.c.dealer_id == dealer_id)
    return connection.scalar(query) is not None


def open_store(
    url: str,
    *,
    clock: Clock | None = None,
    pool_size: int | None = None,
    busy_timeout_s: float = 10.0,
    sqlite_synchronous: SqliteSync = "FULL",
    sqlite_cache_mib: int = 64,
    pool: PoolSettings | None = None,
) -> SQLAlchemyMetricStore:
    """A store on ``url`` with its schema migrated to the newest version.

    Creates the directory of a SQLite file. The options are those of
    :class:`SQLAlchemyMetricStore`.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    store = SQLAlchemyMetricStore(
        url,
        clock=clock,
        pool_size=pool_size,
        busy_timeout_s=busy_timeout_s,
        sqlite_synchronous=sqlite_synchronous,
        sqlite_cache_mib=sqlite_cache_mib,
        pool=pool,
    )
    try:
        store.migrate()
    except BaseException:
        store.close()
        raise
    logger.info("store ready: %s (%s)", redact_url(url), store.dialect)
    return store
