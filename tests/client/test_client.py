"""cgan_client against a real server process: generate, streamed datasets, retries on a real 429, a pinned
version, the token, errors, and the input-pipeline adapters."""

from __future__ import annotations

import asyncio
import io
import socket
import threading
import time
import tracemalloc
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cgan_client import AsyncClient, Client, ServiceError
from cgan_testing.fakes import build_generator, write_version
from cgan_testing.live_server import LiveServer

TOKEN = "client-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("client") / "models"
    root.mkdir()
    write_version(root, "digits", 1, onnx_bytes=build_generator(weights_seed=1))
    write_version(root, "digits", 2, onnx_bytes=build_generator(weights_seed=2))
    return root


@pytest.fixture(scope="module")
def server(models: Path) -> Iterator[LiveServer]:
    running = LiveServer(models, models.parent / "server.log", API_TOKEN=TOKEN, DATASET_BATCH="64")
    yield running
    running.stop()


@pytest.fixture
def api(server: LiveServer) -> Iterator[Client]:
    with Client(server.url, token=TOKEN, timeout=30) as client:
        yield client


def _direct(server: LiveServer, path: str, body: dict) -> httpx.Response:
    response = httpx.post(f"{server.url}{path}", json=body, headers=AUTH, timeout=30)
    assert response.status_code == 200, response.text
    return response


def _npz(server: LiveServer, body: dict) -> tuple[np.ndarray, np.ndarray]:
    data = np.load(io.BytesIO(_direct(server, "/dataset", body).content))
    return data["x"], data["y"]


def _seeds(server: LiveServer, body: dict) -> np.ndarray:
    return np.load(io.BytesIO(_direct(server, "/dataset", body).content))["seeds"]


def test_generate_matches_the_service(server: LiveServer, api: Client) -> None:
    images = api.generate(7, 5, seed=11)
    assert images.dtype == np.uint8 and images.shape == (5, 28, 28)
    direct = _direct(server, "/generate", {"label": 7, "n": 5, "seed": 11, "format": "npy"})
    assert direct.headers["x-model-version"] == "2"
    assert images.tobytes() == np.load(io.BytesIO(direct.content)).tobytes()
    assert np.array_equal(api.generate("7", 5, seed=11), images)


def test_pinned_version(server: LiveServer, api: Client) -> None:
    v1 = np.load(
        io.BytesIO(
            _direct(
                server, "/generate", {"label": 2, "n": 3, "seed": 4, "format": "npy", "version": 1}
            ).content
        )
    )
    assert np.array_equal(api.generate(2, 3, seed=4, version=1), v1)
    with Client(server.url, token=TOKEN, version=1) as pinned:
        assert np.array_equal(pinned.generate(2, 3, seed=4), v1)
        x, y = pinned.dataset(3, labels=[2], seed=4, order="by_class")
        assert np.array_equal(x, v1) and list(y) == [2, 2, 2]
        assert pinned.model_info()["version"] == 1
    assert not np.array_equal(api.generate(2, 3, seed=4), v1)  # the newest (v2) answers unpinned
    with pytest.raises(ServiceError) as raised:
        api.generate(2, 3, version=9)
    assert raised.value.status == 404 and raised.value.field == "version"
    assert raised.value.detail == "version: 'digits' v9 is not loaded; loaded: 2, 1"


def test_streamed_dataset_equals_the_npz(server: LiveServer, api: Client) -> None:
    x, y = _npz(server, {"per_label": 45, "labels": [0, "7", 3], "seed": 3})
    batches = list(api.iter_dataset(45, labels=[0, "7", 3], seed=3, batch_size=32))
    assert [len(b[0]) for b in batches] == [32, 32, 32, 32, 7]
    assert np.array_equal(np.concatenate([b[0] for b in batches]), x)
    assert np.array_equal(np.concatenate([b[1] for b in batches]), y)
    for _, by in batches[:4]:  # the default order: every training batch holds every label
        assert sorted(np.bincount(by, minlength=8)[[0, 3, 7]]) == [10, 11, 11]

    whole_x, whole_y = api.dataset(45, labels=[0, "7", 3], seed=3)
    assert np.array_equal(whole_x, x) and np.array_equal(whole_y, y)
    in_order_x, in_order_y = api.dataset(45, labels=[0, "7", 3], seed=3, order="by_class")
    assert list(in_order_y[:45]) == [0] * 45 and list(in_order_y[45:90]) == [7] * 45
    at = np.argsort(_seeds(server, {"per_label": 45, "labels": [0, "7", 3], "seed": 3}))
    assert np.array_equal(in_order_x, x[at]) and np.array_equal(in_order_y, y[at])
    every_x, every_y = api.dataset(4, seed=1, order="by_class")  # every class
    assert every_x.shape == (40, 28, 28) and list(every_y[::4]) == list(range(10))
    run_x, run_y = api.dataset(45, labels=[0, "7", 3], seed=3, start=30, stop=60)
    assert np.array_equal(run_x, x[30:60]) and np.array_equal(run_y, y[30:60])


