"""Fixtures for the service tests: apps over a temporary MODELS_DIR, entered with ``TestClient`` so the
lifespan runs. The tiny models come from :mod:`cgan_testing.fakes`.

Helpers reach tests as fixtures (``publish``, ``open_client``, ``build_onnx``, ``metric``)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cgan_testing.fakes import FASHION, build_generator, write_version
from service.app import create_app
from service.config import Settings
from service.models import LoadedModel
from service.runtime import Runtime


def make_settings(models_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "models_dir": models_dir,
        # Tests see exactly the models they publish; tests/service/test_bundled.py turns this on.
        "bundled_models": False,
        "default_model": None,
        "api_token": None,
        "reload_interval": 0,  # tests call registry.scan() when they want a rescan
        "max_concurrency": 4,
        "max_queue": 8,
        "ort_intra_op_threads": 1,
        # One batch at a time, so tests that hold a generate call know every later request queues behind
        # it; tests/service/test_batching.py runs two lanes, the real-server tests the default.
        "model_lanes": 1,
        "dataset_batch": 256,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def generator_bytes() -> bytes:
    return build_generator()


@pytest.fixture
def models_dir(tmp_path: Path, generator_bytes: bytes) -> Path:
    """``tmp_path/models`` holding ``digits`` v1 (ten classes "0".."9")."""
    root = tmp_path / "models"
    root.mkdir()
    write_version(root, "digits", 1, onnx_bytes=generator_bytes)
    return root


def runtime_of(client: TestClient) -> Runtime:
    return client.app.state.runtime  # type: ignore[attr-defined]


def metric_value(client: TestClient, name: str, labels: dict[str, str] | None = None) -> float:
    """The sum of the samples named ``name`` whose labels include ``labels``, from the app's own registry
    (0 when there is none yet): ``{"model": "digits"}`` counts every version of that model."""
    wanted = (labels or {}).items()
    return sum(
        sample.value
        for family in runtime_of(client).metrics.registry.collect()
        for sample in family.samples
        if sample.name == name and wanted <= sample.labels.items()
    )


@pytest.fixture(scope="module")
def shared_client(tmp_path_factory: pytest.TempPathFactory, generator_bytes: bytes) -> Iterator[TestClient]:
    """One app per module, for read-only tests (and hypothesis, which cannot use function-scoped fixtures)."""
    root = tmp_path_factory.mktemp("shared") / "models"
    root.mkdir()
    write_version(root, "digits", 1, onnx_bytes=generator_bytes)
    write_version(root, "fashion", 2, class_names=FASHION, onnx_bytes=generator_bytes)
    with TestClient(create_app(make_settings(root, default_model="digits"))) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def publish() -> Callable[..., Path]:
    """``publish(models_dir, name, version, onnx_bytes=..., card=..., atomic=..., **card_fields)``."""
    return write_version


@pytest.fixture(scope="session")
def build_onnx() -> Callable[..., bytes]:
    return build_generator


@pytest.fixture(scope="session")
def fashion_classes() -> list[str]:
    return list(FASHION)


@pytest.fixture(scope="session")
def metric() -> Callable[..., float]:
    return metric_value


@pytest.fixture(scope="session")
def runtime() -> Callable[[TestClient], Runtime]:
    return runtime_of


@pytest.fixture(scope="session")
def make_app() -> Callable[..., FastAPI]:
    """``make_app(models_dir, **settings)``: an app not yet started (for tools that run the lifespan)."""
    return lambda models_dir, **overrides: create_app(make_settings(models_dir, **overrides))


@pytest.fixture(scope="session")
def open_client() -> Callable[..., contextlib.AbstractContextManager[TestClient]]:
    """``with open_client(models_dir, max_concurrency=1, ...) as client``: an app with these settings."""

    @contextlib.contextmanager
    def open_(
        models_dir: Path, *, raise_server_exceptions: bool = True, **overrides: object
    ) -> Iterator[TestClient]:
        app = create_app(make_settings(models_dir, **overrides))
        with TestClient(app, raise_server_exceptions=raise_server_exceptions) as test_client:
            yield test_client

    return open_


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[threading.Event, threading.Event]]:
    """``(entered, release)``: every generate call signals ``entered`` and then blocks until ``release``, so
    a test decides when work finishes (queue, overload and disconnect tests)."""
    entered, release = threading.Event(), threading.Event()
    original = LoadedModel.generate

    def blocking(
        self: LoadedModel, labels: np.ndarray, seeds: np.ndarray, *rest: object, **options: object
    ) -> np.ndarray:
        entered.set()
        assert release.wait(10), "test never released the gate"
        return original(self, labels, seeds, *rest, **options)

    monkeypatch.setattr(LoadedModel, "generate", blocking)
    yield entered, release
    release.set()  # never leave a worker thread blocked if the test failed midway
