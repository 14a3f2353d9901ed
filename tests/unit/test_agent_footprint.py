"""The agent installs and runs with only grpcio, protobuf and psutil.

A dealer server gets the base ``dealerpulse`` distribution: the server
packages (SQLAlchemy, Alembic, psycopg, APScheduler, Slack, Jinja2, the gRPC
health and reflection services) are absent there. The cheap tests run the CLI
in a child interpreter that refuses those imports; the slow one installs the
project into a fresh virtualenv with only the base dependencies.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from bench.agent_install import build_wheel

REPO = Path(__file__).resolve().parents[2]
TOKEN = "dp1.footprint-motors.s3cr3t"
# Third-party packages of the [server] extra: absent on a dealer server.
SERVER_PACKAGES = (
    "sqlalchemy",
    "alembic",
    "psycopg",
    "apscheduler",
    "slack_sdk",
    "jinja2",
    "grpc_health",
    "grpc_reflection",
)
# Running the agent must not load the server side at all, not even our own
# collector and reporter packages (they ship in the same distribution).
AGENT_BLOCKED = (*SERVER_PACKAGES, "collector", "reporter")
# grpc's own __init__ tries grpc_health and grpc_reflection inside
# try/except ImportError (backward-compatibility shims): refused, but not ours.
OPTIONAL_FOR = ("grpc",)

# Runs first in the child: a meta-path finder that makes the blocked packages
# look uninstalled and reports every attempt with the module that made it, so
# that even an import of ours guarded by try/except ImportError shows up.
BLOCKER = """
import sys

BLOCKED = {blocked!r}

def _importer():
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith("<frozen"):
        frame = frame.f_back
    return frame.f_globals.get("__name__", "?") if frame is not None else "?"

class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            importer = _importer()
            if importer not in {optional_for!r}:
                sys.stderr.write("BLOCKED IMPORT " + name + " by " + importer + "\\n")
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
        return None

