"""Work stops when nobody wants it any more, and holds its admission slot until it has (issue #32 row 3).

A filtered ``/dataset`` judges candidates before its first byte: when its client leaves, or the service
stops, it must stop making them within a batch, and keep its slot until it has; a streaming archive whose
client leaves keeps its slot until the batch in progress is done. The model's generate is counted, and
records the slots taken at each call, so the tests see both the work and the admission it ran under.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from cgan_testing.asgi import post_scope
from cgan_testing.fakes import build_judge
from cgan_testing.live_server import LiveServer
from service.models import LoadedModel

#: A judge that never reaches min_confidence 1.0: the pick judges 20 x per_label candidates, 64 at a time.
NEVER = {"per_label": 10_000, "labels": [0], "seed": 0, "min_confidence": 1.0}
#: Generate calls at most; the unfixed service made thousands (this bound ends its runaway thread).
RUNAWAY = 600


def _wait_for(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.005)


@pytest.fixture
def never_dir(tmp_path: Path, publish, generator_bytes: bytes) -> Path:
    root = tmp_path / "models"
    root.mkdir()
    judge = build_judge(target=0, pixel=None, confidence=0.5)
    publish(root, "digits", 1, onnx_bytes=generator_bytes, judge_bytes=judge)
    return root


class Calls:
    """Every generate call: the admission slots held while it ran. ``hold`` blocks calls from the
    ``hold_from``-th on until released."""

    def __init__(self) -> None:
        self.active: list[int] = []
        self.limiter = None
        self.hold_from: int | None = None
        self.held = threading.Event()
        self.release = threading.Event()

    def __len__(self) -> int:
        return len(self.active)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[Calls]:
    seen = Calls()
    original = LoadedModel.generate

    def counted(self: LoadedModel, *args: object, **kwargs: object) -> np.ndarray:
        assert len(seen) < RUNAWAY, "generation never stopped"
        seen.active.append(seen.limiter.active if seen.limiter is not None else -1)
        if seen.hold_from is not None and len(seen) >= seen.hold_from:
            seen.held.set()
            assert seen.release.wait(10), "the test never released the call"
        time.sleep(0.002)  # a real model's batch takes a while; keeps the runaway visible for a moment
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LoadedModel, "generate", counted)
    yield seen
    seen.release.set()


def _leaving_client(
    client: TestClient, body: dict, path: str = "/dataset"
) -> tuple[asyncio.Event, object, list[dict]]:
    """POST ``path`` through the whole app (guard included) from a client that hangs up when the returned
    event is set; returns (that event, the portal's future of the call, the messages sent to it)."""
    left = asyncio.Event()
    sent: list[dict] = []
    raw = json.dumps(body).encode()

    async def leaving() -> None:
        delivered = False

        async def receive() -> dict:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": raw, "more_body": False}
            await left.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            sent.append(message)

        scope = post_scope(
            path, [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(raw))], state={}
        )
        await client.app(scope, receive, send)  # type: ignore[arg-type]

    done = client.portal.start_task_soon(leaving)  # type: ignore[union-attr]
    return left, done, sent


def test_a_filtered_pick_stops_when_its_client_leaves_and_keeps_its_slot_until_then(
    never_dir: Path, open_client, calls: Calls, runtime
) -> None:
    with open_client(never_dir, dataset_batch=64, max_concurrency=1, max_queue=1) as client:
        limiter = calls.limiter = runtime(client).limiter
        left, done, sent = _leaving_client(client, NEVER)
        _wait_for(lambda: len(calls) >= 5)
        assert limiter.active == 1
        client.portal.call(left.set)  # type: ignore[union-attr]
        at_leave = len(calls)
        done.result(10)
        stopped = len(calls)
        time.sleep(0.3)  # dozens of batches, were any still being made
        assert len(calls) == stopped, f"{len(calls) - stopped} generate calls after the request ended"
        assert stopped - at_leave <= 2, "it stops within the batch in progress"
        assert all(active == 1 for active in calls.active), "every batch ran under the request's slot"
        assert limiter.active == 0
        assert not any(m["type"] == "http.response.start" for m in sent)
        # The slot is free again: a small archive is served at once.
        assert client.post("/dataset", json={"per_label": 1}).status_code == 200


def test_a_filtered_pick_stops_when_the_service_stops(
    never_dir: Path, open_client, calls: Calls, runtime
) -> None:
    with open_client(never_dir, dataset_batch=64) as client:
        answers: list = []
        asking = threading.Thread(target=lambda: answers.append(client.post("/dataset", json=NEVER)))
        asking.start()
        _wait_for(lambda: len(calls) >= 5)
        client.portal.call(runtime(client).stop)  # type: ignore[union-attr]  # what the lifespan's end runs
        asking.join(10)
        stopped = len(calls)
        time.sleep(0.3)
        assert len(calls) == stopped, f"{len(calls) - stopped} generate calls after the service stopped"
        assert not asking.is_alive()
        (answer,) = answers
        assert answer.status_code == 503, answer.text
        assert "shutting down" in answer.json()["detail"]


