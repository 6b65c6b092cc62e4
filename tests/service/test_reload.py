"""Hot reload and the failure drills: what appears in MODELS_DIR while serving, good or bad."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import cgan_contract as contract


@pytest.fixture
def root(models_dir: Path) -> Path:
    """MODELS_DIR with digits v1."""
    return models_dir


def _served_version(client: TestClient, name: str = "digits") -> int:
    response = client.post("/generate", json={"label": 1, "n": 2, "model": name})
    assert response.status_code == 200, response.text
    return int(response.headers["x-model-version"])


def _refusals(metric: Callable[..., float], client: TestClient, reason: str) -> float:
    return metric(client, "cgan_model_load_refusals_total", {"model": "digits", "reason": reason})


def test_new_version_is_loaded_and_served(
    root: Path, publish, build_onnx, open_client, runtime, metric
) -> None:
    with open_client(root) as client:
        assert _served_version(client) == 1
        publish(root, "digits", 2, onnx_bytes=build_onnx(weights_seed=1))
        assert runtime(client).registry.scan() == {"digits": 2}
        assert _served_version(client) == 2
        assert client.get("/readyz").json()["models"] == {"digits": 2}
        assert (
            metric(client, "cgan_model_info", {"model": "digits", "version": "2", "sha256": _sha(root, 2)})
            == 1
        )
        # v1 stays loaded (MODEL_VERSIONS is 2), pinnable but no longer the default.
        assert (
            metric(client, "cgan_model_info", {"model": "digits", "version": "1", "sha256": _sha(root, 1)})
            == 1
        )


def _sha(root: Path, version: int) -> str:
    return contract.read_card(root / "digits" / str(version)).sha256


def test_watcher_picks_up_new_versions_without_help(root: Path, publish, open_client) -> None:
    with open_client(root, reload_interval=0.05) as client:
        publish(root, "digits", 2)
        deadline = time.monotonic() + 10
        while _served_version(client) != 2:
            assert time.monotonic() < deadline, "the watcher never loaded v2"
            time.sleep(0.05)


def test_swap_drops_no_requests(root: Path, publish, open_client, runtime) -> None:
    statuses: list[int] = []
    stop = threading.Event()
    with open_client(root) as client:

        def hammer() -> None:
            while not stop.is_set():
                statuses.append(client.post("/generate", json={"label": 3, "n": 4}).status_code)

        workers = [threading.Thread(target=hammer) for _ in range(3)]
        for worker in workers:
            worker.start()
        for version in (2, 3, 4):
            publish(root, "digits", version)
            runtime(client).registry.scan()
        time.sleep(0.1)
        stop.set()
        for worker in workers:
            worker.join()
        assert _served_version(client) == 4
    assert statuses and set(statuses) == {200}


def _card_in_the_wrong_directory(publish, root: Path, build_onnx) -> None:
    publish(root, "digits", 3)
    (root / "digits" / "3").rename(root / "digits" / "2")


DRILLS = {
    # name: (publish a bad v2, the refusal reason code)
    "truncated onnx": (lambda publish, root, b: publish(root, "digits", 2, onnx_bytes=b()[:300]), "onnx"),
    "sha mismatch": (lambda publish, root, b: publish(root, "digits", 2, sha256="0" * 64), "sha256"),
    "wrong input names": (
        lambda publish, root, b: publish(root, "digits", 2, onnx_bytes=b(noise_name="noise")),
        "signature",
    ),
    "latent dim differs from card": (
        lambda publish, root, b: publish(root, "digits", 2, onnx_bytes=b(graph_latent_dim=16)),
        "signature",
    ),
    "float output": (
        lambda publish, root, b: publish(root, "digits", 2, onnx_bytes=b(float_output=True)),
        "signature",
    ),
    "image shape differs from card": (
        lambda publish, root, b: publish(root, "digits", 2, onnx_bytes=b(image_shape=(32, 32, 1))),
        "signature",
    ),
    "fewer classes in graph than card": (
        lambda publish, root, b: publish(root, "digits", 2, onnx_bytes=b(num_classes=4)),
        "warmup",
    ),
    "card in the wrong directory": (_card_in_the_wrong_directory, "card"),
    "card missing": (lambda publish, root, b: publish(root, "digits", 2, card=False), "incomplete"),
}


@pytest.mark.parametrize("drill", DRILLS, ids=list(DRILLS))
def test_bad_version_is_refused_and_the_old_one_keeps_serving(
    root: Path,
    publish,
    build_onnx,
    open_client,
    runtime,
    metric,
    caplog: pytest.LogCaptureFixture,
    drill: str,
) -> None:
    make_bad, reason = DRILLS[drill]
    with open_client(root) as client:
        make_bad(publish, root, build_onnx)
        with caplog.at_level(logging.WARNING, logger="service"):
            assert runtime(client).registry.scan() == {"digits": 1}
        assert _served_version(client) == 1
        ready = client.get("/readyz")
        assert ready.status_code == 200
        refused = ready.json()["refused"]
        assert refused == {"digits/2": reason}  # the reason code only: the message (with paths) is logged
        assert _refusals(metric, client, reason) == 1
        assert any(
            "refused model digits v2" in r.message and "still serving v1" in r.message for r in caplog.records
        )
        # An unchanged refused directory is neither retried nor counted again.
        runtime(client).registry.scan()
        assert _refusals(metric, client, reason) == 1


def test_half_written_version_is_retried_once_complete(
    root: Path, publish, open_client, runtime, metric
) -> None:
    with open_client(root) as client:
        # A copy in progress: model.onnx landed, model.json not yet.
        version_dir = publish(root, "digits", 2, card=False, atomic=False)
        assert runtime(client).registry.scan() == {"digits": 1}
        assert _refusals(metric, client, "incomplete") == 1
        # The copy finishes: the directory changed, so the next scan tries again and succeeds.
        shutil.rmtree(version_dir)
        publish(root, "digits", 2, atomic=False)
        assert runtime(client).registry.scan() == {"digits": 2}
        assert client.get("/readyz").json()["refused"] == {}


def test_model_still_being_written_is_refused_then_loaded(
    root: Path, publish, build_onnx, open_client, runtime
) -> None:
    full = build_onnx(weights_seed=5)
    with open_client(root) as client:
        version_dir = publish(root, "digits", 2, onnx_bytes=full, atomic=False)
        model_file = version_dir / contract.MODEL_FILE
        model_file.write_bytes(full[: len(full) // 2])
        assert runtime(client).registry.scan() == {"digits": 1}
        assert client.get("/readyz").json()["refused"] == {"digits/2": "sha256"}
        model_file.write_bytes(full)
        assert runtime(client).registry.scan() == {"digits": 2}


def test_removed_version_falls_back_and_removed_model_is_dropped(
    root: Path, publish, open_client, runtime, metric
) -> None:
    publish(root, "digits", 2)
    publish(root, "fashion", 1)
    with open_client(root, default_model=None) as client:
        assert _served_version(client) == 2
        shutil.rmtree(root / "digits" / "2")
        assert runtime(client).registry.scan() == {"digits": 1, "fashion": 1}
        assert _served_version(client) == 1

        info = {"model": "digits", "version": "1", "sha256": _sha(root, 1)}
        assert metric(client, "cgan_model_info", info) == 1
        shutil.rmtree(root / "digits")
        assert runtime(client).registry.scan() == {"fashion": 1}
        assert client.post("/generate", json={"label": 1, "model": "digits"}).status_code == 404
        assert client.get("/readyz").json() == {
            "ready": True,
            "reason": None,
            "models": {"fashion": 1},
            "refused": {},
        }
        assert metric(client, "cgan_model_info", info) == 0

        shutil.rmtree(root / "fashion")
        runtime(client).registry.scan()
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["models"] == {}
        assert client.post("/generate", json={"label": 1}).status_code == 503


def test_older_version_is_used_when_the_newest_is_bad_at_startup(root: Path, publish, open_client) -> None:
    publish(root, "digits", 2, sha256="f" * 64)
    with open_client(root) as client:
        assert _served_version(client) == 1
        assert "digits/2" in client.get("/readyz").json()["refused"]
