"""The model registry: finds versions under MODELS_DIR, verifies and warms them, swaps them in.

The registry mirrors the disk. Each name keeps its newest ``MODEL_VERSIONS`` (K) versions that pass every
check loaded; the newest of them serves requests that name no version, and a request may pin any loaded
one, so a retrain does not take yesterday's images away from a consumer that needs to reproduce them. A
newer version is loaded, verified and warmed off the event loop, then swapped in with one reference
assignment, so requests already holding an older :class:`LoadedModel` finish on it; the oldest of K+1 is
dropped. A refused version is remembered with a fingerprint of its files and retried only once those
change, so a half-copied directory gets loaded when the copy completes, without a log line every poll in
between. Removing the served version
directory drops it (and loads the next older one, to keep K); removing a whole model directory stops
serving that name. Versions are immutable: publish changes under a new version number.

The bundled models (package data, ``Settings.model_roots``) are scanned as a second root after MODELS_DIR:
the same rules pick the newest version of a name across both, and at equal version numbers MODELS_DIR wins,
so a trained model supersedes its bundled twin and the bundled one serves when MODELS_DIR has none.

The one exception to immutability is the card, which ``cgan-train evaluate`` rewrites in place to add its
quality section: a changed card of a loaded version is re-read, validated and swapped in if it still
describes the same bytes (sha256).

Files are read by :class:`BoundedReader`: regular files only (a FIFO would block the reader forever), at
most MAX_MODEL_BYTES, on a daemon thread the scan waits for at most MODEL_READ_TIMEOUT_SECONDS. A read that
hangs (a stalled network filesystem) refuses that version as ``timeout``, is never started twice, and holds
up neither the other models nor shutdown.

With DEFAULT_MODEL unset, the implicit default is pinned: the model served alone becomes the default and
stays it while it is served, whatever other models appear (see :meth:`ModelRegistry.default_name`).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import logging
import os
import stat
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

import cgan_contract as contract
from cgan_contract import ModelCard, runner
from service.config import Settings
from service.metrics import Metrics

log = logging.getLogger(__name__)


class ModelRefused(Exception):
    """A version directory that cannot be served; ``reason`` is a short code used as a metric label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, eq=False)
class LoadedModel:
    name: str
    version: int
    path: Path
    card: ModelCard
    session: Any = field(repr=False)  # onnxruntime.InferenceSession
    loaded_at: datetime
    metrics: Metrics = field(repr=False)
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
        object.__setattr__(self, "_latency", self.metrics.inference_seconds.labels(self.name))
        object.__setattr__(self, "_images", self.metrics.images.labels(self.name))
        twin = self
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
    ) -> np.ndarray:
        """``[n, H, W, C]`` uint8 for int64 ``labels`` and uint64 ``seeds``, or the caller's float32 noise
        ``z`` ``[n, latent_dim]`` instead of seeds; blocking: keep off the loop.

        Every image the service makes comes through here (:func:`cgan_contract.runner.generate`), timed and
        counted per model. For a model with style codes, float32 ``codes`` ``[n, k]`` replace the seed rule's
        codes (with ``z`` they are required). ``truncation`` redraws noise entries beyond it (the contract's
        rule, still a function of each seed).
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
        )
        self._latency.observe(time.perf_counter() - start)
        self._images.inc(len(labels))
        return images

    def classify(self, images: np.ndarray) -> np.ndarray:
        """The judge's probabilities float32 ``[n, classes]`` for ``[n, H, W, C]`` uint8 images; blocking."""
        if self.judge is None:
            raise ValueError(f"model {self.name} v{self.version} has no judge")
        return runner.classify(self.judge, images)

    @property
    def on_lanes(self) -> LoadedModel:
        """This model on the session the /generate lanes share (itself when it has no lane session)."""
        return self._on_lanes  # type: ignore[attr-defined]


def _fingerprint(version_dir: Path) -> tuple:
    """What changes while a version directory is still being written."""
    try:
        entries = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in version_dir.iterdir())
        return (version_dir.stat().st_mtime_ns, tuple(entries))
    except OSError:
        return ()


def _stamp(path: Path) -> tuple:
    """What changes when a file is rewritten (in place or by rename)."""
    try:
        st = path.stat()
    except OSError:
        return ()
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _read_bounded(path: Path, limit: int) -> bytes:
    """The whole of a regular file of at most ``limit`` bytes; blocking (see :class:`BoundedReader`)."""
    # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer; regular files ignore it.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ModelRefused("unreadable", f"{path.name} is not a regular file")
        data = f.read(limit + 1)  # the size may grow after fstat
    if max(st.st_size, len(data)) > limit:
        raise ModelRefused("too_large", f"{path.name} is larger than MAX_MODEL_BYTES ({limit} bytes)")
    return data


