"""The agent as a dealer server runs it, for the benchmarks that measure the agent.

README, "Installing the agent on a dealer server": ``python3 -m venv``, then
that venv's own pip installs the project, which brings only the base
dependencies (grpcio, protobuf, psutil) and byte-compiles every module as it
installs. :func:`install_agent` does the same in a scratch directory, from a
wheel of the work tree, and returns the ``dealerpulse`` script to run.

Running the development tree instead measures another process: the editable
install's import hook, the server-side packages grpc looks for when they are
installed (grpc_health, grpc_reflection), and, where PYTHONDONTWRITEBYTECODE
is set (this machine sets it), every module of ours compiled from source at
each start. That cost the agent 1.0 MiB of peak RSS (41.3 against 40.3 MiB,
2026-11-27). ``--agent tree`` still measures the tree, for comparison.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# What a wheel of the project is built from; copied so that the build leaves
# no build/ or *.egg-info in the work tree.
SOURCES = ("pyproject.toml", "README.md", "dealerpulse", "agent", "collector", "reporter")
CHOICES = ("installed", "tree")


class InstallError(Exception):
    """The agent could not be installed the way a dealer server installs it."""


@dataclass(frozen=True)
class AgentProgram:
    """How to start ``dealerpulse`` for the agent, and what that is."""

    argv: tuple[str, ...]
    # Set PYTHONPATH to the work tree (the tree) or leave it out (an install,
    # whose site-packages would otherwise come second).
    from_tree: bool
    description: str

    def environment(self, base: Mapping[str, str]) -> dict[str, str]:
        env = dict(base)
        if self.from_tree:
            env["PYTHONPATH"] = str(REPO)
        else:
            env.pop("PYTHONPATH", None)
        return env


TREE = AgentProgram(
    argv=(sys.executable, "-m", "dealerpulse"),
    from_tree=True,
    description="the work tree, run by the development venv",
)


def agent_program(choice: str, scratch: Path) -> AgentProgram:
    """The program for ``--agent CHOICE``; an install goes under ``scratch``."""
    if choice == "tree":
        return TREE
    if choice != "installed":
        raise ValueError(f"--agent must be one of {CHOICES}, got {choice!r}")
    return install_agent(scratch)


def install_agent(scratch: Path) -> AgentProgram:
    """A wheel of the work tree installed into a new venv under ``scratch`` by that venv's pip."""
    wheel = build_wheel(scratch)
    env_dir = scratch / "agent-venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    python = env_dir / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "--quiet", str(wheel)], "install the agent")
    pip_version = _run([str(python), "-m", "pip", "--version"], "ask pip its version").split()[1]
    return AgentProgram(
        argv=(str(env_dir / "bin" / "dealerpulse"),),
        from_tree=False,
        description=f"a wheel of the work tree in a new venv, installed by its pip {pip_version}",
    )


def build_wheel(scratch: Path) -> Path:
    """A wheel of the work tree, built under ``scratch`` by the development venv."""
    source = scratch / "agent-source"
    source.mkdir(parents=True)
    for name in SOURCES:
        origin = REPO / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(origin, source / name)
    wheels = scratch / "agent-wheel"
    # The development venv's setuptools builds it: no isolated build environment to fetch.
    _run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(wheels), str(source)],
        "build the project's wheel",
    )  # fmt: skip
    (wheel,) = wheels.glob("dealerpulse-*.whl")
    return wheel


def _run(argv: Sequence[str], what: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise InstallError(
            f"could not {what} ({' '.join(argv)}): {done.stderr.strip()[-1500:]}\n"
            "Pass --agent tree to measure the work tree instead."
        )
    return done.stdout
