"""Where the collector's time goes: a py-spy profile summarised into shares.

    python -m bench.profile_summary PROFILE.txt [--json OUT]

``PROFILE.txt`` is py-spy's raw (collapsed stack) output, ``py-spy record
--format raw``: one line per distinct stack, frames root first separated by
``;``, then the number of samples. Each stack goes to the category of its
innermost frame that belongs to one (walking from the leaf towards the root):
a dataclass constructor called by the codec counts as decoding, a SQLAlchemy
call made by the store writer as SQL. Stacks with no such frame (gRPC's
asyncio machinery, the event loop, queues, auth) are "other"; the files that
take most of "other" are listed so that it is not a black box.

py-spy without ``--native`` sees Python frames only: protobuf's C parser
(upb, called by gRPC's deserializer) and the sqlite3/libpq C code are
charged to the Python frame that called them.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

DECODE = "protobuf decode"
VALIDATION = "validation"
SQL = "SQL/driver"
OTHER = "other"
CATEGORIES = (DECODE, VALIDATION, SQL, OTHER)

# (category, pattern on a frame's file name), tried in order for each frame.
_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    (DECODE, re.compile(r"(collector/ingest/codec\.py|google/protobuf/|_pb2\.py|_pb2_grpc\.py)")),
    (VALIDATION, re.compile(r"collector/ingest/(validate|limits)\.py")),
    (
        SQL,
        re.compile(
            r"(sqlalchemy/|sqlite3/|psycopg/|psycopg_pool/|psycopg_binary/|"
            r"collector/store/)"
        ),
    ),
)
# "name (path/file.py:123)" or "name (path/file.py)"
_FRAME = re.compile(r"^(?P<name>.*) \((?P<file>[^():]+)(?::\d+)?\)$")


@dataclass(frozen=True)
class Summary:
    samples: int
    shares_percent: dict[str, float]
    samples_by_category: dict[str, int]
    # The files where the "other" samples' innermost Python frame was, most first.
    other_top_files: list[tuple[str, int]] = field(default_factory=list)


def frame_file(frame: str) -> str | None:
    match = _FRAME.match(frame.strip())
    return match.group("file") if match else None


def categorise(frames: Sequence[str]) -> str:
    """The category of one stack (frames root first)."""
    for frame in reversed(frames):
        path = frame_file(frame)
        if path is None:
            continue  # "process ..." / "thread ..." pseudo-frames
        for category, pattern in _RULES:
            if pattern.search(path):
                return category
    return OTHER


def parse_line(line: str) -> tuple[list[str], int]:
    """One raw py-spy line -> (frames root first, samples)."""
    stack, _, count = line.strip().rpartition(" ")
    if not count.isdigit():
        raise ValueError(f"not a py-spy raw line (want 'frame;frame COUNT'): {line[:120]!r}")
    # An empty stack: a sample of a thread py-spy saw with no Python frame.
    return (stack.split(";") if stack else []), int(count)


def summarise(lines: Iterable[str]) -> Summary:
    by_category: Counter[str] = Counter(dict.fromkeys(CATEGORIES, 0))
    other_files: Counter[str] = Counter()
    for line in lines:
        if not line.strip():
            continue
        frames, count = parse_line(line)
        category = categorise(frames)
        by_category[category] += count
        if category == OTHER:
            leaf = next((f for f in map(frame_file, reversed(frames)) if f), "?")
            other_files[leaf] += count
    total = sum(by_category.values())
    shares = {c: round(100 * by_category[c] / total, 1) if total else 0.0 for c in CATEGORIES}
    return Summary(
        samples=total,
        shares_percent=shares,
        samples_by_category={c: by_category[c] for c in CATEGORIES},
        other_top_files=other_files.most_common(8),
    )


def summarise_file(path: Path) -> Summary:
    with path.open(encoding="utf-8", errors="replace") as lines:
        return summarise(lines)


def table(summary: Summary) -> str:
    rows = [f"{'where':<16} {'share':>7} {'samples':>8}"]
    for category in CATEGORIES:
        rows.append(
            f"{category:<16} {summary.shares_percent[category]:>6.1f}% "
            f"{summary.samples_by_category[category]:>8}"
        )
    rows.append("other, by innermost Python file: ")
    rows += [f"  {path:<50} {count:>6}" for path, count in summary.other_top_files]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.profile_summary",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("profile", type=Path, help="py-spy record --format raw output")
    parser.add_argument("--json", type=Path, default=None, help="write the summary here")
    args = parser.parse_args(argv)
    try:
        summary = summarise_file(args.profile)
    except (OSError, ValueError) as exc:
        print(f"profile_summary: {args.profile}: {exc}", file=sys.stderr)
        return 1
    print(table(summary))
    if args.json is not None:
        args.json.write_text(json.dumps(asdict(summary), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
