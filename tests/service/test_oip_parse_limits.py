"""What an Open Inference Protocol inference body may cost before it is refused, and that every malformed
part of it is a 4xx naming the part, never a 500 with a traceback in the log.

The work is counted, not timed: a nested-list "bomb" is refused before any JSON parser runs, and a tensor
whose shape the model does not take is refused before its ``data`` becomes Python objects (the allocations
while refusing stay below the body's own size)."""

from __future__ import annotations

import json
import logging
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pydantic_core
import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from cgan_testing.asgi import post_scope
from cgan_testing.fakes import LATENT_DIM

INFER = "/v2/models/digits/infer"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, publish, make_app) -> Iterator[TestClient]:
    """digits v1 (latent_dim 8, no codes) and styled v1 (two style codes), MAX_N 64; server errors are
    answered, not raised, so a 500 shows as one."""
    root = tmp_path_factory.mktemp("limits") / "models"
    root.mkdir()
    publish(root, "digits", 1)
    publish(root, "styled", 1, num_codes=2)
    app = make_app(root, max_n=64)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every JSON parse (a pydantic model's, pydantic_core's or orjson's) while the test runs."""
    seen: list[str] = []
    model_parse = BaseModel.__dict__["model_validate_json"].__func__
    orjson_loads = orjson.loads
    from_json = pydantic_core.from_json

    def counted_model(cls: type[BaseModel], data: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(cls.__name__)
        return model_parse(cls, data, *args, **kwargs)

    def counted_loads(data: Any) -> Any:
        seen.append("orjson")
        return orjson_loads(data)

    def counted_from_json(data: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append("from_json")
        return from_json(data, *args, **kwargs)

    monkeypatch.setattr(BaseModel, "model_validate_json", classmethod(counted_model))
    monkeypatch.setattr(orjson, "loads", counted_loads)
    monkeypatch.setattr(pydantic_core, "from_json", counted_from_json)
    return seen


def _no_traceback_logged(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [r.getMessage() for r in bad]


def _label(n: int = 1) -> dict[str, Any]:
    return {"name": "label", "shape": [n], "datatype": "INT64", "data": [1] * n}


# --- row 2: nested-list bombs and shapes the model does not take cost next to nothing ----------------


def _bomb(repeats: int) -> bytes:
    # What the report sent: a tensor's data as a long list of nested empty lists.
    data = b"[" + b",".join([b"[[]]"] * repeats) + b"]"
    return b'{"inputs":[{"name":"label","shape":[2],"datatype":"INT64","data":' + data + b"}]}"


@pytest.mark.parametrize(
    "body",
    [
        _bomb(200_000),
        b'{"inputs":[' + json.dumps(_label()).encode() + b'],"parameters":{"x":' + b"[" * 100_000 + b"]}",
        # No nesting, but far more values than the model's inputs can hold (in an ignored parameter).
        json.dumps({"inputs": [_label()], "parameters": {"seed": 1, "x": [0] * 300_000}}).encode(),
    ],
    ids=["nested-empty-lists", "deep-parameter", "long-parameter"],
)
def test_a_json_bomb_is_refused_before_any_parse(
    client: TestClient, parses: list[str], caplog: pytest.LogCaptureFixture, body: bytes
) -> None:
    response = client.post(INFER, content=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"].startswith("body: "), response.json()
    assert parses == [], f"parsed before refusing: {parses}"
    _no_traceback_logged(caplog)


def test_a_shape_the_model_does_not_take_is_refused_before_its_data_is_read(
    models_dir: Path, open_client, caplog: pytest.LogCaptureFixture
) -> None:
    """z as [2, 19000] for a model whose z is [N, 8]: the data (38000 values, all well-formed, no more than
    MAX_N = 4096 images' z may have) is never turned into Python numbers: the refusal allocates less than
    the body itself, where parsing the data alone would allocate several times its size."""
    z = {"name": "z", "shape": [2, 19_000], "datatype": "FP32", "data": [0.25] * 38_000}
    body = json.dumps({"inputs": [_label(2), z]}).encode()

    def peak(headers: dict[str, str]) -> tuple[int, Any]:
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            response = client.post(INFER, content=body, headers=headers)
            return tracemalloc.get_traced_memory()[1], response
        finally:
            tracemalloc.stop()

    with open_client(models_dir, max_n=4096, raise_server_exceptions=False) as client:
        # What carrying the body costs (client, guard, route), refused before any parse in every version.
        transport, unparsed = peak({"Inference-Header-Content-Length": "x"})
        refusing, response = peak({})
    assert unparsed.status_code == 400, unparsed.text
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error == f"z: must be FP32 [2, {LATENT_DIM}] for 2 labels, got FP32 [2, 19000]", error
    spent = refusing - transport
    assert spent < len(body) // 2, f"{spent} bytes allocated beyond carrying a {len(body)}-byte body"
    _no_traceback_logged(caplog)


def test_a_valid_json_request_is_still_served(client: TestClient) -> None:
    z = [[0.5] * LATENT_DIM, [-0.5] * LATENT_DIM]
    inputs = [_label(2), {"name": "z", "shape": [2, LATENT_DIM], "datatype": "FP32", "data": z}]
    response = client.post(INFER, json={"inputs": inputs})
    assert response.status_code == 200, response.text
    flat = {"name": "z", "shape": [2, LATENT_DIM], "datatype": "FP32", "data": z[0] + z[1]}
    flat_response = client.post(INFER, json={"inputs": [_label(2), flat]})
    assert flat_response.json()["outputs"] == response.json()["outputs"]


# --- row 8: malformed numbers and shapes are a 4xx naming the field, with nothing logged -------------


def _z(shape: list[int], data: list | None = None) -> dict[str, Any]:
    return {"name": "z", "shape": shape, "datatype": "FP32", "data": [] if data is None else data}


@pytest.mark.parametrize(
    ("inputs", "field"),
    [
        ([_label(), _z([0, 2**62])], "z"),
        ([_label(), _z([1, 2**70])], "z"),
        ([_label(), _z([1] * 65, [0.0])], "inputs[1].shape"),
        ([_label(), _z([1, -8])], "z"),
        ([{"name": "label", "shape": [2**62], "datatype": "INT64", "data": []}], "label"),
        ([{"name": "label", "shape": [1, 1], "datatype": "INT64", "data": [1]}], "label"),
        ([{"name": "label", "shape": [], "datatype": "INT64", "data": [1]}, _z([1, 8])], "label"),
        ([_z([], [0.0]), {"name": "label", "shape": [], "datatype": "INT64", "data": [1]}], "label"),
        ([_label(), {"name": "codes", "shape": [1, 2], "datatype": "FP32", "data": [0.0, 0.0]}], "codes"),
    ],
    ids=[
        "zero-by-2**62",
        "2**70",
        "65-dims",
        "negative",
        "label-2**62",
        "label-2d",
        "label-0d",
        "label-0d-after-z",
        "codes-no-codes",
    ],
)
def test_a_shape_out_of_bounds_is_a_422_naming_the_input(
    client: TestClient, caplog: pytest.LogCaptureFixture, inputs: list, field: str
) -> None:
    response = client.post(INFER, json={"inputs": inputs})
    assert response.status_code == 422, response.text
    assert response.json()["error"].startswith(f"{field}"), response.json()
    _no_traceback_logged(caplog)


def _raw_post(client: TestClient, body: bytes, headers: list[tuple[bytes, bytes]]) -> tuple[int, Any]:
    """POST to the app at the ASGI level with these raw header bytes (an HTTP client would re-encode a
    byte like 0xB2; a server hands it over as it came, decoded as latin-1)."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = post_scope(INFER, [(b"host", b"t"), *headers], ("t", 80))
    client.portal.call(client.app, scope, receive, send)  # type: ignore[union-attr]
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, json.loads(b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"))


@pytest.mark.parametrize(
    "length", [b"\xb2", b"1" * 5000, "٣".encode(), b"+12", b" 12", b"1_0", b"-1"], ids=repr
)
def test_a_header_length_that_is_not_ascii_digits_is_a_400(
    client: TestClient, caplog: pytest.LogCaptureFixture, length: bytes
) -> None:
    body = json.dumps({"inputs": [_label()]}).encode()
    headers = [(b"content-length", str(len(body)).encode()), (b"inference-header-content-length", length)]
    status, answer = _raw_post(client, body, headers)
    assert status == 400, answer
    assert answer["error"].startswith("Inference-Header-Content-Length: "), answer
    _no_traceback_logged(caplog)


@pytest.mark.parametrize(("length", "status"), [(b"1" * 5000, 413), (b"\xb2", 400), (b"0x10", 400)], ids=repr)
def test_a_content_length_that_is_no_byte_count_is_a_4xx(
    client: TestClient, caplog: pytest.LogCaptureFixture, length: bytes, status: int
) -> None:
    got, answer = _raw_post(client, b"{}", [(b"content-length", length)])
    assert got == status, answer
    assert answer["error"].startswith(("body: ", "Content-Length: ")), answer
    _no_traceback_logged(caplog)


@pytest.mark.parametrize("code", ["²", "١", " ² "])
def test_a_traverse_code_of_non_ascii_digits_is_a_422(
    client: TestClient, caplog: pytest.LogCaptureFixture, code: str
) -> None:
    posted = client.post(
        "/generate", json={"model": "styled", "label": 1, "n": 1, "traverse": {"code": code}}
    )
    assert posted.status_code == 422, posted.text
    assert posted.json()["field"] == "traverse.code"
    got = client.get("/generate", params={"model": "styled", "label": "1", "n": "1", "traverse": code})
    assert got.status_code == 422, got.text
    assert got.json()["field"] == "traverse.code"
    _no_traceback_logged(caplog)
