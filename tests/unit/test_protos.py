"""The committed stubs must match the .proto sources (run `make proto` when this fails)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from google.protobuf import descriptor_pb2

from dealerpulse.v1 import alerts_pb2, ingest_pb2, reporter_pb2

# Imported before protos/ goes on sys.path: its dealerpulse/ folder would shadow ours.
COMMITTED: dict[str, ModuleType] = {
    "ingest": ingest_pb2,
    "alerts": alerts_pb2,
    "reporter": reporter_pb2,
}

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "protos"))


def _fresh_descriptor(tmp_path: Path, module: str) -> descriptor_pb2.FileDescriptorProto:
    spec = importlib.util.spec_from_file_location("generate", REPO / "protos" / "generate.py")
    assert spec and spec.loader
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    generate.generate(tmp_path)
    source = (tmp_path / "dealerpulse" / "v1" / f"{module}_pb2.py").read_text()
    # The generated module embeds its serialized FileDescriptorProto; compare that,
    # not the text, which varies with the protoc version.
    start = source.index("AddSerializedFile(") + len("AddSerializedFile(")
    end = source.index(")\n", start)
    serialized = eval(source[start:end])  # a bytes literal written by protoc
    proto = descriptor_pb2.FileDescriptorProto()
    proto.ParseFromString(serialized)
    return proto


PROTO_MODULES = sorted(p.stem for p in (REPO / "protos" / "dealerpulse" / "v1").glob("*.proto"))


def test_every_proto_has_its_committed_stub_checked() -> None:
    assert set(PROTO_MODULES) == set(COMMITTED), "add the new stub module to COMMITTED"


@pytest.mark.parametrize("module", PROTO_MODULES)
def test_committed_stubs_match_proto(tmp_path: Path, module: str) -> None:
    committed = descriptor_pb2.FileDescriptorProto()
    COMMITTED[module].DESCRIPTOR.CopyToProto(committed)
    fresh = _fresh_descriptor(tmp_path, module)
    assert committed == fresh, f"dealerpulse/v1/{module} stubs are stale: run `make proto`"


def test_grpc_stub_module_exists_for_every_proto() -> None:
    for proto in (REPO / "protos").rglob("*.proto"):
        rel = proto.relative_to(REPO / "protos").with_suffix("")
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"):
            assert (REPO / f"{rel}{suffix}").exists(), f"missing generated {rel}{suffix}"
