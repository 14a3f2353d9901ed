"""Dealers, tokens and agent registration, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta, timezone

import pytest

from collector.abc import AgentInfo, DealerExists, UnknownDealer
from collector.store import AgentConflict, SQLAlchemyMetricStore, open_store
from collector.store.agent_updates import CLOCK_OFFSET_RESOLUTION_MS, LAST_SEEN_RESOLUTION
from dealerpulse.clock import FakeClock

from .store_factories import DEALER, NOW, T0, add_dealer, batch, host_samples


@pytest.fixture
def clocked_store(
    start_migrated: None, db_url: str
) -> Iterator[tuple[SQLAlchemyMetricStore, FakeClock]]:
    clock = FakeClock(NOW)
    opened = open_store(db_url, clock=clock, pool_size=2)
    try:
        yield opened, clock
    finally:
        opened.close()


def agent_info(agent_id: str = "agent-1", dealer_id: str = DEALER) -> AgentInfo:
    return AgentInfo(agent_id, dealer_id, hostname="dms-01", version="0.1.0", boot_id="boot-a")


def test_dealers_are_created_once_and_listed(store: SQLAlchemyMetricStore) -> None:
    created = store.create_dealer("sunrise-motors", "Sunrise Motors", "hash-1", NOW)

    assert store.get_dealer("sunrise-motors") == created
    assert created.created_at == NOW
    with pytest.raises(DealerExists, match="sunrise-motors"):
        store.create_dealer("sunrise-motors", "Again", "hash-2", NOW)
    store.create_dealer("acme", "Acme", "hash-3", NOW)
    assert [d.dealer_id for d in store.list_dealers()] == ["acme", "sunrise-motors"]
    assert store.get_dealer("nobody") is None
    # The failed second create left no token behind.
    assert store.token_hashes("sunrise-motors") == ["hash-1"]


def test_bad_dealer_ids_are_refused_with_the_id_named(store: SQLAlchemyMetricStore) -> None:
    with pytest.raises(ValueError, match="Not A Slug"):
        store.create_dealer("Not A Slug", "x", "hash", NOW)
    with pytest.raises(ValueError, match="name"):
        store.create_dealer("ok-id", "  ", "hash", NOW)


def test_revoked_tokens_stop_being_valid_when_the_revocation_takes_effect(
    clocked_store: tuple[SQLAlchemyMetricStore, FakeClock],
) -> None:
    store, clock = clocked_store
    store.create_dealer(DEALER, "Acme Motors", "old-hash", NOW)
    store.add_token(DEALER, "new-hash", NOW)
    store.revoke_token("old-hash", NOW + timedelta(hours=1))  # a grace period for rotation

    assert store.token_hashes(DEALER) == ["old-hash", "new-hash"]
    clock.advance(3600)
    assert store.token_hashes(DEALER) == ["new-hash"]
    assert store.revoke_token("old-hash", NOW) is False
    with pytest.raises(UnknownDealer):
        store.add_token("nobody", "hash", NOW)


def test_admin_tokens_belong_to_no_dealer(
    clocked_store: tuple[SQLAlchemyMetricStore, FakeClock],
) -> None:
    store, _ = clocked_store
    store.add_token(None, "admin-hash", NOW, role="admin")

    assert store.admin_token_hashes() == ["admin-hash"]
    with pytest.raises(ValueError, match="role"):
        store.add_token(None, "x", NOW, role="root")


def test_register_agent_returns_the_last_committed_seq(store: SQLAlchemyMetricStore) -> None:
    add_dealer(store)
    assert store.register_agent(agent_info(), NOW) == 0

    store.write_batches([batch(seq=s, samples=host_samples(T0 + s)) for s in (1, 2, 5)], NOW)
    later = NOW + timedelta(minutes=5)
    info = AgentInfo("agent-1", DEALER, hostname="dms-02", version="0.2.0", boot_id="boot-b")

    assert store.register_agent(info, later) == 5
    (agent,) = store.list_agents()
    assert (agent.hostname, agent.version, agent.boot_id) == ("dms-02", "0.2.0", "boot-b")
    assert (agent.first_seen, agent.last_seen) == (NOW, later)


def test_a_reconnect_within_a_minute_leaves_the_agent_row_as_it_was(
    store: SQLAlchemyMetricStore,
) -> None:
    # The writer moves last_seen with every batch; a Hello moves it only when
    # stale, so a reconnect writes nothing (see collector.store.agent_updates).
    add_dealer(store)
    store.register_agent(agent_info(), NOW)
    store.register_agent(agent_info(), NOW + LAST_SEEN_RESOLUTION)
    (agent,) = store.list_agents()
    assert agent.last_seen == NOW
    later = NOW + LAST_SEEN_RESOLUTION + timedelta(seconds=1)
    # Any aware time is stored as the UTC instant it is.
    store.register_agent(agent_info(), later.astimezone(timezone(timedelta(hours=-5))))
    (agent,) = store.list_agents()
    assert agent.last_seen == later


def test_a_clock_offset_is_recorded_when_it_moves_by_its_resolution(
    store: SQLAlchemyMetricStore,
) -> None:
    add_dealer(store)
    store.register_agent(agent_info(), NOW)
    recorded = []
    for offset_ms in (3_600_000, 3_600_000 + CLOCK_OFFSET_RESOLUTION_MS - 1, 3_599_600, 120):
        store.record_clock_offset(DEALER, "agent-1", offset_ms)
        (agent,) = store.list_agents()
        recorded.append(agent.clock_offset_ms)
    assert recorded == [3_600_000, 3_600_000, 3_600_000, 120]
    # A stream's first estimate (one batch, often replayed late) only fills a gap.
    store.record_clock_offset(DEALER, "agent-1", -4_000, if_unknown=True)
    assert store.list_agents()[0].clock_offset_ms == 120
    # Another dealer's token cannot move it.
    store.record_clock_offset("other-dealer", "agent-1", -5_000)
    assert store.list_agents()[0].clock_offset_ms == 120


def test_register_agent_refuses_unknown_dealers_and_foreign_agents(
    store: SQLAlchemyMetricStore,
) -> None:
    add_dealer(store)
    add_dealer(store, "rival-motors")
    store.register_agent(agent_info(), NOW)

    with pytest.raises(UnknownDealer, match="nobody"):
        store.register_agent(agent_info("agent-2", "nobody"), NOW)
    with pytest.raises(AgentConflict, match="agent-1"):
        store.register_agent(agent_info("agent-1", "rival-motors"), NOW)
    # Nor can batches of another dealer be written under that agent id.
    with pytest.raises(AgentConflict):
        store.write_batches([batch("agent-1", 1, dealer_id="rival-motors")], NOW)
    assert store.list_agents("rival-motors") == []


def test_an_agent_the_writer_has_seen_stays_with_its_dealer(store: SQLAlchemyMetricStore) -> None:
    """The writer remembers owners it has committed; a claim from another dealer still fails."""
    add_dealer(store)
    add_dealer(store, "rival-motors")
    store.write_batches([batch("agent-1", 1)], NOW)

    with pytest.raises(AgentConflict, match="agent-1"):
        store.write_batches([batch("agent-1", 2, dealer_id="rival-motors")], NOW)
    with pytest.raises(AgentConflict, match="agent-1"):
        store.write_batches(
            [batch("agent-2", 1), batch("agent-1", 3, dealer_id="rival-motors")], NOW
        )
    assert set(store.committed_batches("agent-1")) == {1}
    # The refused group was rolled back whole, agent-2's row with it: its
    # owner was never remembered, so rival-motors may take that id now.
    assert store.committed_batches("agent-2") == {}
    store.write_batches([batch("agent-2", 1, dealer_id="rival-motors")], NOW)
    assert [a.agent_id for a in store.list_agents("rival-motors")] == ["agent-2"]
