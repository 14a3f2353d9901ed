"""agent.settings: the agent command's options resolve into a validated AgentConfig."""

from __future__ import annotations

from pathlib import Path

import pytest
from agent_testkit import TOKEN

from agent.settings import AGENT_OPTIONS, AgentConfig
from dealerpulse.config import ConfigError, FileValues, resolve


def config_from(
    flags: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
    file: dict[str, object] | None = None,
) -> AgentConfig:
    values = resolve(AGENT_OPTIONS, flags or {}, env or {}, FileValues(file or {}, {}, "agent"))
    return AgentConfig.from_values(values)


def test_defaults_and_token_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    config = config_from({"collector": "127.0.0.1:7000"}, {"DEALERPULSE_TOKEN": TOKEN})
    assert config.token == TOKEN and config.dealer_id == "acme-motors"
    assert config.interval_s == 10.0
    assert config.spool_max_bytes == 256 * 1024**2
    assert config.spool_path == tmp_path / "dealerpulse" / "agent-spool.db"
    assert config.hostname  # this host's name
    assert config.tls is None and config.agent_id is None


def test_flags_beat_env_beat_file() -> None:
    config = config_from(
        {"collector": "127.0.0.1:1", "interval": "5"},
        {"DEALERPULSE_TOKEN": TOKEN, "DEALERPULSE_INTERVAL": "7", "DEALERPULSE_AGENT_ID": "a-1"},
        {"interval": 9, "spool_max_bytes": "64MiB", "agent_id": "from-file", "hostname": "h"},
    )
    assert (config.interval_s, config.agent_id, config.hostname) == (5.0, "a-1", "h")
    assert config.spool_max_bytes == 64 * 1024**2


def test_missing_collector_is_named() -> None:
    with pytest.raises(ConfigError, match="collector: required"):
        config_from(env={"DEALERPULSE_TOKEN": TOKEN})


def test_malformed_token_is_named_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as caught:
        config_from({"collector": "h:1"}, {"DEALERPULSE_TOKEN": "hunter2-secret"})
    assert "token" in str(caught.value) and "DEALERPULSE_TOKEN" in str(caught.value)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("key", "raw", "message"),
    [
        ("interval", "0", "interval"),
        ("interval", "abc", "interval"),
        ("agent_id", "has space", "agent_id"),
        ("collector", "no-port", "collector"),
        ("spool_max_bytes", "lots", "spool_max_bytes"),
    ],
)
def test_bad_values_name_their_key(key: str, raw: str, message: str) -> None:
    flags = {"collector": "h:1", key: raw}
    with pytest.raises(ConfigError, match=message):
        config_from(flags, {"DEALERPULSE_TOKEN": TOKEN})


def test_mutual_tls_needs_both_files() -> None:
    with pytest.raises(ConfigError, match="tls_cert and tls_key"):
        config_from({"collector": "h:1", "tls_cert": "/c.pem"}, {"DEALERPULSE_TOKEN": TOKEN})
    config = config_from({"collector": "h:1", "tls_ca": "/ca.pem"}, {"DEALERPULSE_TOKEN": TOKEN})
    assert config.tls is not None and config.tls.ca == Path("/ca.pem")


def test_repr_never_shows_the_token() -> None:
    config = AgentConfig(collector="h:1", token=TOKEN)
    assert "s3cr3t" not in repr(config)


def test_the_token_option_is_secret_and_read_from_dealerpulse_token() -> None:
    [token] = [o for o in AGENT_OPTIONS if o.key == "token"]
    assert token.secret and token.env_names == ("DEALERPULSE_TOKEN",)
