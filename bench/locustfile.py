"""Locust load of GET /api/ai/performance-monitoring at a rising arrival rate.

Started by ``python -m bench.loadtest`` (``make loadtest``), which fills the
store, starts the reporter and passes everything through the environment:

- ``DP_LOAD_TOKENS``: JSON file {dealer id: dealer token}; each request picks
  a dealer at random and asks with its token (as that dealer's dashboard would);
- ``DP_LOAD_RECORDS``: where every request is written at the end, as JSON
  ``[start (unix s), response ms, HTTP status (0: no answer), users then]``;
- the shape: ``DP_LOAD_FIRST_USERS`` users, ``DP_LOAD_STEP_USERS`` more every
  ``DP_LOAD_STEP_S`` seconds, ``DP_LOAD_STEPS`` steps, then the test stops.

Each user starts one request a second (``constant_pacing``), so while answers
take under a second the arrival rate in requests a second is the user count:
an open-model load that rises step by step.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

from locust import FastHttpUser, LoadTestShape, constant_pacing, events, task
from locust.env import Environment

PATH = "/api/ai/performance-monitoring"
# Users start at once at each step: the step is the arrival rate, not the ramp.
SPAWN_RATE = 100.0


def _number(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


FIRST_USERS = int(_number("DP_LOAD_FIRST_USERS", 5))
STEP_USERS = int(_number("DP_LOAD_STEP_USERS", 5))
STEP_S = _number("DP_LOAD_STEP_S", 12.0)
STEPS = int(_number("DP_LOAD_STEPS", 12))

_tokens_file = os.environ.get("DP_LOAD_TOKENS")
TOKENS: dict[str, str] = json.loads(Path(_tokens_file).read_text()) if _tokens_file else {}
DEALERS = sorted(TOKENS)
_records: list[tuple[float, float, int, int]] = []
_environment: list[Environment] = []


@events.init.add_listener  # type: ignore[untyped-decorator]  # locust's hooks are untyped
def _remember(environment: Environment, **_: Any) -> None:
    _environment.append(environment)


@events.request.add_listener  # type: ignore[untyped-decorator]
def _record(response_time: float, start_time: float, response: Any = None, **_: Any) -> None:
    runner = _environment[0].runner if _environment else None
    status = int(getattr(response, "status_code", 0) or 0)
    _records.append((start_time, response_time, status, runner.user_count if runner else 0))


@events.quitting.add_listener  # type: ignore[untyped-decorator]
def _write_records(**_: Any) -> None:
    target = os.environ.get("DP_LOAD_RECORDS")
    if target:
        Path(target).write_text(json.dumps(_records))


class DealerDashboard(FastHttpUser):
    wait_time = constant_pacing(1.0)

    @task
    def monitoring(self) -> None:
        dealer = random.choice(DEALERS)
        self.client.get(PATH, headers={"Authorization": f"Bearer {TOKENS[dealer]}"}, name=PATH)


class RisingArrivals(LoadTestShape):
    """FIRST_USERS, then STEP_USERS more every STEP_S seconds, for STEPS steps."""

    def tick(self) -> tuple[int, float] | None:
        run_time_s: float = self.get_run_time()  # type: ignore[no-untyped-call]
        step = int(run_time_s // STEP_S)
        if step >= STEPS:
            return None
        return FIRST_USERS + step * STEP_USERS, SPAWN_RATE
