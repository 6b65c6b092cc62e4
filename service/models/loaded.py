"""One loaded model version: its card, its onnxruntime sessions (and its judge's), and the one way the
service makes images with it (:meth:`LoadedModel.generate`). Made by :class:`service.models.loader.Loader`,
kept by :class:`service.models.registry.ModelRegistry`."""

from __future__ import annotations

import dataclasses
import functools
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from cgan_contract import ModelCard, runner
from service.metrics import Metrics


@functools.cache
def pieces(threads: int) -> ThreadPoolExecutor:
    """The process's pool for running a large batch's pieces at once (onnxruntime releases the GIL)."""
    return ThreadPoolExecutor(threads, thread_name_prefix="generate-piece")


@dataclass(frozen=True, eq=False)
class LoadedModel:
    name: str
    version: int
    path: Path
    card: ModelCard
    session: Any = field(repr=False)  # onnxruntime.InferenceSession
    loaded_at: datetime
    #: Where each run is timed and counted per model; None: nowhere (cgan-bulk, which serves no metrics).
    metrics: Metrics | None = field(repr=False)
    #: Which root it came from: "models_dir" or "bundled" (see ``Settings.model_roots``).
    source: str = "models_dir"
    #: The session the /generate lanes share (``Settings.lane_threads`` each); None: they use ``session``.
    lane_session: Any = field(default=None, repr=False)
    #: The judge's onnxruntime session when the card declares one (``judge.onnx``), else None.
    judge: Any = field(default=None, repr=False)
    #: Images per onnxruntime run at most; a longer batch runs in pieces (``Settings.run_max_images``).
    run_images: int | None = None

    def __post_init__(self) -> None:
        # Resolved once: a labelled child costs a dict lookup and a lock per request otherwise.
        metrics, version = self.metrics, str(self.version)
        object.__setattr__(self, "_latency", metrics and metrics.inference_seconds.labels(self.name, version))
        object.__setattr__(self, "_images", metrics and metrics.images.labels(self.name, version))
        outcomes = {
            ok: metrics and metrics.model_requests.labels(self.name, version, "success" if ok else "fail")
            for ok in (True, False)
        }
        object.__setattr__(self, "_requests", outcomes)
        # Never ``self``: a model referring to itself is freed only by the cyclic GC, so every replaced
        # version (its onnxruntime sessions, megabytes) outlived its last request until a collection.
        twin = None
        if self.lane_session is not None:
            twin = dataclasses.replace(self, session=self.lane_session, lane_session=None)
        object.__setattr__(self, "_on_lanes", twin)

    def generate(
        self,
        labels: np.ndarray,
        seeds: np.ndarray | None = None,
        codes: np.ndarray | None = None,
        truncation: float | None = None,
        *,
        z: np.ndarray | None = None,
        parallel: int = 1,
    ) -> np.ndarray:
        """``[n, H, W, C]`` uint8 for int64 ``labels`` and uint64 ``seeds``, or the caller's float32 noise
        ``z`` ``[n, latent_dim]`` instead of seeds; blocking: keep off the loop. ``parallel`` > 1 runs that
        many of its pieces (``run_images`` each) at once, for a large batch on a one-thread session: two
        one-thread runs make ~1.9x the images of one two-thread run of the same pieces (BENCHMARKS.md).

        Every image the service makes comes through here (:func:`cgan_contract.runner.generate`), timed and
        counted per model version. For a model with style codes, float32 ``codes`` ``[n, k]`` replace the
        seed rule's codes (with ``z`` they are required). ``truncation`` redraws noise entries beyond it
        (the contract's rule, still a function of each seed).
        """
        start = time.perf_counter()
        images = runner.generate(
            self.session,
            labels,
            seeds,
            self.card.latent_dim,
            self.run_images,
            z=z,
            code_ranges=self.card.code_ranges,
            codes=codes,
            truncation=truncation,
            map_pieces=map if parallel <= 1 else pieces(parallel).map,
        )
        if self._latency is not None:
            self._latency.observe(time.perf_counter() - start)
            self._images.inc(len(labels))
        return images

    def served(self, seconds: float, ok: bool) -> None:
        """Count a request this version answered (``ok``) or failed, and its time in the data plane."""
        child = self._requests[ok]  # type: ignore[attr-defined]
        if child is not None:
            child.observe(seconds)

    def classify(self, images: np.ndarray) -> np.ndarray:
        """The judge's probabilities float32 ``[n, classes]`` for ``[n, H, W, C]`` uint8 images; blocking."""
        if self.judge is None:
            raise ValueError(f"model {self.name} v{self.version} has no judge")
        return runner.classify(self.judge, images, self.run_images)

    @property
    def on_lanes(self) -> LoadedModel:
        """This model on the session the /generate lanes share (itself when it has no lane session)."""
        return self._on_lanes or self  # type: ignore[attr-defined]