def test_streaming_memory_stays_bounded(api: Client) -> None:
    # 20,000 images (15.7 MB of pixels) in 256-image batches: Python allocations peak near a batch or two.
    tracemalloc.start()
    try:
        count = sum(len(x) for x, _ in api.iter_dataset(2000, seed=0, batch_size=256))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 20_000
    assert peak < 4_000_000, f"peak {peak / 1e6:.1f} MB while streaming 15.7 MB"


def test_save_dataset_streams_any_format(tmp_path: Path, api: Client) -> None:
    path = api.save_dataset(tmp_path / "set.zip", 3, format="zip", labels=[1, 2], seed=0)
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    assert "manifest.csv" in names and sum(n.endswith(".png") for n in names) == 6
    with pytest.raises(ServiceError) as raised:
        api.save_dataset(tmp_path / "bad.zip", 3, format="rar")
    assert raised.value.status == 422 and raised.value.field == "format"
    assert not (tmp_path / "bad.zip").exists() and list(tmp_path.iterdir()) == [path]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    "progress,terminal,shown", [(True, True, True), (False, True, False), (True, False, False)]
)
def test_save_dataset_progress_bar_on_a_terminal_only(
    tmp_path: Path, api: Client, monkeypatch: pytest.MonkeyPatch, progress: bool, terminal: bool, shown: bool
) -> None:
    err = _Terminal() if terminal else io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    api.save_dataset(tmp_path / "set.npz", 30, seed=0, progress=progress)
    assert ("set.npz (300 images)" in err.getvalue()) is shown, err.getvalue()
    assert ("B/s" in err.getvalue()) is shown


def test_token_and_bad_input(server: LiveServer, api: Client) -> None:
    with Client(server.url) as anonymous, pytest.raises(ServiceError) as raised:
        anonymous.generate(1, 1)
    assert raised.value.status == 401 and raised.value.field == "Authorization"
    for call, field in (
        (lambda: api.generate(1, 0), "n"),
        (lambda: api.generate("Sneaker", 1), "label"),
        (lambda: api.dataset(0), "per_label"),
        (lambda: api.generate(1, 1, seed=-5), "seed"),
    ):
        with pytest.raises(ServiceError) as raised:
            call()
        assert raised.value.status == 422 and raised.value.field == field
        assert raised.value.detail.startswith(f"{field}:")


def test_async_client(server: LiveServer, tmp_path: Path) -> None:
    x, y = _npz(server, {"per_label": 20, "labels": [5, 6], "seed": 9})
    first = _npz(server, {"per_label": 20, "labels": [5, 6], "seed": 9, "order": "by_class"})[0][:4]

    async def main() -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]], tuple[np.ndarray, np.ndarray]]:
        async with AsyncClient(server.url, token=TOKEN) as api:
            images = await api.generate(5, 4, seed=9)
            batches = [b async for b in api.iter_dataset(20, labels=[5, 6], seed=9, batch_size=16)]
            await api.save_dataset(tmp_path / "set.npz", 20, labels=[5, 6], seed=9, progress=False)
            return images, batches, await api.dataset(20, labels=[5, 6], seed=9, version=1)

    images, batches, v1 = asyncio.run(main())
    saved = np.load(tmp_path / "set.npz")
    assert np.array_equal(saved["x"], x) and np.array_equal(saved["y"], y)
    assert np.array_equal(images, first)
    assert np.array_equal(np.concatenate([b[0] for b in batches]), x)
    assert np.array_equal(np.concatenate([b[1] for b in batches]), y)
    assert not np.array_equal(v1[0], x) and np.array_equal(v1[1], y)


def test_tf_data_adapter(server: LiveServer, api: Client) -> None:
    tf = pytest.importorskip(
        "tensorflow", reason="the tf.data adapter needs TensorFlow (the dev install has it)"
    )
    from cgan_client import tf_data

    x, y = _npz(server, {"per_label": 30, "labels": [1, 8], "seed": 2, "version": 2})
    ds = tf_data.dataset(api, 30, labels=[1, 8], seed=2, batch_size=25)
    assert ds.element_spec[0].shape.as_list() == [None, 28, 28] and ds.element_spec[0].dtype == tf.uint8
    assert int(ds.cardinality()) == 3  # known: Keras sizes the epoch from it
    for _ in range(2):  # each pass streams again, the same data for the same seed
        batches = [(bx.numpy(), by.numpy()) for bx, by in ds]
        assert [len(b[0]) for b in batches] == [25, 25, 10]
        assert np.array_equal(np.concatenate([b[0] for b in batches]), x)
        assert np.array_equal(np.concatenate([b[1] for b in batches]), y)
    default = tf_data.dataset(api, 30, labels=[1, 8], seed=2)
    first = next(iter(default))[1].numpy()
    assert len(first) == 32 and sorted(np.bincount(first)[[1, 8]]) == [16, 16], "mixed batches of 32"
    assert int(default.cardinality()) == 2


