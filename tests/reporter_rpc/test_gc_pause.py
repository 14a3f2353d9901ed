"""gc_paused: the cyclic collector is off while any thread is inside, on again after."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from reporter.queries.window import gc_paused

WAIT_S = 10.0


@pytest.fixture
def collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def test_overlapping_pauses_of_two_threads_leave_the_collector_on(collector_on: None) -> None:
    inside, leave = threading.Event(), threading.Event()

    def other() -> None:
        with gc_paused():
            inside.set()
            assert leave.wait(WAIT_S)

    thread = threading.Thread(target=other)
    with gc_paused():
        thread.start()
        assert inside.wait(WAIT_S)
    # This thread left first: the other one is still inside.
    assert not gc.isenabled()
    leave.set()
    thread.join(WAIT_S)
    assert gc.isenabled()


def test_many_threads_pausing_at_once_leave_the_collector_on(collector_on: None) -> None:
    start = threading.Barrier(8)

    def pause_often() -> None:
        start.wait(WAIT_S)
        for _ in range(2000):
            with gc_paused():
                pass

    threads = [threading.Thread(target=pause_often) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S)
    assert gc.isenabled()


def test_a_collector_switched_off_before_stays_off(collector_on: None) -> None:
    gc.disable()
    with gc_paused():
        pass
    assert not gc.isenabled()
