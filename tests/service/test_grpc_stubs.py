"""The gRPC service definition (service/grpc/proto/): its committed stubs are what scripts/grpc-stubs makes
from the .proto files with the locked grpcio-tools, and it is Triton's, name for name and number for number,
as far as it goes: every message, field, enum value and RPC it keeps is the same in the real client's
definition (tritonclient.grpc's generated modules). The two definitions are read in separate processes: both
name their messages ``inference.*``, and protobuf's default pool takes one definition per name.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTO = ROOT / "service" / "grpc" / "proto"
SCRIPT = ROOT / "scripts" / "grpc-stubs"
GENERATED = sorted(
    p.name for p in PROTO.iterdir() if p.name.endswith(("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"))
)
#: The RPCs the service implements (the rest of Triton's answer UNIMPLEMENTED).
RPCS = {
    "ServerLive",
    "ServerReady",
    "ModelReady",
    "ServerMetadata",
    "ModelMetadata",
    "ModelInfer",
    "ModelConfig",
    "ModelStatistics",
    "RepositoryIndex",
}

_DUMP = r"""
import importlib, json, sys
out = {"messages": {}, "enums": {}, "services": {}}

def enum(e):
    out["enums"][e.full_name] = {v.name: v.number for v in e.values}

def message(m):
    out["messages"][m.full_name] = {
        f.name: [
            f.number,
            f.type,
            f.is_repeated if hasattr(f, "is_repeated") else f.label == 3,
            f.message_type.full_name if f.message_type else None,
            f.enum_type.full_name if f.enum_type else None,
            f.containing_oneof.name if f.containing_oneof else None,
        ]
        for f in m.fields
    }
    for nested in m.nested_types:
        message(nested)
    for e in m.enum_types:
        enum(e)

for name in sys.argv[1:]:
    d = importlib.import_module(name).DESCRIPTOR
    out.setdefault("packages", []).append(d.package)
    for m in d.message_types_by_name.values():
        message(m)
    for e in d.enum_types_by_name.values():
        enum(e)
    for s in d.services_by_name.values():
        out["services"][s.full_name] = {
            r.name: [r.input_type.full_name, r.output_type.full_name, r.client_streaming, r.server_streaming]
            for r in s.methods
        }
print(json.dumps(out))
"""


def _definition(*modules: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _DUMP, *modules],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_committed_stubs_are_what_the_script_makes(tmp_path: Path) -> None:
    # Never skipped: grpcio-tools is in the dev lock, and a stale stub must fail CI.
    assert importlib.util.find_spec("grpc_tools"), (
        "grpcio-tools is missing: pip install -r requirements/dev.txt"
    )
    assert {"grpc_service_pb2.py", "grpc_service_pb2_grpc.py", "model_config_pb2.py"} <= set(GENERATED)
    done = subprocess.run(
        ["bash", str(SCRIPT), str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    made = tmp_path / "service" / "grpc" / "proto"
    assert sorted(p.name for p in made.iterdir()) == GENERATED
    for name in GENERATED:
        assert (made / name).read_bytes() == (PROTO / name).read_bytes(), (
            f"{name} is stale: run scripts/grpc-stubs"
        )


def test_the_stubs_import_each_other_by_package() -> None:
    # protoc writes a proto's imports as module paths below its -I root: service.grpc.proto.*, never a
    # top-level ``import model_config_pb2`` that only works with the folder on sys.path.
    service = (PROTO / "grpc_service_pb2.py").read_text()
    assert "from service.grpc.proto import model_config_pb2" in service
    assert (
        "from service.grpc.proto import grpc_service_pb2" in (PROTO / "grpc_service_pb2_grpc.py").read_text()
    )


def test_the_definition_is_tritons_as_far_as_it_goes() -> None:
    ours = _definition("service.grpc.proto.grpc_service_pb2", "service.grpc.proto.model_config_pb2")
    theirs = _definition("tritonclient.grpc.service_pb2", "tritonclient.grpc.model_config_pb2")
    assert set(ours["packages"]) == {"inference"}
    assert set(ours["services"]) == {"inference.GRPCInferenceService"}
    service = ours["services"]["inference.GRPCInferenceService"]
    assert set(service) == RPCS
    for rpc, signature in service.items():
        assert theirs["services"]["inference.GRPCInferenceService"][rpc] == signature, rpc
    for name, fields in ours["messages"].items():
        assert name in theirs["messages"], name
        for field, spec in fields.items():
            assert theirs["messages"][name].get(field) == spec, f"{name}.{field}"
    for name, values in ours["enums"].items():
        assert values.items() <= theirs["enums"][name].items(), name
    # What the service fills in a configuration is there.
    assert {"name", "platform", "backend", "version_policy", "max_batch_size", "input", "output"} <= set(
        ours["messages"]["inference.ModelConfig"]
    )
