"""Crash-safe checkpoints: every variable of a run in one ``.npz``, written to a temp name then renamed
(:func:`trainer.files.atomic_path`, fsynced).

A SIGKILL at any moment leaves either the previous checkpoint or the new one complete, never a partial file
under a name :func:`latest` would pick. A file that fails to load is skipped in favour of an older one.
"""

from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path

import numpy as np

from trainer.files import atomic_path

log = logging.getLogger(__name__)

KEEP = 2
_PREFIX = "ckpt-"


def _path(directory: Path, step: int) -> Path:
    return directory / f"{_PREFIX}{step:08d}.npz"


def save(directory: Path, step: int, variables: list, meta: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    final = _path(directory, step)
    arrays = {f"v{i:04d}": np.asarray(v.numpy()) for i, v in enumerate(variables)}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with atomic_path(final, durable=True) as tmp, tmp.open("wb") as f:
        np.savez(f, **arrays)
    for old in sorted(directory.glob(f"{_PREFIX}*.npz"))[:-KEEP]:
        old.unlink(missing_ok=True)
    return final


def clean_partial(directory: Path) -> None:
    """Remove temp files a killed run left behind; they are never loaded anyway."""
    for tmp in directory.glob("*.tmp") if directory.is_dir() else ():
        tmp.unlink(missing_ok=True)


def latest(directory: Path) -> Path | None:
    found = sorted(directory.glob(f"{_PREFIX}*.npz")) if directory.is_dir() else []
    return found[-1] if found else None


def load_latest(directory: Path, variables: list) -> dict | None:
    """Restore the newest readable checkpoint into ``variables``; return its meta (None: no checkpoint)."""
    candidates = sorted(directory.glob(f"{_PREFIX}*.npz"), reverse=True) if directory.is_dir() else []
    for path in candidates:
        try:
            with np.load(path) as f:
                values = [f[f"v{i:04d}"] for i in range(len(variables))]
                meta = json.loads(f["meta"].tobytes().decode())
                if len(f.files) != len(variables) + 1:
                    raise ValueError(f"holds {len(f.files) - 1} variables, the model has {len(variables)}")
        except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            log.warning("skipping unreadable checkpoint %s: %s", path.name, exc)
            continue
        for variable, value in zip(variables, values, strict=True):
            if tuple(variable.shape) != value.shape:
                raise ValueError(f"checkpoint {path.name} does not fit this model ({variable.path})")
            variable.assign(value)
        return meta
    return None