def test_a_stream_whose_client_leaves_keeps_its_slot_until_the_batch_in_progress_ends(
    models_dir: Path, open_client, calls: Calls, runtime
) -> None:
    with open_client(models_dir, dataset_batch=64, max_concurrency=1, max_queue=1) as client:
        limiter = calls.limiter = runtime(client).limiter
        calls.hold_from = 3  # the third batch blocks until the test says
        left, done, sent = _leaving_client(client, {"per_label": 1000, "seed": 0})
        assert calls.held.wait(10)
        client.portal.call(left.set)  # type: ignore[union-attr]
        time.sleep(0.3)
        assert not done.done(), "the request ended while its batch was still being made"
        assert limiter.active == 1, "the slot was given back while its batch was still being made"
        calls.release.set()
        done.result(10)
        stopped = len(calls)
        time.sleep(0.3)
        # An archive makes its next batch while it encodes this one (DatasetPlan.generated): once the held
        # third batch ends the fourth is asked for, and the closing stream either cancels it before it starts
        # or waits for it before letting go of its slot. Nothing runs after that.
        assert stopped in (3, 4)
        assert len(calls) == stopped
        assert limiter.active == 0
        assert any(m["type"] == "http.response.start" and m["status"] == 200 for m in sent)


def test_a_filtered_generate_halts_when_its_client_leaves_and_keeps_its_slot_until_then(
    never_dir: Path, open_client, calls: Calls, runtime
) -> None:
    # n = 1024: up to 20 runs of 1024 candidates on a batcher lane.
    body = {"label": 0, "n": 1024, "seed": 0, "min_confidence": 1.0, "format": "npy"}
    with open_client(never_dir, max_concurrency=1, max_queue=1) as client:
        limiter = calls.limiter = runtime(client).limiter
        calls.hold_from = 2
        left, done, sent = _leaving_client(client, body, "/generate")
        assert calls.held.wait(10)
        client.portal.call(left.set)  # type: ignore[union-attr]
        time.sleep(0.3)
        assert not done.done(), "the request ended while its candidates were still being made"
        assert limiter.active == 1, "the slot was given back while its candidates were still being made"
        calls.release.set()
        done.result(10)
        stopped = len(calls)
        time.sleep(0.3)
        assert len(calls) == stopped == 2, "no run after the one in progress"
        assert limiter.active == 0
        assert not any(m["type"] == "http.response.start" for m in sent)
        assert client.post("/generate", json={"label": 1}).status_code == 200


def test_a_filtered_generate_halts_when_the_service_stops(
    never_dir: Path, open_client, calls: Calls, runtime
) -> None:
    body = {"label": 0, "n": 1024, "seed": 0, "min_confidence": 1.0}
    with open_client(never_dir) as client:
        calls.hold_from = 2
        answers: list = []
        asking = threading.Thread(target=lambda: answers.append(client.post("/generate", json=body)))
        asking.start()
        assert calls.held.wait(10)
        runtime(client).halting.set()  # what the end of the grace period and the lifespan's end set
        calls.release.set()
        asking.join(10)
        assert len(calls) == 2
        (answer,) = answers
        assert answer.status_code == 503 and "shutting down" in answer.json()["detail"], answer.text


@pytest.mark.slow
def test_sigterm_ends_a_filtered_pick_within_the_grace_period(tmp_path: Path, never_dir: Path) -> None:
    # One candidate a batch: the whole pick (200,000 candidates) would take minutes.
    server = LiveServer(never_dir, tmp_path / "server.log", DATASET_BATCH="1", SHUTDOWN_GRACE_SECONDS="1")
    try:
        answers: list = []

        def ask() -> None:
            with contextlib.suppress(httpx.TransportError):
                answers.append(httpx.post(f"{server.url}/dataset", json=NEVER, timeout=120))

        asking = threading.Thread(target=ask, daemon=True)
        asking.start()
        time.sleep(1.0)  # the pick is under way
        assert asking.is_alive()
        server.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        status = server.process.wait(30)
        took = time.monotonic() - signalled
        # No drain and a 1 s grace, whose end halts the pick (within a candidate): a 503, then the exit.
        assert took < 5, f"exited {took:.1f}s after SIGTERM"
        assert status == 0, server.log.read_text()
        asking.join(5)
        (answer,) = answers
        assert answer.status_code == 503 and "shutting down" in answer.json()["detail"], answer.text
        assert "Traceback" not in server.log.read_text()
    finally:
        server.stop()
