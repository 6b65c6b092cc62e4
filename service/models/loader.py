"""Loading one model version: read its files (bounded), verify them against the card and the contract, open
and warm its sessions. The registry loads every version it serves through a :class:`Loader`; ``cgan-bulk``
loads the one version a job names through one too, with no registry around it.

Files are read by :class:`BoundedReader`: regular files only (a FIFO would block the reader forever), at
most MAX_MODEL_BYTES (a larger file is refused on its size, unread), on a daemon thread the caller waits for
at most MODEL_READ_TIMEOUT_SECONDS (:mod:`service.models.bounded`). A read that hangs (a stalled network
filesystem) refuses that version as ``timeout``, is never started twice, and holds up neither the other
models nor shutdown.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

import cgan_contract as contract
from cgan_contract import ModelCard, runner
from service.config import Settings
from service.metrics import Metrics
from service.models.bounded import BoundedCalls, Stalled
from service.models.loaded import LoadedModel


class ModelRefused(Exception):
    """A version directory that cannot be served; ``reason`` is a short code used as a metric label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _read_bounded(path: Path, limit: int) -> bytes:
    """The whole of a regular file of at most ``limit`` bytes; blocking (see :class:`BoundedReader`)."""
    # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer; regular files ignore it.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ModelRefused("unreadable", f"{path.name} is not a regular file")
        # Refused on its size before a byte is read: a sparse or huge file costs no memory to turn down.
        if st.st_size > limit:
            raise _too_large(path, limit)
        data = f.read(limit + 1)  # the size may grow after fstat
    if len(data) > limit:
        raise _too_large(path, limit)
    return data


def _too_large(path: Path, limit: int) -> ModelRefused:
    return ModelRefused("too_large", f"{path.name} is larger than MAX_MODEL_BYTES ({limit} bytes)")


class BoundedReader:
    """Reads files through :class:`~service.models.bounded.BoundedCalls`, waiting for each at most
    ``timeout`` seconds; a read still running from an earlier scan is refused at once, not started again."""

    def __init__(self, limit: int, timeout: float) -> None:
        self.limit = limit
        self.timeout = timeout
        self._calls = BoundedCalls(timeout, "model-read")

    def read(self, path: Path) -> bytes:
        try:
            # Looked up when called, so a test can stand a hanging read in for it.
            return self._calls.call(path, lambda: _read_bounded(path, self.limit))
        except Stalled as e:
            if e.again:
                detail = f"an earlier read of {path.name} still has not returned"
            else:
                detail = f"reading {path.name} took longer than MODEL_READ_TIMEOUT_SECONDS ({self.timeout}s)"
            raise ModelRefused("timeout", detail) from None


def _validation_summary(error: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'card'}: {e['msg']}" for e in error.errors()[:5])


def _read_card(name: str, version: int, version_dir: Path, reader: BoundedReader) -> ModelCard:
    try:
        card = ModelCard.model_validate_json(reader.read(version_dir / contract.CARD_FILE))
    except FileNotFoundError:
        raise ModelRefused("incomplete", f"{contract.CARD_FILE} is missing") from None
    except ValidationError as e:
        raise ModelRefused("card", f"{contract.CARD_FILE} is invalid: {_validation_summary(e)}") from None
    except (OSError, ValueError) as e:
        raise ModelRefused("unreadable", f"{contract.CARD_FILE} is unreadable: {e}") from None
    if card.contract_version != contract.CONTRACT_VERSION:
        raise ModelRefused(
            "contract",
            f"card contract_version {card.contract_version}; the server speaks {contract.CONTRACT_VERSION}",
        )
    if (card.name, card.version) != (name, version):
        raise ModelRefused("card", f"card says {card.name}/{card.version} but sits in {name}/{version}")
    inputs, outputs = contract.signature(card.latent_dim, card.image_shape, len(card.codes))
    if card.inputs != inputs or card.outputs != outputs:
        raise ModelRefused("signature", "card inputs/outputs do not match its latent_dim and image_shape")
    return card


