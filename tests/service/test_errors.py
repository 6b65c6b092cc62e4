"""Bad input: always a 4xx whose message names the field, never a 500 or a stack trace."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import cgan_contract as contract
from service.models import LoadedModel

BAD_GENERATE = [
    ({"label": 10}, 422, "label"),
    ({"label": -1}, 422, "label"),
    ({"label": "Sneaker"}, 422, "label"),
    ({"label": ""}, 422, "label"),
    ({"label": 1.5}, 422, "label"),
    ({"label": True}, 422, "label"),
    ({"label": None}, 422, "label"),
    ({"label": [1]}, 422, "label"),
    ({"n": 3}, 422, "label"),
    ({"label": 1, "n": 0}, 422, "n"),
    ({"label": 1, "n": -5}, 422, "n"),
    ({"label": 1, "n": 1025}, 422, "n"),
    ({"label": 1, "n": "16"}, 422, "n"),
    ({"label": 1, "n": 2.0}, 422, "n"),
    ({"label": 1, "format": "gif"}, 422, "format"),
    ({"label": 1, "seed": -1}, 422, "seed"),
    ({"label": 1, "seed": contract.MAX_SEED + 1}, 422, "seed"),
    ({"label": 1, "seed": contract.MAX_SEED, "n": 2}, 422, "seed"),
    ({"label": 1, "seed": "abc"}, 422, "seed"),
    ({"label": 1, "nrow": 0}, 422, "nrow"),
    ({"label": 1, "nrow": 5000}, 422, "nrow"),
    ({"label": 1, "pad": 17}, 422, "pad"),
    ({"label": 1, "model": "nope"}, 404, "model"),
    ({"label": 1, "model": "Digits"}, 422, "model"),
    ({"label": 1, "lable": 2}, 422, "lable"),
]


@pytest.mark.parametrize("body,status,field", BAD_GENERATE, ids=[str(b) for b, _, _ in BAD_GENERATE])
def test_bad_generate_bodies(shared_client: TestClient, body: dict, status: int, field: str) -> None:
    response = shared_client.post("/generate", json=body)
    assert response.status_code == status, response.text
    error = response.json()
    assert error["field"] == field
    assert error["detail"].startswith(f"{field}:")
    assert "Traceback" not in response.text


@pytest.mark.parametrize(
    "query,status,field",
    [
        ({}, 422, "label"),
        ({"label": "11"}, 422, "label"),
        ({"label": "3", "n": "x"}, 422, "n"),
        ({"label": "3", "n": "0"}, 422, "n"),
        ({"label": "3", "seed": "-2"}, 422, "seed"),
        ({"label": "3", "model": "nope"}, 404, "model"),
        ({"label": "3", "pad": "99"}, 422, "pad"),
        ({"label": "3", "lable": "3"}, 422, "lable"),
    ],
)
def test_bad_generate_queries(shared_client: TestClient, query: dict, status: int, field: str) -> None:
    response = shared_client.get("/generate", params=query)
    assert response.status_code == status, response.text
    assert response.json()["field"] == field


@pytest.mark.parametrize(
    "content,detail",
    [(b"{not json", "body: invalid JSON"), (b"", "body: "), (b"[1, 2]", "body: "), (b'"label"', "body: ")],
)
def test_malformed_bodies_are_422(shared_client: TestClient, content: bytes, detail: str) -> None:
    response = shared_client.post("/generate", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["detail"].startswith(detail)


def test_oversized_body_is_413(shared_client: TestClient) -> None:
    body = b'{"label": 1, "model": "' + b"a" * 20_000 + b'"}'
    response = shared_client.post("/generate", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json() == {"detail": "body: larger than MAX_BODY_BYTES (16384 bytes)", "field": "body"}


def test_oversized_chunked_body_is_413(shared_client: TestClient) -> None:
    # No Content-Length: the limit must hold while the body streams in.
    chunks = iter([b'{"label": 1, "pad": ', b" " * 10_000, b" " * 10_000, b"2}"])
    response = shared_client.post("/generate", content=chunks, headers={"content-type": "application/json"})
    assert response.status_code == 413


@pytest.mark.parametrize(
    "path",
    [
        "/v1/models/..",
        "/v1/models/%2e%2e",
        "/v1/models/..%2Fetc",
        "/v2/models/.hidden",
        "/v1/models/%2e%2e%2fetc",
    ],
)
def test_model_names_cannot_escape_models_dir(shared_client: TestClient, path: str) -> None:
    response = shared_client.get(path)
    assert response.status_code in (404, 422), response.text
    # The Open Inference Protocol's routes answer in its own error shape.
    assert set(response.json()) == ({"error"} if path.startswith("/v2/") else {"detail", "field"})


@pytest.mark.parametrize(
    "name", ["../etc", "..", "%2e%2e", "digits/../../etc", "/etc/passwd", ".digits", "a" * 65]
)
def test_traversal_names_in_bodies_are_rejected_before_any_lookup(
    shared_client: TestClient, name: str
) -> None:
    response = shared_client.post("/generate", json={"label": 1, "model": name})
    assert response.status_code == 422
    assert response.json()["field"] == "model"
    response = shared_client.post("/dataset", json={"per_label": 1, "model": name})
    assert response.status_code == 422


def test_traversal_target_is_never_served(models_dir: Path, publish, open_client) -> None:
    # A valid model just outside MODELS_DIR stays unreachable whatever the name says.
    publish(models_dir.parent, "outside", 1)
    with open_client(models_dir) as client:
        for name in ("../outside", "outside", "..%2Foutside"):
            assert client.post("/generate", json={"label": 1, "model": name}).status_code in (404, 422)
        assert client.get("/v1/models/outside").status_code == 404


def test_unknown_route_and_method(shared_client: TestClient) -> None:
    assert shared_client.get("/nope").json() == {"detail": "Not Found", "field": None}
    response = shared_client.delete("/generate")
    assert response.status_code == 405 and response.json()["detail"] == "Method Not Allowed"


def test_unhandled_errors_are_a_plain_500(models_dir: Path, open_client, monkeypatch) -> None:
    def explode(self: LoadedModel, labels: object, seeds: object, *rest: object, **options: object) -> None:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(LoadedModel, "generate", explode)
    with open_client(models_dir, raise_server_exceptions=False) as client:
        response = client.post("/generate", json={"label": 1})
    assert response.status_code == 500
    assert response.json() == {"detail": "internal server error", "field": None}
    assert "secret" not in response.text
