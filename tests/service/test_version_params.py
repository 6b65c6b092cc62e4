"""A model version in a path or a query string is decimal ASCII digits, nothing else: ``1.0``, ``+1``,
``1_0``, `` 1`` and digits of other scripts (``²``, ``١``) are a 422 naming ``version``, never read as 1."""

from __future__ import annotations

from pathlib import Path

import pytest

SPELLINGS = ["1.0", "+1", "1_0", " 1", "1 ", "²", "١", "1e0", "0x1", "01.0"]
INFER_BODY = {
    "inputs": [{"name": "label", "shape": [1], "datatype": "INT64", "data": [1]}],
    "parameters": {"seed": 1},
}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, publish, make_app):
    from fastapi.testclient import TestClient

    root: Path = tmp_path_factory.mktemp("versions") / "models"
    root.mkdir()
    publish(root, "digits", 1)
    with TestClient(make_app(root), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.mark.parametrize("version", SPELLINGS, ids=ascii)
def test_a_version_path_that_is_not_ascii_digits_is_a_422(client, version: str) -> None:
    for method, path, body in (
        ("POST", f"/v2/models/digits/versions/{version}/infer", INFER_BODY),
        ("GET", f"/v2/models/digits/versions/{version}", None),
        ("GET", f"/v2/models/digits/versions/{version}/ready", None),
        ("GET", f"/v2/models/digits/versions/{version}/config", None),
    ):
        response = client.request(method, path, json=body)
        assert response.status_code == 422, (method, path, response.status_code, response.text)
        assert response.json()["error"].startswith("version: "), response.json()


@pytest.mark.parametrize("version", SPELLINGS, ids=ascii)
def test_a_version_query_that_is_not_ascii_digits_is_a_422(client, version: str) -> None:
    response = client.get("/generate", params={"label": "1", "n": "1", "version": version})
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "version"


def test_digits_still_name_a_version(client) -> None:
    assert client.post("/v2/models/digits/versions/1/infer", json=INFER_BODY).status_code == 200
    assert client.get("/v2/models/digits/versions/1").status_code == 200
    assert client.get("/generate", params={"label": "1", "n": "1", "version": "1"}).status_code == 200
    assert client.get("/v2/models/digits/versions/0").status_code == 422
    assert client.get("/v2/models/digits/versions/7").status_code == 404
