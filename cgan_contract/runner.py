"""Running a contract generator: the one place an ONNX generator turns labels and seeds (or given noise)
into images.

The service serves with it and the trainer's export check and evaluation measure with it, so what is
evaluated is exactly what is served. :func:`generate` takes any object with onnxruntime's ``run`` and needs
numpy only; :func:`open_session` imports onnxruntime when called (both the service and the train extras
install it), so importing this module stays as light as the rest of the contract.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from cgan_contract.noise import codes_for_seeds, truncated_noise_for_seeds
from cgan_contract.tensors import (
    INPUT_CODES,
    INPUT_LABEL,
    INPUT_NOISE,
    JUDGE_INPUT,
    JUDGE_OUTPUT,
    OUTPUT_IMAGE,
)

#: onnxruntime's names for the contract's dtypes (``NodeArg.type``).
ORT_TYPES = {"float32": "tensor(float)", "int64": "tensor(int64)", "uint8": "tensor(uint8)"}
_OUTPUTS = [OUTPUT_IMAGE]


class Session(Protocol):
    def run(self, output_names: list[str], input_feed: dict[str, np.ndarray]) -> list[Any]: ...


def open_session(model: bytes | str | Path, *, threads: int = 0, spinning: bool | None = None) -> Any:
    """An onnxruntime CPU session for a generator (``model`` as bytes or a path), quiet below errors.

    ``threads`` > 0 pins the intra-op threads and runs the graph sequentially (what a server sharing its
    cores wants); 0 leaves onnxruntime's defaults. ``spinning`` sets whether idle ORT threads spin.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads > 0:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if spinning is not None:
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def generate(
    session: Session,
    labels: np.ndarray,
    seeds: np.ndarray | None = None,
    latent_dim: int | None = None,
    batch_size: int | None = None,
    *,
    z: np.ndarray | None = None,
    code_ranges: list[tuple[float, float]] | None = None,
    codes: np.ndarray | None = None,
    truncation: float | None = None,
    map_pieces: Callable[..., Iterable[np.ndarray]] = map,
) -> np.ndarray:
    """The generator's output for int64 ``labels`` and, per image, uint64 ``seeds`` or the caller's noise: the
    one way from labels to images.

    With ``seeds`` image i has label i and the noise of seed i
    (:func:`~cgan_contract.noise.truncated_noise_for_seeds`, ``latent_dim`` wide; ``truncation`` redraws
    entries beyond it). With ``z`` (float32 ``[N, latent_dim]``) instead, image i has the noise ``z[i]``.
    For a generator with style codes pass ``code_ranges`` (the card's, in input order): image i's codes are
    then ``codes[i]`` when given, else seed i's (:func:`~cgan_contract.noise.codes_for_seeds`); with ``z``
    the codes must be given. ``batch_size`` bounds the images per onnxruntime run (memory; each piece's noise
    is drawn as it runs); rows do not depend on it. ``map_pieces`` runs the pieces (``map``'s signature,
    results in order): the built-in one after another, a thread pool's several at once. Returns what the
    graph returns, uint8 ``[N, H, W, C]`` for a generator that keeps the contract.
    """
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if (seeds is None) == (z is None):
        raise ValueError("give either seeds or z")
    if seeds is not None:
        seeds = np.asarray(seeds, dtype=np.uint64).reshape(-1)
        if latent_dim is None:
            raise ValueError("seeds need latent_dim, the width of the noise they are turned into")
        if code_ranges and codes is None:
            codes = codes_for_seeds(seeds, latent_dim, code_ranges)
    elif truncation is not None:
        raise ValueError("truncation redraws the noise of seeds; z is the caller's noise as given")
    elif code_ranges and codes is None:
        raise ValueError(f"a generator with {len(code_ranges)} style codes takes codes with z")
    step = batch_size or max(len(labels), 1)

    def one(start: int) -> np.ndarray:
        piece = slice(start, start + step)
        if seeds is not None:
            noise = truncated_noise_for_seeds(seeds[piece], latent_dim, truncation)  # type: ignore[arg-type]
        else:
            noise = z[piece]  # type: ignore[index]
        return run(session, labels[piece], noise, None if codes is None else codes[piece])

    starts = range(0, max(len(labels), 1), step)
    parts = [one(0)] if len(starts) == 1 else list(map_pieces(one, starts))
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def run(session: Session, labels: np.ndarray, z: np.ndarray, codes: np.ndarray | None = None) -> np.ndarray:
    """The generator's output for int64 ``labels`` ``[N]``, float32 noise ``z`` ``[N, latent_dim]`` and, for
    a generator with style codes, float32 ``codes`` ``[N, k]``."""
    feed = {INPUT_NOISE: z, INPUT_LABEL: labels}
    if codes is not None:
        feed[INPUT_CODES] = np.ascontiguousarray(codes, dtype=np.float32)
    return session.run(_OUTPUTS, feed)[0]


def classify(session: Session, images: np.ndarray, batch: int | None = None) -> np.ndarray:
    """A judge's class probabilities float32 ``[N, classes]`` for the generator's uint8 ``images``
    ``[N, H, W, C]`` (:func:`~cgan_contract.tensors.judge_signature`), run ``batch`` images at a time at
    most: onnxruntime's arena grows to the largest run it has seen and keeps it, so a judge run over a
    filtered pick's 1,024 candidates at once held ~355 MiB a worker for good."""
    images = np.ascontiguousarray(images, dtype=np.uint8)
    if batch is None or len(images) <= batch:
        return session.run([JUDGE_OUTPUT], {JUDGE_INPUT: images})[0]
    parts = [
        session.run([JUDGE_OUTPUT], {JUDGE_INPUT: images[i : i + batch]})[0]
        for i in range(0, len(images), batch)
    ]
    return np.concatenate(parts)
