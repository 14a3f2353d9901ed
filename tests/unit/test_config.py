from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dealerpulse import config
from dealerpulse.config import ConfigError, FileValues, Option, resolve

OPTIONS = [
    Option("interval", config.positive_float, 10.0, "seconds"),
    Option("db", config.database_url, None, "url", env=("DATABASE_URL",)),
    Option("spool_max_bytes", config.byte_size, 256 * 1024**2, "bytes"),
    Option("token", config.non_empty, None, "token", secret=True),
]


def test_flag_beats_env_beats_file_beats_default() -> None:
    file_values = FileValues({"interval": 3}, {}, "agent")
    env = {"DEALERPULSE_INTERVAL": "5"}
    assert resolve(OPTIONS, {"interval": "7"}, env, file_values)["interval"] == 7.0
    assert resolve(OPTIONS, {}, env, file_values)["interval"] == 5.0
    assert resolve(OPTIONS, {}, {}, file_values)["interval"] == 3.0
    assert resolve(OPTIONS, {}, {}, None)["interval"] == 10.0


def test_seed_variable_names_are_honoured() -> None:
    settings = resolve(OPTIONS, {}, {"DATABASE_URL": "sqlite:///x.db"}, None)
    assert settings["db"] == "sqlite:///x.db"


def test_bad_value_names_key_and_origin() -> None:
    with pytest.raises(ConfigError, match=r"interval: .*environment variable DEALERPULSE_INTERVAL"):
        resolve(OPTIONS, {}, {"DEALERPULSE_INTERVAL": "soon"}, None)
    with pytest.raises(ConfigError, match=r"db: .*flag --db"):
        resolve(OPTIONS, {"db": "mysql://x"}, {}, None)


def test_secret_values_are_not_echoed() -> None:
    with pytest.raises(ConfigError) as caught:
        resolve(OPTIONS, {"token": "   "}, {}, None)
    assert "token" in str(caught.value)
    assert "'   '" not in str(caught.value)


def test_unknown_key_in_file_section_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "dp.toml"
    path.write_text('db = "sqlite:///a.db"\n[agent]\nintervall = 5\n')
    with pytest.raises(ConfigError, match="unknown key 'intervall'"):
        resolve(OPTIONS, {}, {}, config.load_file(path, "agent"))


def test_top_level_keys_are_shared_and_section_wins(tmp_path: Path) -> None:
    path = tmp_path / "dp.toml"
    path.write_text('db = "sqlite:///a.db"\ninterval = 2\n[agent]\ninterval = 4\n')
    settings = resolve(OPTIONS, {}, {}, config.load_file(path, "agent"))
    assert settings == {
        "interval": 4.0,
        "db": "sqlite:///a.db",
        "spool_max_bytes": 256 * 1024**2,
        "token": None,
    }


def test_invalid_toml_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "dp.toml"
    path.write_text("[agent\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load_file(path, "agent")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("256MiB", 256 * 1024**2), ("1g", 1024**3), ("4096", 4096), ("1.5k", 1536), (10, 10)],
)
def test_byte_size(raw: object, expected: int) -> None:
    assert config.byte_size(raw) == expected


@given(st.text())
def test_parsers_fail_only_with_value_error(raw: str) -> None:
    for parse in (
        config.byte_size,
        config.positive_float,
        config.host_port,
        config.database_url,
        config.boolean,
        config.positive_int,
    ):
        with contextlib.suppress(ValueError):
            parse(raw)


def test_redact_url_hides_password() -> None:
    assert (
        config.redact_url("postgresql+psycopg://u:s3cret@h/db") == "postgresql+psycopg://u:***@h/db"
    )