class BoundedReader:
    """Reads files on daemon threads and waits for each at most ``timeout`` seconds.

    A read still running from an earlier scan is not started again (refused at once), so a hung
    filesystem costs one thread per file, not one per scan; daemon threads never hold up process exit.
    """

    def __init__(self, limit: int, timeout: float) -> None:
        self.limit = limit
        self.timeout = timeout
        self._pending: dict[Path, concurrent.futures.Future[bytes]] = {}

    def read(self, path: Path) -> bytes:
        future = self._pending.get(path)
        if future is not None and not future.done():
            raise ModelRefused("timeout", f"an earlier read of {path.name} still has not returned")
        future = concurrent.futures.Future()
        self._pending[path] = future
        thread = threading.Thread(target=self._run, args=(path, future), name="model-read", daemon=True)
        thread.start()
        try:
            return future.result(self.timeout)
        except concurrent.futures.TimeoutError:
            detail = f"reading {path.name} took longer than MODEL_READ_TIMEOUT_SECONDS ({self.timeout}s)"
            raise ModelRefused("timeout", detail) from None
        finally:
            if future.done():
                self._pending.pop(path, None)

    def _run(self, path: Path, future: concurrent.futures.Future[bytes]) -> None:
        try:
            future.set_result(_read_bounded(path, self.limit))
        except BaseException as e:
            future.set_exception(e)


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


_ROOT_NAMES = {"models_dir": "MODELS_DIR", "bundled": "the bundled models"}
_FROM = {"models_dir": "", "bundled": " (bundled)"}


