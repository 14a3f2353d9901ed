"""Fuzzing the config files: TOML text through load_file, resolve and the settings objects.

What ``dealerpulse agent`` and ``dealerpulse collector`` do with a file is run
here on arbitrary files: any text, and valid TOML documents whose keys are the
real option keys (and some unknown ones) with values of every TOML type. The
property: the file is accepted, or refused with a ConfigError whose message
names the offending key or the file -- never another exception.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.settings import AGENT_OPTIONS, AgentConfig
from collector.settings import COLLECTOR_OPTIONS, CollectorSettings
from dealerpulse.config import ConfigError, load_file, resolve
from dealerpulse.tokens import new_token

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
AGENT_KEYS = sorted({o.key for o in AGENT_OPTIONS})
COLLECTOR_KEYS = sorted({o.key for o in COLLECTOR_OPTIONS})
KEYS = st.one_of(
    st.sampled_from(AGENT_KEYS),
    st.sampled_from(COLLECTOR_KEYS),
    st.sampled_from(["intervall", "x"]),
)
# The two options the agent cannot start without, from the environment: file values
# of the same keys (fuzzed) still win over them.
AGENT_ENV = {
    next(o for o in AGENT_OPTIONS if o.key == key).env_names[0]: value
    for key, value in (("collector", "127.0.0.1:50051"), ("token", new_token("fuzz-motors")))
}
tried: dict[str, int] = {}


def count(name: str) -> None:
    tried[name] = tried.get(name, 0) + 1


@pytest.fixture(scope="module", autouse=True)
def _report() -> Any:
    yield
    print(f"\nconfig fuzz inputs tried: {tried}")


# ---- a small TOML writer (the standard library only reads TOML)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        # JSON's escapes are a subset of TOML basic strings'.
        return json.dumps(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def toml_document(top: dict[str, Any], sections: dict[str, dict[str, Any]]) -> str:
    lines = [f"{json.dumps(k)} = {toml_value(v)}" for k, v in top.items()]
    for name, table in sections.items():
        lines.append(f"[{name}]")
        lines.extend(f"{json.dumps(k)} = {toml_value(v)}" for k, v in table.items())
    return "\n".join(lines) + "\n"


SCALARS = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["10", "256MiB", "1.5 GB", "-3", "off", "127.0.0.1:50051", "sqlite:///x.db"]),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.datetimes(timezones=st.just(UTC)),
    st.dates(),
)
VALUES = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=3),
    st.dictionaries(st.text(max_size=8), SCALARS, max_size=3),
)
TABLES = st.dictionaries(KEYS, VALUES, max_size=4)


def assert_names_the_problem(error: ConfigError) -> None:
    message = str(error)
    named = [k for k in (*AGENT_KEYS, *COLLECTOR_KEYS) if k in message]
    assert named or "config file" in message, message


def load_as(command: str, config_path: Path) -> None:
    """What the CLI does with the file for one command (no flags, no environment)."""
    if command == "agent":
        values = resolve(AGENT_OPTIONS, {}, AGENT_ENV, load_file(config_path, "agent"))
        AgentConfig.from_values(values)
    else:
        values = resolve(COLLECTOR_OPTIONS, {}, {}, load_file(config_path, "collector"))
        CollectorSettings.from_values(values)


def check_file(tmp_path: Path, text: str) -> None:
    config_path = tmp_path / "dealerpulse.toml"
    config_path.write_text(text, encoding="utf-8")
    for command in ("agent", "collector"):
        try:
            load_as(command, config_path)
        except ConfigError as refused:
            count(f"{command} refused")
            assert_names_the_problem(refused)
        else:
            count(f"{command} accepted")


@FUZZ
@given(top=TABLES, agent=TABLES, collector=TABLES, other=st.dictionaries(KEYS, SCALARS, max_size=2))
def test_toml_documents_are_accepted_or_refused_by_key(
    tmp_path: Path,
    top: dict[str, Any],
    agent: dict[str, Any],
    collector: dict[str, Any],
    other: dict[str, Any],
) -> None:
    count("documents")
    sections = {"agent": agent, "collector": collector}
    if other:
        sections["reporter"] = other
    check_file(tmp_path, toml_document(top, sections))


@FUZZ
@given(
    text=st.one_of(
        st.text(max_size=300),
        st.text(alphabet="[]=\"\n.agent collector 0123456789aeflnrstu:{},#\\'", max_size=200),
    )
)
def test_any_text_is_accepted_or_refused_by_key(tmp_path: Path, text: str) -> None:
    count("texts")
    check_file(tmp_path, text)


@FUZZ
@given(section=st.one_of(SCALARS, st.lists(SCALARS, max_size=2)))
def test_a_section_that_is_not_a_table_is_refused(tmp_path: Path, section: Any) -> None:
    count("non-table sections")
    check_file(tmp_path, f"agent = {toml_value(section)}\ncollector = {toml_value(section)}\n")