def _read_hashed(reader: BoundedReader, path: Path, sha256: str, missing: str = "") -> bytes:
    """A file the card hashes, refused unless its bytes have ``sha256``: the very bytes then given to
    onnxruntime, so a file swapped between hashing and loading is caught. ``missing`` ends the message of a
    missing file."""
    try:
        data = reader.read(path)
    except FileNotFoundError:
        raise ModelRefused("incomplete", f"{path.name} is missing{missing}") from None
    except OSError as e:
        raise ModelRefused("unreadable", f"{path.name} is unreadable: {e}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise ModelRefused("sha256", f"sha256 of {path.name} is {digest}, the card says {sha256}")
    return data


def _check_tensor(kind: str, actual: Any, spec: contract.TensorSpec) -> None:
    if actual.type != runner.ORT_TYPES[spec.dtype]:
        raise ModelRefused(
            "signature", f"{kind} {spec.name!r} is {actual.type}, the contract needs {spec.dtype}"
        )
    if len(actual.shape) != len(spec.shape):
        raise ModelRefused(
            "signature", f"{kind} {spec.name!r} has shape {actual.shape}, the card says {spec.shape}"
        )
    for dim, want in zip(actual.shape, spec.shape, strict=True):
        if want is None and isinstance(dim, int):
            raise ModelRefused("signature", f"{kind} {spec.name!r} has a fixed batch size {dim}")
        # A symbolic non-batch dimension cannot be checked here; the warm-up run checks the real output.
        if want is not None and isinstance(dim, int) and dim != want:
            raise ModelRefused(
                "signature", f"{kind} {spec.name!r} has shape {actual.shape}, the card says {spec.shape}"
            )


def _check_session(session: Any, card: ModelCard) -> None:
    _check_io(session, card.inputs, card.outputs)


def _check_io(session: Any, inputs: list[contract.TensorSpec], outputs: list[contract.TensorSpec]) -> None:
    for kind, actual, specs in (
        ("input", session.get_inputs(), inputs),
        ("output", session.get_outputs(), outputs),
    ):
        names = sorted(a.name for a in actual)
        if names != sorted(s.name for s in specs):
            raise ModelRefused(
                "signature", f"{kind}s are {names}, the contract needs {sorted(s.name for s in specs)}"
            )
        by_name = {a.name: a for a in actual}
        for spec in specs:
            _check_tensor(kind, by_name[spec.name], spec)


def _warm_up(model: LoadedModel) -> None:
    """A real run over the first and last class: checks what static shapes cannot, pays first-run costs.

    On every session the model serves from, so the first /generate on the lanes' session is not the one
    that pays them."""
    labels = np.array([0, model.card.num_classes - 1], dtype=np.int64)
    seeds = np.array([0, 1], dtype=np.uint64)
    want = (2, *model.card.image_shape)
    for session in (model.session, model.lane_session):
        if session is None:
            continue
        try:
            images = runner.generate(
                session, labels, seeds, model.card.latent_dim, code_ranges=model.card.code_ranges
            )
        except Exception as e:  # onnxruntime raises its own exception types for every graph failure
            raise ModelRefused("warmup", f"warm-up run failed: {str(e).splitlines()[0]}") from None
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.shape != want:
            got = getattr(images, "shape", None), getattr(images, "dtype", None)
            raise ModelRefused("warmup", f"warm-up output is {got}, the card says {want} uint8")


def _warm_up_judge(judge: Any, model: LoadedModel) -> None:
    """The judge on two of the generator's images: probabilities of the right shape that sum to one."""
    card = model.card
    labels = np.array([0, card.num_classes - 1], dtype=np.int64)
    images = runner.generate(
        model.session, labels, np.array([0, 1], np.uint64), card.latent_dim, code_ranges=card.code_ranges
    )
    try:
        probabilities = runner.classify(judge, images)
    except Exception as e:  # onnxruntime raises its own exception types for every graph failure
        raise ModelRefused(
            "judge", f"{contract.JUDGE_FILE} warm-up run failed: {str(e).splitlines()[0]}"
        ) from None
    want = (2, card.num_classes)
    if (
        not isinstance(probabilities, np.ndarray)
        or probabilities.dtype != np.float32
        or probabilities.shape != want
    ):
        got = getattr(probabilities, "shape", None), getattr(probabilities, "dtype", None)
        raise ModelRefused(
            "judge", f"{contract.JUDGE_FILE} output is {got}, the contract needs {want} float32"
        )
    sums = probabilities.sum(axis=1)
    if not np.isfinite(probabilities).all() or probabilities.min() < 0 or np.abs(sums - 1).max() > 1e-3:
        raise ModelRefused("judge", f"{contract.JUDGE_FILE} output is not probabilities (rows sum to {sums})")


class Loader:
    """Reads, verifies and warms one version directory at a time (:meth:`load`); keeps nothing it loaded.

    ``threads`` onnxruntime threads for the session a lone caller runs on (0: onnxruntime's default);
    ``lane_threads``, when given, a second session of that many threads that the /generate lanes share;
    ``run_images`` images per onnxruntime run at most; ``metrics`` where the loaded models count their runs.
    """

    def __init__(
        self,
        *,
        threads: int,
        lane_threads: int | None = None,
        spinning: bool = False,
        run_images: int | None = None,
        max_bytes: int,
        read_timeout: float,
        metrics: Metrics | None = None,
    ) -> None:
        self.threads = threads
        self.lane_threads = lane_threads
        self.spinning = spinning
        self.run_images = run_images
        self.metrics = metrics
        self.reader = BoundedReader(max_bytes, read_timeout)

    @classmethod
    def from_settings(
        cls, settings: Settings, metrics: Metrics | None = None, *, lanes: bool = True
    ) -> Loader:
        """A loader as ``settings`` say (threads, spinning, run size, read limits); ``lanes``: also a session
        for the /generate lanes when their thread count differs from a lone caller's."""
        # One single-threaded run per lane keeps every core busy without onnxruntime's per-run thread
        # hand-offs (BENCHMARKS.md, "Both cores"); a lone stream keeps the session with every core.
        lane_threads = settings.lane_threads
        return cls(
            threads=settings.intra_op_threads,
            lane_threads=lane_threads if lanes and lane_threads != settings.intra_op_threads else None,
            spinning=settings.ort_allow_spinning,
            run_images=settings.run_max_images or None,
            max_bytes=settings.max_model_bytes,
            read_timeout=settings.model_read_timeout_seconds,
            metrics=metrics,
        )

    def read_card(self, name: str, version: int, version_dir: Path) -> ModelCard:
        """The card of ``name`` v``version``: valid, of this contract, with a consistent signature."""
        return _read_card(name, version, version_dir, self.reader)

    def load(self, name: str, version: int, version_dir: Path, source: str = "models_dir") -> LoadedModel:
        """Load, verify and warm one version directory; :class:`ModelRefused` says why it cannot be served."""
        card = self.read_card(name, version, version_dir)
        data = _read_hashed(self.reader, version_dir / contract.MODEL_FILE, card.sha256)
        try:
            session = runner.open_session(data, threads=self.threads, spinning=self.spinning)
            lane_session = None
            if self.lane_threads is not None:
                lane_session = runner.open_session(data, threads=self.lane_threads, spinning=self.spinning)
        except Exception as e:  # onnxruntime's exception classes are not part of its public API
            raise ModelRefused(
                "onnx", f"onnxruntime cannot load {contract.MODEL_FILE}: {str(e).splitlines()[0]}"
            ) from None
        _check_session(session, card)
        model = LoadedModel(
            name,
            version,
            version_dir,
            card,
            session,
            datetime.now(UTC),
            self.metrics,
            source,
            lane_session,
            run_images=self.run_images,
        )
        _warm_up(model)
        if card.judge is not None:
            model = dataclasses.replace(model, judge=self.load_judge(model, card))
        return model

    def load_judge(self, model: LoadedModel, card: ModelCard) -> Any:
        """The verified, warmed session of the judge ``card`` declares beside ``model``'s generator.

        Held to the generator's rules: the card's hash, the contract's signature, a real run. A card that
        declares a judge it cannot back is refused whole, like a generator that does not match its card.
        """
        declared = card.judge
        assert declared is not None
        name = contract.JUDGE_FILE
        inputs, outputs = contract.judge_signature(card.image_shape, card.num_classes)
        if declared.inputs != inputs or declared.outputs != outputs:
            raise ModelRefused(
                "judge", "card's judge inputs/outputs do not match its image_shape and classes"
            )
        data = _read_hashed(self.reader, model.path / name, declared.sha256, " (the card declares a judge)")
        try:
            judge = runner.open_session(data, threads=self.threads, spinning=self.spinning)
        except Exception as e:  # onnxruntime's exception classes are not part of its public API
            raise ModelRefused("judge", f"onnxruntime cannot load {name}: {str(e).splitlines()[0]}") from None
        _check_io(judge, inputs, outputs)
        _warm_up_judge(judge, model)
        return judge