class ModelRegistry:
    """Name -> its loaded versions (newest first); :meth:`scan` keeps it in line with MODELS_DIR."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self._models: dict[str, LoadedModel] = {}
        self._versions: dict[str, dict[int, LoadedModel]] = {}
        #: version dir -> (fingerprint, reason code, message) of a refused version
        self._refused: dict[Path, tuple[tuple, str, str]] = {}
        #: version dir -> stamp of the card file it was served with (a rewrite changes it)
        self._card_stamps: dict[Path, tuple] = {}
        self._pinned: str | None = None
        self._scan_lock = threading.Lock()
        self.reader = BoundedReader(settings.max_model_bytes, settings.model_read_timeout_seconds)
        # Public (/readyz, 503 details): never a path or a loader message; those go to the log.
        self._problem = "no scan of MODELS_DIR has run yet"
        #: Model roots found absent, logged once (see scan).
        self._absent_roots: set[Path] = set()

    @property
    def models(self) -> Mapping[str, LoadedModel]:
        """Name -> its newest loaded version: what serves a request that names no version."""
        return self._models

    @property
    def loaded(self) -> Mapping[str, Mapping[int, LoadedModel]]:
        """Name -> version -> model, newest version first, at most MODEL_VERSIONS per name."""
        return self._versions

    @property
    def refusals(self) -> dict[str, str]:
        """``{"<name>/<version>": reason code}`` of the refused versions (``bundled/<name>/<version>`` for a
        bundled one), for /readyz; the messages, which name paths, are logged."""
        roots = self.settings.model_roots

        def public(path: Path) -> str:
            root, source = next(
                ((r, s) for r, s in roots if path.is_relative_to(r)), (path.parent.parent, "models_dir")
            )
            name = "/".join(path.relative_to(root).parts)
            return name if source == "models_dir" else f"{source}/{name}"

        return {public(path): reason for path, (_, reason, _) in self._refused.items()}

    def default_name(self) -> str | None:
        """DEFAULT_MODEL, or the pinned implicit default: the model that was once served alone, for as long
        as it is served. A second model appearing never moves it (requests that named none keep working);
        several models from the start give no implicit default (requests must name one)."""
        if self.settings.default_model:
            return self.settings.default_model
        pinned = self._pinned
        return pinned if pinned in self._models else None

    def readiness(self) -> tuple[bool, str | None]:
        """``(ready, reason)``: ready when a model is loaded and the configured default is among them."""
        models = self._models
        if not models:
            return False, self._problem
        default = self.settings.default_model
        if default and default not in models:
            return False, f"DEFAULT_MODEL {default!r} is not loaded; loaded: {sorted(models)}"
        return True, None

    def load(self, name: str, version: int, version_dir: Path, source: str = "models_dir") -> LoadedModel:
        """Load, verify and warm one version directory; :class:`ModelRefused` says why it cannot be served."""
        card_stamp = _stamp(version_dir / contract.CARD_FILE)  # before reading: a later rewrite is seen
        card = _read_card(name, version, version_dir, self.reader)
        try:
            # Hash the very bytes given to onnxruntime: a file swapped between hashing and loading is caught.
            data = self.reader.read(version_dir / contract.MODEL_FILE)
        except FileNotFoundError:
            raise ModelRefused("incomplete", f"{contract.MODEL_FILE} is missing") from None
        except OSError as e:
            raise ModelRefused("unreadable", f"{contract.MODEL_FILE} is unreadable: {e}") from None
        digest = hashlib.sha256(data).hexdigest()
        if digest != card.sha256:
            raise ModelRefused(
                "sha256", f"sha256 of {contract.MODEL_FILE} is {digest}, the card says {card.sha256}"
            )
        settings = self.settings
        try:
            session = runner.open_session(
                data, threads=settings.intra_op_threads, spinning=settings.ort_allow_spinning
            )
            # One single-threaded run per lane keeps every core busy without onnxruntime's per-run thread
            # hand-offs (BENCHMARKS.md, "Both cores"); a lone stream keeps the session with every core.
            lane_session = None
            if settings.lane_threads != settings.intra_op_threads:
                lane_session = runner.open_session(
                    data, threads=settings.lane_threads, spinning=settings.ort_allow_spinning
                )
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
            run_images=self.settings.run_max_images or None,
        )
        _warm_up(model)
        if card.judge is not None:
            model = dataclasses.replace(model, judge=self.load_judge(model, card))
        self._card_stamps[version_dir] = card_stamp
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
        try:
            data = self.reader.read(model.path / name)
        except FileNotFoundError:
            raise ModelRefused("incomplete", f"{name} is missing (the card declares a judge)") from None
        except OSError as e:
            raise ModelRefused("unreadable", f"{name} is unreadable: {e}") from None
        digest = hashlib.sha256(data).hexdigest()
        if digest != declared.sha256:
            raise ModelRefused("sha256", f"sha256 of {name} is {digest}, the card says {declared.sha256}")
        try:
            judge = runner.open_session(
                data, threads=self.settings.intra_op_threads, spinning=self.settings.ort_allow_spinning
            )
        except Exception as e:  # onnxruntime's exception classes are not part of its public API
            raise ModelRefused("judge", f"onnxruntime cannot load {name}: {str(e).splitlines()[0]}") from None
        _check_io(judge, inputs, outputs)
        _warm_up_judge(judge, model)
        return judge

    def refresh_card(self, model: LoadedModel) -> LoadedModel:
        """``model`` with its card re-read if the file changed since it was loaded (``cgan-train evaluate``
        adds the quality section in place); a new card that no longer describes the served bytes (sha256,
        tensors, classes) is refused with a log line and the old card stays."""
        card_file = model.path / contract.CARD_FILE
        stamp = _stamp(card_file)
        if not stamp or stamp == self._card_stamps.get(model.path):
            return model
        self._card_stamps[model.path] = stamp  # judged once per rewrite, not once per scan
        try:
            card = _read_card(model.name, model.version, model.path, self.reader)
        except ModelRefused as e:
            log.warning("ignored rewritten card of %s v%d: %s (%s)", model.name, model.version, e, e.reason)
            return model
        old = model.card
        same = (card.sha256, card.latent_dim, card.image_shape, len(card.class_names))
        if same != (old.sha256, old.latent_dim, old.image_shape, len(old.class_names)):
            log.warning(
                "ignored rewritten card of %s v%d: it no longer describes the served model.onnx "
                "(sha256, latent_dim, image_shape or class count changed); publish a new version",
                model.name,
                model.version,
            )
            return model
        judge = model.judge
        if card.judge != old.judge:
            # cgan-train evaluate writes judge.onnx before the card that declares it.
            try:
                judge = None if card.judge is None else self.load_judge(model, card)
            except ModelRefused as e:
                log.warning(
                    "ignored rewritten card of %s v%d: %s (%s)", model.name, model.version, e, e.reason
                )
                return model
        log.info("reloaded the rewritten card of %s v%d", model.name, model.version)
        return dataclasses.replace(model, card=card, judge=judge)

    def scan(self) -> dict[str, int]:
        """Bring the served set in line with MODELS_DIR; blocking, so the app runs it in a worker thread.

        Returns the served ``{name: version}`` after the scan.
        """
        with self._scan_lock:
            roots = self.settings.model_roots
            found: set[str] = set()
            unreadable = []
            for root, source in roots:
                try:
                    found.update(
                        p.name for p in root.iterdir() if p.is_dir() and contract.valid_model_name(p.name)
                    )
                except FileNotFoundError:
                    # Not an error: the documented start without a model directory (the bundle serves),
                    # or one a trainer has yet to create. Said once, at info.
                    if root not in self._absent_roots:
                        self._absent_roots.add(root)
                        log.info(
                            "%s %s does not exist (yet): nothing is served from it", _ROOT_NAMES[source], root
                        )
                    continue
                except OSError as e:
                    unreadable.append(f"{_ROOT_NAMES[source]} cannot be read")
                    if f"{_ROOT_NAMES[source]} cannot be read" not in self._problem:
                        log.warning("%s %s cannot be read: %s", _ROOT_NAMES[source], root, e.strerror or e)
            where = " or ".join(_ROOT_NAMES[source] for _, source in roots)
            # Public (/readyz): no paths; the log line above has them.
            self._problem = "; ".join(unreadable) or f"no valid model version under {where}"
            served: dict[str, dict[int, LoadedModel]] = {}
            for name in sorted(found):
                versions = self._scan_model(name, self._versions.get(name, {}))
                if versions:
                    served[name] = versions
            for name in sorted(self._models.keys() - served.keys()):
                log.warning("no longer serving model %s: no loadable version left under %s", name, where)
            if self._models and not served:
                log.warning("not ready any more: %s", self._problem)
            self._refused = {p: r for p, r in self._refused.items() if p.exists()}
            self._publish(served)
            return {name: next(iter(versions)) for name, versions in served.items()}

    def _scan_model(self, name: str, current: Mapping[int, LoadedModel]) -> dict[int, LoadedModel]:
        """The newest K loadable versions of ``name`` across the roots, newest first.

        Loaded ones are kept, others loaded. At equal version numbers the earlier root wins (MODELS_DIR
        before the bundled models), so a trained v1 replaces a bundled v1, and a refused MODELS_DIR v1
        leaves the bundled v1 serving.
        """
        keep = self.settings.model_versions
        newest = next(iter(current.values()), None)
        roots = self.settings.model_roots
        rank = {source: -i for i, (_, source) in enumerate(roots)}
        candidates = sorted(
            (version, rank[source], path, source)
            for root, source in roots
            for version, path in contract.version_dirs(root / name)
        )
        kept: dict[int, LoadedModel] = {}
        for version, precedence, path, source in reversed(candidates):
            if len(kept) == keep:
                break
            if version in kept:
                continue  # an earlier root already serves this version number
            loaded = current.get(version)
            if loaded is not None and loaded.path == path:
                kept[version] = self.refresh_card(loaded)
                continue
            fingerprint = _fingerprint(path)
            refused = self._refused.get(path)
            if refused and refused[0] == fingerprint:
                continue
            start = time.perf_counter()
            try:
                model = self.load(name, version, path, source)
            except ModelRefused as e:
                self._refused[path] = (fingerprint, e.reason, str(e))
                self.metrics.load_refusals.labels(name, e.reason).inc()
                serving = f"still serving v{newest.version}" if newest else "not serving this name"
                log.warning(
                    "refused model %s v%d at %s: %s (%s); %s", name, version, path, e, e.reason, serving
                )
                continue
            self._refused.pop(path, None)
            log.info(
                "loaded model %s v%d%s (sha256 %s, %d classes, latent_dim %d) in %.2fs%s",
                name,
                version,
                _FROM[source],
                model.card.sha256[:12],
                model.card.num_classes,
                model.card.latent_dim,
                time.perf_counter() - start,
                f", replacing v{newest.version}{_FROM[newest.source]}"
                if newest and (version, precedence) > (newest.version, rank.get(newest.source, 0))
                else "",
            )
            kept[version] = model
        for version, model in current.items():
            if getattr(kept.get(version), "path", None) != model.path:
                if not model.path.is_dir():
                    why = "its directory was removed"
                elif version in kept:
                    why = "superseded by the same version in MODELS_DIR"
                else:
                    why = f"MODEL_VERSIONS is {keep}"
                log.info("unloaded model %s v%d%s: %s", name, version, _FROM[model.source], why)
        return kept

    def _publish(self, served: dict[str, dict[int, LoadedModel]]) -> None:
        paths = {m.path for versions in served.values() for m in versions.values()}
        self._card_stamps = {p: s for p, s in self._card_stamps.items() if p in paths}
        previous, self._versions = self._versions, served
        self._models = {name: next(iter(versions.values())) for name, versions in served.items()}
        if self._pinned not in served:
            self._pinned = next(iter(served)) if len(served) == 1 else None
        for name, versions in previous.items():
            for version, old in versions.items():
                if served.get(name, {}).get(version) is not old:
                    self.metrics.model_served(old.name, old.version, old.card.sha256, served=False)
        for versions in served.values():
            for model in versions.values():
                self.metrics.model_served(model.name, model.version, model.card.sha256, served=True)
