"""Dynamic batching: requests that wait together run together, and get exactly what they would alone."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from cgan_contract import request_seeds
from service.dataplane import Job, run_jobs
from service.models import LoadedModel

REQUESTS = [
    {"label": 1, "n": 3, "seed": 10},
    {"label": "7", "n": 1, "seed": 10, "format": "npy"},
    {"label": 2, "n": 16, "seed": 99, "format": "json"},
    {"label": "Bag", "n": 5, "seed": 3, "model": "fashion", "nrow": 2},
    {"label": 0, "n": 2, "seed": 0, "model": "fashion", "format": "npy"},
    {"label": 9, "n": 7, "seed": 12345, "pad": 0},
]


def post_each_request(client, results: dict[int, bytes]) -> list[threading.Thread]:
    """Start one thread per entry of :data:`REQUESTS`, each storing its response body in ``results[i]``."""
    threads = [
        threading.Thread(
            target=lambda i=i: results.__setitem__(i, client.post("/generate", json=REQUESTS[i]).content)
        )
        for i in range(len(REQUESTS))
    ]
    for thread in threads:
        thread.start()
    return threads


@pytest.fixture
def root(models_dir: Path, publish, build_onnx, fashion_classes) -> Path:
    publish(models_dir, "fashion", 1, class_names=fashion_classes, onnx_bytes=build_onnx(weights_seed=4))
    return models_dir


def test_waiting_requests_share_one_run_and_get_their_own_bytes(
    root: Path, open_client, runtime, metric, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One lane: the held run occupies it, so everything below must wait for the next batch.
    with open_client(root, default_model="digits", max_concurrency=16, model_lanes=1) as client:
        alone = [client.post("/generate", json=body).content for body in REQUESTS]

        # Hold the first run so every request below queues behind it, then let them all go at once.
        release, first = threading.Event(), threading.Event()
        original = LoadedModel.generate

        def held(
            self: LoadedModel, labels: np.ndarray, seeds: np.ndarray, *rest: object, **options: object
        ) -> np.ndarray:
            if not first.is_set():
                first.set()
                assert release.wait(10)
            return original(self, labels, seeds, *rest, **options)

        monkeypatch.setattr(LoadedModel, "generate", held)
        runs = "cgan_inference_duration_seconds_count"
        runs_before = {m: metric(client, runs, {"model": m}) for m in ("digits", "fashion")}
        results: dict[int, bytes] = {}
        blocker = threading.Thread(target=lambda: client.post("/generate", json={"label": 0, "n": 1}))
        blocker.start()
        assert first.wait(10)
        threads = post_each_request(client, results)
        deadline = time.monotonic() + 10
        while runtime(client).batcher.waiting < len(REQUESTS):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        release.set()
        for thread in [blocker, *threads]:
            thread.join(10)

        assert [results[i] for i in range(len(REQUESTS))] == alone
        # The blocker's run, then one run per model for the six queued requests.
        assert metric(client, runs, {"model": "digits"}) - runs_before["digits"] == 2
        assert metric(client, runs, {"model": "fashion"}) - runs_before["fashion"] == 1


def test_one_failing_job_does_not_fail_its_batch(root: Path, open_client, runtime) -> None:
    with open_client(root, default_model="digits") as client:
        model = runtime(client).registry.models["digits"]

        def broken(images: np.ndarray, seeds: np.ndarray) -> bytes:
            raise ValueError("encoder bug")

        jobs = [
            Job(model, np.full(2, 1), lambda images, seeds: images.tobytes(), request_seeds(0, 2)),
            Job(model, np.full(3, 2), broken, request_seeds(5, 3)),
            Job(model, np.full(1, 3), lambda images, seeds: images.tobytes(), request_seeds(7, 1)),
        ]
        outcomes = run_jobs(jobs)
        assert isinstance(outcomes[1], ValueError)
        labels, seeds = np.array([3], dtype=np.int64), np.array([7], dtype=np.uint64)
        assert outcomes[2] == model.generate(labels, seeds).tobytes()
        assert len(outcomes[0]) == 2 * 28 * 28


def test_two_lanes_run_two_batches_at_once_on_the_lane_session(
    root: Path, open_client, runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ORT_INTRA_OP_THREADS unset: a lone caller's session has every core, the lanes share a one-thread one.
    cores = {"ort_intra_op_threads": 0, "model_lanes": 2, "max_concurrency": 16}
    monkeypatch.setattr("service.config.available_cores", lambda *a: 2)
    with open_client(root, default_model="digits", **cores) as client:
        model = runtime(client).registry.models["digits"]
        assert model.lane_session is not None and model.on_lanes.session is model.lane_session
        assert model.lane_session.get_session_options().intra_op_num_threads == 1
        assert model.session.get_session_options().intra_op_num_threads == 2
        alone = [client.post("/generate", json=body).content for body in REQUESTS]

        # Both lanes held at once: each run waits until the other has started, so one lane would deadlock.
        barrier = threading.Barrier(2, timeout=10)
        sessions: list[object] = []
        original = LoadedModel.generate

        def paired(self: LoadedModel, labels: np.ndarray, seeds: np.ndarray, *rest, **options) -> np.ndarray:
            sessions.append(self.session)
            if len(sessions) <= 2:
                barrier.wait()
            return original(self, labels, seeds, *rest, **options)

        monkeypatch.setattr(LoadedModel, "generate", paired)
        results: dict[int, bytes] = {}
        threads = post_each_request(client, results)
        for thread in threads:
            thread.join(20)
        assert not barrier.broken
        assert [results.get(i) for i in range(len(REQUESTS))] == alone
        lane_sessions = {runtime(client).registry.models[m].lane_session for m in ("digits", "fashion")}
        assert set(sessions) <= lane_sessions


def test_warm_up_runs_on_the_lane_session_too(
    root: Path, open_client, runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.models import loader as registry_module

    warmed: list[object] = []
    original = registry_module.runner.generate

    def recording(session, *args, **kwargs):
        warmed.append(session)
        return original(session, *args, **kwargs)

    monkeypatch.setattr("service.config.available_cores", lambda *a: 2)
    monkeypatch.setattr(registry_module.runner, "generate", recording)
    with open_client(root, default_model="digits", ort_intra_op_threads=0, model_lanes=2) as client:
        model = runtime(client).registry.models["digits"]
        assert model.lane_session is not None
        # Both sessions ran before the first request: the lanes' first /generate pays no first-run cost.
        assert any(s is model.session for s in warmed)
        assert any(s is model.lane_session for s in warmed)


def test_lanes_setting_and_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    from service.config import Settings

    monkeypatch.setattr("service.config.available_cores", lambda *a: 4)
    assert (Settings().lanes, Settings().lane_threads, Settings().intra_op_threads) == (4, 1, 4)
    assert (Settings(model_lanes=2).lanes, Settings(model_lanes=2).lane_threads) == (2, 2)
    assert Settings(model_lanes=1).lane_threads == Settings(model_lanes=1).intra_op_threads == 4
    assert Settings(model_lanes=8).lane_threads == 1
    assert Settings(model_lanes=2, ort_intra_op_threads=3).lane_threads == 3


def test_each_worker_gets_its_share(monkeypatch: pytest.MonkeyPatch) -> None:
    from service.config import Settings

    monkeypatch.setattr("service.config.available_cores", lambda *a: 4)
    assert Settings().worker_count == 4 and Settings(workers=3).worker_count == 3
    worker = Settings(workers=2, max_concurrency=7, max_queue=64).for_worker()
    assert (worker.max_concurrency, worker.max_queue) == (4, 32)  # rounded up: never 0 a worker
    # Two cores each: two lanes of one thread; a lone stream still gets every core.
    assert (worker.lanes, worker.lane_threads, worker.intra_op_threads) == (2, 1, 4)
    one_each = Settings(workers=4).for_worker()
    assert (one_each.lanes, one_each.lane_threads, one_each.max_concurrency) == (1, 1, 8)  # 8 a core
    assert Settings(workers=8).for_worker().worker_cores == 1


def test_long_batches_run_in_pieces_with_the_same_images(
    root: Path, open_client, runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.models import loaded as registry_module

    runs: list[int] = []
    original = registry_module.runner.run

    def counting(session, labels, *rest, **options):
        runs.append(len(labels))
        return original(session, labels, *rest, **options)

    body = {"label": 3, "n": 10, "seed": 5, "format": "npy"}
    with open_client(root, default_model="digits", run_max_images=0) as client:
        whole = client.post("/generate", json=body).content
        model = runtime(client).registry.models["digits"]
        z = np.random.default_rng(0).standard_normal((10, model.card.latent_dim), dtype=np.float32)
        labels = np.arange(10, dtype=np.int64) % model.card.num_classes
        from_noise = model.generate(labels, z=z)
    monkeypatch.setattr(registry_module.runner, "run", counting)
    with open_client(root, default_model="digits", run_max_images=4) as client:
        runs.clear()
        assert client.post("/generate", json=body).content == whole
        assert runs == [4, 4, 2]
        runs.clear()
        model = runtime(client).registry.models["digits"]
        assert np.array_equal(model.generate(labels, z=z), from_noise)
        assert runs == [4, 4, 2]