sys.meta_path.insert(0, Blocker())
"""


def run_blocked(
    code: str, tmp_path: Path, blocked: tuple[str, ...] = AGENT_BLOCKED
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
    }
    for name in ("DEALERPULSE_CONFIG", "DEALERPULSE_TOKEN", "DATABASE_URL"):
        env.pop(name, None)
    prelude = BLOCKER.format(blocked=blocked, optional_for=OPTIONAL_FOR)
    return subprocess.run(
        [sys.executable, "-c", prelude + code],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )


def closed_port() -> int:
    """A loopback port nothing listens on (just bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def assert_nothing_blocked(done: subprocess.CompletedProcess[str]) -> None:
    assert "BLOCKED IMPORT" not in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr


def test_blocker_really_refuses_server_packages(tmp_path: Path) -> None:
    done = run_blocked("import sqlalchemy", tmp_path)
    assert done.returncode == 1
    assert "BLOCKED IMPORT sqlalchemy by __main__" in done.stderr
    assert "ModuleNotFoundError" in done.stderr


def test_agent_help_loads_no_server_code(tmp_path: Path) -> None:
    done = run_blocked(
        "from dealerpulse.cli import build_parser, main\n"
        "build_parser(['agent'])\n"
        "sys.exit(main(['agent', '--help']))\n",
        tmp_path,
    )
    assert_nothing_blocked(done)
    assert done.returncode == 0, done.stderr
    assert "usage: dealerpulse agent" in done.stdout
    assert "--collector" in done.stdout and "--check" in done.stdout


def test_the_agent_command_loads_neither_ssl_nor_bz2_nor_lzma(tmp_path: Path) -> None:
    """The CLI's own parsing imports shutil; the agent's shutil must still come without them."""
    done = run_blocked(
        "from dealerpulse.cli import main\n"
        "try:\n"
        "    main(['--log-level', 'WARNING', 'agent', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('loaded:', sorted(m for m in ('ssl', 'bz2', 'lzma') if m in sys.modules))\n",
        tmp_path,
    )
    assert_nothing_blocked(done)
    assert "loaded: []" in done.stdout, done.stdout + done.stderr


def test_the_agent_command_loads_no_other_command(tmp_path: Path) -> None:
    """Other commands' modules (their options, tables, json) only cost the agent RSS."""
    others = [f"dealerpulse.{name}" for name in ("commands", "table")]
    others += [f"dealerpulse.{name}_cli" for name in ("alerts", "reporter", "security")]
    done = run_blocked(
        "from dealerpulse.cli import main\n"
        "try:\n"
        "    main(['agent', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print('loaded:', sorted(m for m in {others!r} if m in sys.modules))\n",
        tmp_path,
    )
    assert_nothing_blocked(done)
    assert "usage: dealerpulse agent" in done.stdout
    assert "loaded: []" in done.stdout, done.stdout + done.stderr


def test_top_level_help_lists_every_command_without_server_code(tmp_path: Path) -> None:
    done = run_blocked("from dealerpulse.cli import main\nsys.exit(main(['--help']))\n", tmp_path)
    assert_nothing_blocked(done)
    assert done.returncode == 0, done.stderr
    for command in ("agent", "collector", "up", "dealer", "status"):
        assert command in done.stdout


def test_full_parser_needs_no_server_dependency(tmp_path: Path) -> None:
    """Every command's --help works on a dealer server (collector options are plain data)."""
    done = run_blocked(
        "from dealerpulse.cli import build_parser\n"
        "parser = build_parser()\n"
        "for argv in (['collector', '--help'], ['status', '--help']):\n"
        "    try:\n"
        "        parser.parse_args(argv)\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code == 0, argv\n",
        tmp_path,
        blocked=SERVER_PACKAGES,
    )
    assert_nothing_blocked(done)
    assert done.returncode == 0, done.stderr
    assert "usage: dealerpulse collector" in done.stdout
    assert "usage: dealerpulse status" in done.stdout


def test_agent_check_reports_unreachable_collector_without_server_packages(
    tmp_path: Path,
) -> None:
    address = f"127.0.0.1:{closed_port()}"
    done = run_blocked(
        "from dealerpulse.cli import main\n"
        f"sys.exit(main(['agent', '--check', '--collector', {address!r},"
        f" '--token', {TOKEN!r}, '--spool', 'spool/agent.db']))\n",
        tmp_path,
    )
    assert_nothing_blocked(done)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"problem: collector {address}: cannot connect" in done.stdout
    assert "s3cr3t" not in done.stdout + done.stderr


# Imported only through protobuf's pure-Python message module (see agent.footprint).
PROTOBUF_PYTHON_RUNTIME = ("google.protobuf.text_format", "google.protobuf.internal.decoder")


def test_the_agent_command_leaves_protobufs_python_runtime_unloaded(tmp_path: Path) -> None:
    """upb encodes the agent's messages; protobuf's pure-Python modules would cost 1.4 MiB."""
    address = f"127.0.0.1:{closed_port()}"
    done = run_blocked(
        "from dealerpulse.cli import main\n"
        f"code = main(['agent', '--check', '--collector', {address!r}, '--token', {TOKEN!r},"
        " '--spool', 'spool/agent.db'])\n"
        "print('codec loaded:', 'agent.codec' in sys.modules)\n"
        f"print('loaded:', sorted(m for m in {PROTOBUF_PYTHON_RUNTIME!r} if m in sys.modules))\n",
        tmp_path,
    )
    assert_nothing_blocked(done)
    assert "codec loaded: True" in done.stdout, done.stdout + done.stderr
    assert "loaded: []" in done.stdout, done.stdout + done.stderr


def test_protobufs_deferred_python_runtime_loads_on_first_use(tmp_path: Path) -> None:
    """Whatever does need the pure-Python module still gets all of it, e.g. text_format."""
    done = run_blocked(
        "from agent.footprint import defer_protobuf_python_message\n"
        "assert defer_protobuf_python_message()\n"
        "assert not defer_protobuf_python_message(), 'a second call must change nothing'\n"
        "from dealerpulse.v1 import ingest_pb2\n"
        "batch = ingest_pb2.Batch(agent_id='lot-7', seq=3)\n"
        "assert ingest_pb2.Batch.FromString(batch.SerializeToString()) == batch\n"
        f"assert not any(m in sys.modules for m in {PROTOBUF_PYTHON_RUNTIME!r})\n"
        "from google.protobuf.internal import python_message\n"
        "assert callable(python_message._AttachFieldHelpers)\n"
        "from google.protobuf import text_format\n"
        "print(text_format.MessageToString(batch, as_one_line=True))\n",
        tmp_path,
    )
    assert_nothing_blocked(done)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == 'agent_id: "lot-7" seq: 3'


def test_agent_modules_import_without_server_packages(tmp_path: Path) -> None:
    done = run_blocked(
        "import agent.runner, agent.instrument\n"
        f"leaked = sorted(m for m in sys.modules if m.split('.')[0] in {AGENT_BLOCKED!r})\n"
        "print('leaked:', leaked)\n",
        tmp_path,
    )
    assert_nothing_blocked(done)
    assert done.returncode == 0, done.stderr
    assert "leaked: []" in done.stdout


def test_agent_modules_leave_random_until_a_reconnect(tmp_path: Path) -> None:
    """random (with bisect and _sha512, 0.24 MiB resident) is only for backoff jitter."""
    done = run_blocked(
        "import agent.runner\nprint('random loaded:', 'random' in sys.modules)\n", tmp_path
    )
    assert_nothing_blocked(done)
    assert "random loaded: False" in done.stdout, done.stdout + done.stderr


# ---- a real minimal install

BASE_DEPENDENCIES = ("grpcio", "protobuf", "psutil")


def _pip(*args: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    """The main venv's pip; ``--python`` in ``args`` points it at another interpreter.

    Reusing it spares the fresh venv an ensurepip bootstrap, and pip's cache
    is shared with every other install on this machine.
    """
    return subprocess.run(
        [sys.executable, "-m", "pip", "--quiet", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.mark.slow
def test_fresh_venv_with_base_dependencies_runs_the_agent(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False, system_site_packages=False, clear=True).create(env_dir)
    python = env_dir / "bin" / "python"
    # One pip run installs the wheel with its declared dependencies: had the
    # base install needed more than the three named here, pip would pull it in
    # and the import check below would see it. The wheel itself built above,
    # so a failure here means the dependencies cannot be had on this machine.
    installed = _pip(
        "--python", str(python), "install", str(wheel), *BASE_DEPENDENCIES, timeout_s=180
    )
    if installed.returncode != 0:
        _skip_or_fail(f"pip cannot install {BASE_DEPENDENCIES} here: {installed.stderr[-500:]}")

    importable = subprocess.run(
        [str(python), "-c", "import sqlalchemy"], capture_output=True, text=True, timeout=30
    )
    assert importable.returncode != 0, "the fresh venv must not see the server packages"

    dealerpulse = env_dir / "bin" / "dealerpulse"
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    for name in ("PYTHONPATH", "DEALERPULSE_CONFIG", "DEALERPULSE_TOKEN"):
        env.pop(name, None)
    helped = subprocess.run(
        [str(dealerpulse), "agent", "--help"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert helped.returncode == 0, helped.stderr
    assert "usage: dealerpulse agent" in helped.stdout

    address = f"127.0.0.1:{closed_port()}"
    checked = subprocess.run(
        [str(dealerpulse), "agent", "--check", "--collector", address, "--token", TOKEN],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert f"problem: collector {address}: cannot connect" in checked.stdout
    assert "Traceback" not in checked.stderr, checked.stderr
