"""The model registry: finds versions under MODELS_DIR and the bundle, loads them (through the loader), swaps
them in and picks the default.

The registry mirrors the disk. Each name keeps its newest ``MODEL_VERSIONS`` (K) versions that pass every
check loaded; the newest of them (or its gated INT8 twin: PRECISION, :mod:`.precision`) serves requests that
name no version, and a request may pin any loaded
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

The roots are listed by a :class:`~service.models.listing.Lister` (every lookup time-limited, so a stalled
entry holds up nothing else; only ASCII-digit version names), and each version is read, verified and warmed
by a :class:`~service.models.loader.Loader` (bounded reads, the card, the hash, the signature, a real run);
the registry decides which versions to load and swaps them in.

The default model (what serves a request that names none) is a function of the served set alone, never
of what a process served before, so every worker, and one started to replace a killed one, picks the same
(see :meth:`ModelRegistry.default_name`).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import cgan_contract as contract
from service.config import BUNDLED_DEFAULT_MODEL, Settings
from service.metrics import Metrics
from service.models.listing import ROOT_NAMES, Lister, Listing, VersionDir
from service.models.loaded import LoadedModel
from service.models.loader import Loader, ModelRefused
from service.models.precision import serving_version

log = logging.getLogger(__name__)


def _stamp(path: Path) -> tuple:
    """What changes when a file is rewritten (in place or by rename)."""
    try:
        st = path.stat()
    except OSError:
        return ()
    return (st.st_ino, st.st_size, st.st_mtime_ns)


_FROM = {"models_dir": "", "bundled": " (bundled)"}


class ModelRegistry:
    """Name -> its loaded versions (newest first); :meth:`scan` keeps it in line with MODELS_DIR."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self._models: dict[str, LoadedModel] = {}
        self._versions: dict[str, dict[int, LoadedModel]] = {}
        #: version dir -> (fingerprint, reason code, message) of a refused version; fingerprint None: its
        #: lookup did not answer (retried each scan)
        self._refused: dict[Path, tuple[tuple | None, str, str]] = {}
        #: version dir -> stamp of the card file it was served with (a rewrite changes it)
        self._card_stamps: dict[Path, tuple] = {}
        self._scan_lock = threading.Lock()
        self.loader = Loader.from_settings(settings, metrics)
        self.lister = Lister(settings.model_read_timeout_seconds, metrics)
        # Public (/readyz, 503 details): never a path or a loader message; those go to the log.
        self._problem = "no scan of MODELS_DIR has run yet"

    @property
    def models(self) -> Mapping[str, LoadedModel]:
        """Name -> the loaded version that serves a request naming none: the newest, or its INT8 twin, as
        PRECISION says (:mod:`service.models.precision`)."""
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
        """The model a request that names none gets: DEFAULT_MODEL; else the one model name MODELS_DIR
        serves (a version of it loaded from there), over the bundled ones; else, with only bundled models,
        the bundled default (:data:`~service.config.BUNDLED_DEFAULT_MODEL`, or the one bundled model);
        else (several names in MODELS_DIR) none: requests must name one.

        A function of the served set alone: no history, so every worker agrees and a model appearing or
        going moves the default the same way everywhere."""
        if self.settings.default_model:
            return self.settings.default_model
        versions = self._versions
        own = [
            name
            for name, loaded in versions.items()
            if any(m.source == "models_dir" for m in loaded.values())
        ]
        if own:
            return own[0] if len(own) == 1 else None
        if BUNDLED_DEFAULT_MODEL in versions:
            return BUNDLED_DEFAULT_MODEL
        return next(iter(versions)) if len(versions) == 1 else None

    def readiness(self) -> tuple[bool, str | None]:
        """``(ready, reason)``: ready when a model is loaded and the configured default is among them."""
        models = self._models
        if not models:
            return False, self._problem
        default = self.settings.default_model
        if default and default not in models:
            return False, f"DEFAULT_MODEL {default!r} is not loaded; loaded: {sorted(models)}"
        return True, None

    def load(
        self,
        name: str,
        version: int,
        version_dir: Path,
        source: str = "models_dir",
        card_stamp: tuple | None = None,
    ) -> LoadedModel:
        """Load, verify and warm one version directory (:meth:`Loader.load`), remembering its card's stamp
        (``card_stamp``, as a scan saw it, or taken now) so a later rewrite of the card is noticed;
        :class:`ModelRefused` says why it cannot be served."""
        if card_stamp is None:
            card_stamp = _stamp(version_dir / contract.CARD_FILE)  # before reading: a later rewrite is seen
        model = self.loader.load(name, version, version_dir, source)
        self._card_stamps[version_dir] = card_stamp
        return model

    def refresh_card(self, model: LoadedModel, stamp: tuple | None = None) -> LoadedModel:
        """``model`` with its card re-read if the file changed since it was loaded (``cgan-train evaluate``
        adds the quality section in place); a new card that no longer describes the served bytes (sha256,
        tensors, classes) is refused with a log line and the old card stays. ``stamp``: the card file's,
        as a scan saw it (taken now when not given)."""
        if stamp is None:
            stamp = _stamp(model.path / contract.CARD_FILE)
        if not stamp or stamp == self._card_stamps.get(model.path):
            return model
        self._card_stamps[model.path] = stamp  # judged once per rewrite, not once per scan
        try:
            card = self.loader.read_card(model.name, model.version, model.path)
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
                judge = None if card.judge is None else self.loader.load_judge(model, card)
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
            listing = self.lister.list(roots)
            where = " or ".join(ROOT_NAMES[source] for _, source in roots)
            # Public (/readyz): no paths; the lister's log lines have them.
            self._problem = "; ".join(listing.problems) or f"no valid model version under {where}"
            served: dict[str, dict[int, LoadedModel]] = {}
            for name in sorted(listing.versions.keys() | self._versions.keys()):
                versions = self._scan_model(name, self._versions.get(name, {}), listing)
                if versions:
                    served[name] = versions
            for name in sorted(self._models.keys() - served.keys()):
                log.warning("no longer serving model %s: no loadable version left under %s", name, where)
            if self._models and not served:
                log.warning("not ready any more: %s", self._problem)
            self._refused = {p: r for p, r in self._refused.items() if listing.holds(p)}
            self._publish(served)
            return {name: next(iter(versions)) for name, versions in served.items()}

    def _scan_model(
        self, name: str, current: Mapping[int, LoadedModel], listing: Listing
    ) -> dict[int, LoadedModel]:
        """The newest K loadable FP32 versions of ``name`` across the roots and the INT8 twins newer than the
        oldest of them, newest first.

        Loaded ones are kept, others loaded. At equal version numbers the earlier root wins (MODELS_DIR
        before the bundled models), so a trained v1 replaces a bundled v1, and a refused MODELS_DIR v1
        leaves the bundled v1 serving. A loaded version whose directory did not answer the lookup stays as
        it is; one not loaded is refused as ``timeout`` until it answers.
        """
        keep = self.settings.model_versions
        newest = next(iter(current.values()), None)
        roots = self.settings.model_roots
        rank = {source: -i for i, (_, source) in enumerate(roots)}
        found = listing.versions.get(name, [])
        unseen = [
            VersionDir(name, m.version, m.path, m.source, None)
            for m in current.values()
            if listing.unknown_under(m.path)
        ]
        candidates = sorted(found + unseen, key=lambda d: (d.version, rank[d.source]))
        kept: dict[int, LoadedModel] = {}
        for entry in reversed(candidates):
            version, path, source = entry.version, entry.path, entry.source
            # K counts FP32 versions: an INT8 twin (newer than its source) comes on top, so PRECISION=fp32
            # keeps K of them; 2K bounds a name holding only INT8 versions.
            if sum(m.card.precision == "fp32" for m in kept.values()) == keep or len(kept) == 2 * keep:
                break
            if version in kept:
                continue  # an earlier root already serves this version number
            loaded = current.get(version)
            if loaded is not None and loaded.path == path:
                stalled = entry.fingerprint is None
                kept[version] = loaded if stalled else self.refresh_card(loaded, entry.card_stamp)
                continue
            if entry.fingerprint is None:
                detail = "its lookup did not answer within MODEL_READ_TIMEOUT_SECONDS"
                self._refused[path] = (None, "timeout", detail)
                continue
            refused = self._refused.get(path)
            if refused and refused[0] == entry.fingerprint:
                continue
            start = time.perf_counter()
            try:
                model = self.load(name, version, path, source, entry.card_stamp)
            except ModelRefused as e:
                self._refused[path] = (entry.fingerprint, e.reason, str(e))
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
                if newest and (version, rank[source]) > (newest.version, rank.get(newest.source, 0))
                else "",
            )
            kept[version] = model
        listed = {entry.path for entry in candidates}
        for version, model in current.items():
            if getattr(kept.get(version), "path", None) != model.path:
                if model.path not in listed:
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
        self._models = {
            name: serving_version(versions, self.settings.precision) for name, versions in served.items()
        }
        for name, versions in previous.items():
            for version, old in versions.items():
                if served.get(name, {}).get(version) is not old:
                    self.metrics.model_served(old.name, old.version, old.card.sha256, served=False)
        for versions in served.values():
            for model in versions.values():
                self.metrics.model_served(model.name, model.version, model.card.sha256, served=True)