def test_tf_data_endless_passes_continue_the_seeds(server: LiveServer, api: Client) -> None:
    tf = pytest.importorskip("tensorflow", reason="the tf.data adapter needs TensorFlow")
    from cgan_client import tf_data

    ds = tf_data.dataset(api, 5, labels=[3, 4], seed=100, batch_size=4, endless=True)
    assert int(ds.cardinality()) == int(tf.data.INFINITE_CARDINALITY)
    got = np.concatenate([bx.numpy() for bx, _ in ds.take(8)])  # 32 images: three passes of 10, and more
    passes = [_npz(server, {"per_label": 5, "labels": [3, 4], "seed": 100 + 10 * k})[0] for k in range(4)]
    assert np.array_equal(got, np.concatenate(passes)[:32])
    seeds = np.concatenate(
        [_seeds(server, {"per_label": 5, "labels": [3, 4], "seed": 100 + 10 * k}) for k in range(3)]
    )
    assert sorted(seeds.tolist()) == list(range(100, 130)), "no seed twice"


def test_adapters_refuse_bad_arguments_before_training(server: LiveServer, api: Client) -> None:
    pytest.importorskip("tensorflow", reason="the tf.data adapter needs TensorFlow")
    from cgan_client import tf_data

    for kwargs, field in (
        ({"order": "random"}, "order"),
        ({"batch_size": 0}, "batch_size"),
        ({"endless": "yes"}, "endless"),
    ):
        with pytest.raises(ValueError, match=f"^{field}: "):
            tf_data.dataset(api, 5, **kwargs)
    for per_label, kwargs, field in (
        (0, {}, "per_label"),
        (5, {"labels": [3, 99]}, "labels[1]"),
        (5, {"seed": -1}, "seed"),
    ):
        with pytest.raises(ServiceError) as refused:
            tf_data.dataset(api, per_label, **kwargs)
        assert refused.value.status == 422 and refused.value.field == field


def test_torch_adapter(server: LiveServer, api: Client) -> None:
    torch = pytest.importorskip(
        "torch", reason="torch is not installed: the PyTorch adapter is untested here"
    )
    from cgan_client.torch_data import ServiceDataset

    x, y = _npz(server, {"per_label": 10, "labels": [4], "seed": 1})
    data = ServiceDataset(api.config, 10, labels=[4], seed=1, batch_size=4)
    batches = list(torch.utils.data.DataLoader(data, batch_size=None))
    assert len(data) == 3 and [len(b[0]) for b in batches] == [4, 4, 2]
    assert np.array_equal(torch.cat([b[0] for b in batches]).numpy(), x)
    assert np.array_equal(torch.cat([b[1] for b in batches]).numpy(), y)


def test_torch_workers_share_a_pass_without_duplicates(server: LiveServer, api: Client) -> None:
    torch = pytest.importorskip(
        "torch", reason="torch is not installed: the PyTorch adapter is untested here"
    )
    from cgan_client.torch_data import ServiceDataset

    data = ServiceDataset(api.config, 10, labels=[2, 5, 6], batch_size=4)  # 30 images, 8 batches, no seed
    torch.manual_seed(0)
    loader = torch.utils.data.DataLoader(data, batch_size=None, num_workers=3)
    epoch = [(bx.numpy(), by.numpy()) for bx, by in loader]
    assert len(epoch) == len(data) == 8 and sum(len(b[0]) for b in epoch) == 30
    pixels = {bx[i].tobytes() for bx, _ in epoch for i in range(len(bx))}
    assert len(pixels) == 30, "every image once"
    assert sorted(np.concatenate([by for _, by in epoch]).tolist()) == [2] * 10 + [5] * 10 + [6] * 10
    again = {bx[i].numpy().tobytes() for bx, _ in loader for i in range(len(bx))}
    assert len(again) == 30 and again != pixels, "each epoch draws a fresh set"
    endless = ServiceDataset(api.config, 2, labels=[2, 5], batch_size=2, endless=True)
    stream = iter(torch.utils.data.DataLoader(endless, batch_size=None, num_workers=2))
    seen = [next(stream)[0].numpy() for _ in range(12)]
    assert len({image.tobytes() for batch in seen for image in batch}) == 24, "passes never repeat"


# --- a real 429: one slot, no queue, and a stream that holds the slot -----------------------------------


