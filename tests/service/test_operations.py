"""Probes, model metadata (v1 cards and Open Inference Protocol v2) and Prometheus metrics."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

import cgan_contract as contract


def _families(client: TestClient) -> dict:
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(response.text)}


def test_live_and_ready(shared_client: TestClient) -> None:
    assert shared_client.get("/healthz").json() == {"status": "ok"}
    assert shared_client.get("/v2/health/live").json() == {"live": True}
    ready = shared_client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "ready": True,
        "reason": None,
        "models": {"digits": 1, "fashion": 2},
        "refused": {},
    }
    assert shared_client.get("/v2/health/ready").json() == {"ready": True}


def test_v2_model_metadata(shared_client: TestClient) -> None:
    meta = shared_client.get("/v2/models/digits").json()
    assert meta == {
        "name": "digits",
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": [
            {"name": "z", "datatype": "FP32", "shape": [-1, 8]},
            {"name": "label", "datatype": "INT64", "shape": [-1]},
        ],
        "outputs": [{"name": "image", "datatype": "UINT8", "shape": [-1, 28, 28, 1]}],
    }
    assert shared_client.get("/v2/models/digits/ready").json() == {"name": "digits", "ready": True}
    missing = shared_client.get("/v2/models/nope")
    assert missing.status_code == 404 and missing.json() == {"error": "name: model 'nope' is not loaded"}


def test_v1_models_list_cards_with_quality(shared_client: TestClient, fashion_classes: list[str]) -> None:
    listing = shared_client.get("/v1/models").json()
    assert listing["default"] == "digits"
    assert [(m["name"], m["version"], m["default"]) for m in listing["models"]] == [
        ("digits", 1, True),
        ("fashion", 2, False),
    ]
    card = shared_client.get("/v1/models/fashion").json()["card"]
    assert card["class_names"] == fashion_classes and card["latent_dim"] == 8
    # The whole card as the version directory holds it: quality (None until evaluated) and all.
    path = shared_client.app.state.runtime.registry.models["fashion"].path  # type: ignore[attr-defined]
    assert card == contract.read_card(path).model_dump(mode="json")
    assert card["quality"] is None and len(card["sha256"]) == 64
    assert shared_client.get("/v1/models/nope").status_code == 404


def test_an_evaluated_card_is_served_with_its_quality_figures(tmp_path: Path, open_client) -> None:
    from service.config import BUNDLED_DIR

    with open_client(tmp_path, bundled_models=True) as client:
        served = client.get("/v1/models/mnist-5k-cgan-conv").json()
    card = served["card"]
    on_disk = contract.read_card(BUNDLED_DIR / "mnist-5k-cgan-conv" / str(served["version"]))
    assert card == on_disk.model_dump(mode="json")
    assert (
        on_disk.quality is not None
        and card["quality"]["label_accuracy"] == on_disk.quality.label_accuracy > 0.9
    )


def test_metrics_expose_requests_latency_inference_and_models(shared_client: TestClient) -> None:
    shared_client.post("/generate", json={"label": 1, "n": 5})
    shared_client.post("/generate", json={"label": 99})
    families = _families(shared_client)
    requests = {
        (s.labels["route"], s.labels["status"]): s.value
        for s in families["cgan_http_requests"].samples
        if s.name == "cgan_http_requests_total"
    }
    assert requests[("/generate", "200")] >= 1 and requests[("/generate", "422")] >= 1
    for histogram in ("cgan_http_request_duration_seconds", "cgan_inference_duration_seconds"):
        assert families[histogram].type == "histogram"
        assert any(s.name.endswith("_bucket") and s.value > 0 for s in families[histogram].samples)
    images = {s.labels["model"]: s.value for s in families["cgan_images_generated"].samples}
    assert images["digits"] >= 5
    info = {(s.labels["model"], s.labels["version"]) for s in families["cgan_model_info"].samples}
    assert info == {("digits", "1"), ("fashion", "2")}
    assert "cgan_http_requests_in_flight" in families
    assert "cgan_http_requests_rejected" in families and "cgan_model_load_refusals" in families
    assert families["cgan_ready"].samples[0].value == 1


@pytest.mark.parametrize("layout", ["missing", "empty", "only-junk"])
def test_no_model_starts_not_ready_and_says_why(
    tmp_path: Path, open_client, caplog: pytest.LogCaptureFixture, layout: str
) -> None:
    root = tmp_path / "models"
    if layout != "missing":
        root.mkdir()
    if layout == "only-junk":
        (root / "digits" / ".tmp-1").mkdir(parents=True)  # an unfinished write is not a version
        (root / "README").write_text("not a model")
    with caplog.at_level(logging.WARNING, logger="service"), open_client(root) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        reason = ready.json()["reason"]
        # Why, without the path (open routes tell no paths); the path is in the log.
        assert ready.json()["ready"] is False and "MODELS_DIR" in reason and str(root) not in reason
        assert client.get("/v2/health/ready").status_code == 503
        assert client.get("/healthz").status_code == 200
        generate = client.post("/generate", json={"label": 1})
        assert generate.status_code == 503 and generate.json()["detail"].startswith("not ready")
        assert client.post("/dataset", json={"per_label": 1}).status_code == 503
        assert _families(client)["cgan_ready"].samples[0].value == 0
    assert any("NOT ready" in r.message and str(root) in r.message for r in caplog.records)


def test_default_model_must_be_loaded_to_be_ready(models_dir: Path, open_client) -> None:
    with open_client(models_dir, default_model="fashion") as client:
        assert client.get("/readyz").status_code == 503
        assert "DEFAULT_MODEL 'fashion'" in client.get("/readyz").json()["reason"]
        assert client.post("/generate", json={"label": 1}).status_code == 404
        assert client.post("/generate", json={"label": 1, "model": "digits"}).status_code == 200


def test_several_models_without_default_need_a_name(models_dir: Path, publish, open_client) -> None:
    publish(models_dir, "fashion", 1)
    with open_client(models_dir) as client:
        response = client.post("/generate", json={"label": 1})
        assert response.status_code == 422 and response.json()["field"] == "model"
        assert client.post("/generate", json={"label": 1, "model": "fashion"}).status_code == 200


def test_lifespan_shutdown_turns_not_ready(models_dir: Path, open_client, runtime) -> None:
    with open_client(models_dir) as client:
        assert client.get("/readyz").status_code == 200
        state = runtime(client)
    assert state.readiness() == (False, "shutting down")


def test_root_serves_the_playground(shared_client: TestClient) -> None:
    from service.routes import ui

    response = shared_client.get("/", follow_redirects=False)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert response.content == (ui.STATIC_DIR / "index.html").read_bytes()
    assert "<title>cgan-synth playground</title>" in response.text
    assert response.headers["content-security-policy"] == ui.page_csp(response.content)
    assert shared_client.get("/static/does-not-exist.js").status_code == 404


def test_root_redirects_to_the_docs_without_a_page(
    shared_client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.routes import ui

    monkeypatch.setattr(ui, "STATIC_DIR", tmp_path)  # an install that ships no playground page
    response = shared_client.get("/", follow_redirects=False)
    assert response.status_code == 307 and response.headers["location"] == "/docs"
