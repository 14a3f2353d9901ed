"""The `dealerpulse` command as an operator uses it (in-process, real SQLite store)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dealerpulse import tokens
from dealerpulse.cli import main

SUBCOMMANDS = [
    ["up"],
    ["collector"],
    ["agent"],
    ["dealer", "add"],
    ["dealer", "list"],
    ["status"],
    ["alerts", "rules"],
    ["alerts", "list"],
    ["admin-token"],
]


@pytest.mark.parametrize("words", SUBCOMMANDS, ids=" ".join)
def test_every_subcommand_has_help(words: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*words, "--help"])
    assert exited.value.code == 0
    assert "usage: dealerpulse" in capsys.readouterr().out


def test_dealer_add_list_and_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{tmp_path / 'dp.db'}"
    assert main(["dealer", "add", "Sunrise Motors", "--db", db]) == 0
    printed = capsys.readouterr().out
    token = re.search(r"token:\s+(\S+)", printed)
    assert token is not None
    assert tokens.parse_token(token.group(1)).dealer_id == "sunrise-motors"

    assert main(["dealer", "add", "Sunrise Motors", "--db", db]) == 1
    assert "exists already" in capsys.readouterr().err

    assert main(["dealer", "list", "--db", db]) == 0
    listing = capsys.readouterr().out
    assert "sunrise-motors" in listing and "Sunrise Motors" in listing and "never" in listing

    assert main(["status", "--db", db]) == 0
    assert "no agents have reported yet" in capsys.readouterr().out


def test_token_is_stored_only_as_hash(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db_path = tmp_path / "dp.db"
    assert main(["dealer", "add", "Lakeside", "--db", f"sqlite:///{db_path}"]) == 0
    token = re.search(r"token:\s+(\S+)", capsys.readouterr().out)
    assert token is not None
    secret = tokens.parse_token(token.group(1)).secret
    for path in tmp_path.iterdir():
        assert secret.encode() not in path.read_bytes(), path


def test_database_url_from_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    assert main(["dealer", "add", "Env Motors"]) == 0
    assert (tmp_path / "env.db").exists()


def test_config_file_supplies_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "dp.toml"
    config.write_text(f'db = "sqlite:///{tmp_path / "file.db"}"\n')
    assert main(["--config", str(config), "dealer", "add", "File Motors"]) == 0
    assert (tmp_path / "file.db").exists()


def test_bad_values_are_refused_naming_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DEALERPULSE_INTERVAL", "soon")
    with pytest.raises(SystemExit) as exited:
        main(["agent", "--collector", "127.0.0.1:1", "--token", "dp1.d.x"])
    assert exited.value.code == 2
    assert "interval" in capsys.readouterr().err

    config = tmp_path / "dp.toml"
    config.write_text("[collector]\nlisten = 'nowhere'\n")
    with pytest.raises(SystemExit) as exited:
        main(["--config", str(config), "collector"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "listen" in err and "config file" in err

    config.write_text("[agent]\ncolector = '127.0.0.1:1'\n")
    with pytest.raises(SystemExit):
        main(["--config", str(config), "agent"])
    assert "unknown key 'colector'" in capsys.readouterr().err


def test_agent_requires_collector_and_token(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["agent"])
    assert exited.value.code == 2
    assert "collector" in capsys.readouterr().err


def test_shipped_systemd_unit_runs_a_valid_agent_command() -> None:
    import configparser
    import shlex

    from dealerpulse.cli import build_parser

    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(Path(__file__).resolve().parents[2] / "deploy" / "dealerpulse-agent.service")
    service = unit["Service"]
    assert service["Restart"] == "on-failure"
    assert service["User"] != "root"
    assert "/var/lib/dealerpulse" in service["ExecStart"]
    argv = shlex.split(service["ExecStart"])
    assert argv[0].endswith("/dealerpulse")
    args = build_parser().parse_args(argv[1:])
    assert args.command == "agent"


def test_admin_token_is_printed_once_and_stored_hashed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from collector.store import open_store

    db = f"sqlite:///{tmp_path / 'dp.db'}"
    assert main(["admin-token", "--db", db]) == 0
    found = re.search(r"admin token:\s+(\S+)", capsys.readouterr().out)
    assert found is not None
    store = open_store(db)
    try:
        assert store.admin_token_hashes() == [tokens.hash_token(found.group(1))]
    finally:
        store.close()
    from dealerpulse import logs

    assert found.group(1) not in logs.scrub(f"oops {found.group(1)}")