def _rejections(url: str) -> float:
    families = text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=5).text)
    return sum(
        s.value
        for f in families
        if f.name == "cgan_http_requests_rejected"
        for s in f.samples
        if s.name.endswith("_total") and s.labels.get("reason") == "overload"
    )


def test_retry_honours_retry_after_on_a_real_429(models: Path, tmp_path: Path) -> None:
    server = LiveServer(
        models,
        tmp_path / "server.log",
        API_TOKEN=TOKEN,
        WORKERS="1",  # one slot in all: workers would each admit one (tests/service/test_workers.py)
        MAX_CONCURRENCY="1",
        MAX_QUEUE="0",
        RETRY_AFTER_SECONDS="1",
    )
    admitted, release = threading.Event(), threading.Event()

    def hold_the_slot() -> None:
        # 100k images (78 MB) into a small receive buffer that is never drained: the server cannot finish the
        # response, so the only slot stays taken until we hang up.
        transport = httpx.HTTPTransport(socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)])
        with (
            httpx.Client(base_url=server.url, headers=AUTH, transport=transport, timeout=30) as holder,
            holder.stream("POST", "/dataset", json={"per_label": 10_000, "seed": 0}) as response,
        ):
            assert response.status_code == 200
            raw = response.iter_raw()  # kept: a dropped iterator closes the connection when collected
            next(raw)
            admitted.set()
            release.wait(30)

    thread = threading.Thread(target=hold_the_slot)
    thread.start()
    try:
        assert admitted.wait(30)
        with Client(server.url, token=TOKEN, retries=0) as no_retries, pytest.raises(ServiceError) as raised:
            no_retries.generate(1, 2, seed=0)
        assert raised.value.status == 429 and raised.value.detail.startswith("overloaded")
        assert _rejections(server.url) == 1

        def release_after_the_next_rejection() -> None:
            deadline = time.monotonic() + 30
            while _rejections(server.url) < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            release.set()

        releaser = threading.Thread(target=release_after_the_next_rejection)
        releaser.start()
        start = time.monotonic()
        with Client(server.url, token=TOKEN, retries=5) as patient:
            images = patient.generate(1, 2, seed=0)
        waited = time.monotonic() - start
        releaser.join(30)
        assert images.shape == (2, 28, 28)
        rejected = _rejections(server.url)
        # Refused at least once, then served after waiting the Retry-After (1 s) before each retry.
        assert rejected >= 2 and waited >= 0.9 * (rejected - 1), (rejected, waited)
    finally:
        release.set()
        thread.join(30)
        server.stop()


@pytest.fixture(scope="module")
def codes_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A model with two style codes (slant in [-2, 2], c1 in [-1, 1]) behind the token."""
    root = tmp_path_factory.mktemp("client-codes") / "models"
    root.mkdir()
    write_version(root, "info", 1, num_codes=2)
    running = LiveServer(root, root.parent / "server.log", API_TOKEN=TOKEN)
    yield running
    running.stop()


def test_codes_and_traversal(codes_server: LiveServer) -> None:
    def npy(**body: object) -> np.ndarray:
        return np.load(io.BytesIO(_direct(codes_server, "/generate", {"format": "npy", **body}).content))

    with Client(codes_server.url, token=TOKEN, timeout=30) as api:
        shared = api.generate(3, 4, seed=1, codes=(1.5, -0.5))
        assert np.array_equal(shared, npy(label=3, n=4, seed=1, codes=[1.5, -0.5]))
        rows = np.array([[0, 0], [-2, 1]], dtype=np.float32)  # an array works as well as lists
        assert np.array_equal(
            api.generate(3, 2, seed=1, codes=rows), npy(label=3, n=2, seed=1, codes=rows.tolist())
        )

        grid = api.traverse(3, "slant", 2, steps=4, seed=5)
        assert grid.shape == (2, 4, 28, 28)
        flat = npy(label=3, n=2, seed=5, traverse={"code": "slant", "steps": 4})
        assert np.array_equal(grid.reshape(flat.shape), flat)

        x, _ = api.dataset(3, labels=[1], seed=2, codes=[0.0, 1.0], order="by_class")
        assert np.array_equal(x, npy(label=1, n=3, seed=2, codes=[0.0, 1.0]))
        with pytest.raises(ServiceError) as refused:
            api.generate(3, 2, codes=[3.0, 0.0])
        assert refused.value.status == 422 and refused.value.field == "codes[0]"

    async def main() -> np.ndarray:
        async with AsyncClient(codes_server.url, token=TOKEN) as api:
            return await api.traverse(3, 1, 2, steps=3, seed=5, codes=[0.5, 0.0])

    swept = asyncio.run(main())
    flat = npy(label=3, n=2, seed=5, codes=[0.5, 0.0], traverse={"code": 1, "steps": 3})
    assert np.array_equal(swept.reshape(flat.shape), flat)
