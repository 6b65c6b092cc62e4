"""Crash-safe checkpoints: every variable of a run in one ``.npz``, written to a temp name then renamed
(:func:`trainer.files.atomic_path`, fsynced).

A SIGKILL at any moment leaves either the previous checkpoint or the new one complete, never a partial file
under a name :func:`latest` would pick.

Loading tells two failures apart:

- *corrupt* (the file cannot be read: torn, bad CRC, no meta): skipped, with a warning, in favour of an older
  intact checkpoint; on resume it is set aside as ``*.npz.corrupt`` so that nothing overwrites it unannounced.
  Only corrupt files and no intact one is an error, never a silent fresh start.
- *incompatible* (it reads, but its variables are not this model's: code added, removed or reshaped one):
  a :class:`CheckpointError` naming the variables that differ. Older checkpoints of the same run would not
  fit either, so none is tried, and nothing is touched.

Each checkpoint stores its variables' paths (``names``) to say which differ; checkpoints written before that
are still read, compared by count and shapes.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import re
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from trainer.files import atomic_path

log = logging.getLogger(__name__)

KEEP = 2
_PREFIX = "ckpt-"
_CORRUPT_SUFFIX = ".corrupt"
#: What reading a damaged ``.npz`` can raise (numpy, zipfile, zlib and json each have their own).
_UNREADABLE = (
    OSError,
    EOFError,
    KeyError,
    ValueError,  # includes json and unicode decoding errors
    zipfile.BadZipFile,
    zlib.error,
    NotImplementedError,
    RuntimeError,
    struct.error,
)
_SHOWN = 6  # variables named in an error before "and N more"


class CheckpointError(Exception):
    """No checkpoint can be resumed from (other code wrote it, or none is intact); one line for the user."""


def _path(directory: Path, step: int) -> Path:
    return directory / f"{_PREFIX}{step:08d}.npz"


def save(directory: Path, step: int, variables: list, meta: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    final = _path(directory, step)
    arrays = {f"v{i:04d}": np.asarray(v.numpy()) for i, v in enumerate(variables)}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    names = [_name(v, i) for i, v in enumerate(variables)]
    arrays["names"] = np.frombuffer(json.dumps(names).encode(), dtype=np.uint8)
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


def load_latest(directory: Path, variables: list, set_aside: bool = False) -> dict | None:
    """Restore the newest intact checkpoint into ``variables``; return its meta (None: no checkpoint at all).

    Corrupt newer files are skipped with a warning (``set_aside``: renamed to ``*.npz.corrupt``, for a run
    about to write new checkpoints). Raises :class:`CheckpointError` when the newest intact checkpoint does
    not fit ``variables`` (nothing is assigned then) or when every checkpoint is corrupt.
    """
    candidates = sorted(directory.glob(f"{_PREFIX}*.npz"), reverse=True) if directory.is_dir() else []
    corrupt: list[tuple[Path, str]] = []
    for path in candidates:
        try:
            values, names, meta = _read(path)
        except _UNREADABLE as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            log.warning("checkpoint %s is unreadable (%s); trying an older one", path.name, reason)
            corrupt.append((path, reason))
            continue
        _check_fits(path, values, names, variables)
        for variable, value in zip(variables, values, strict=True):
            variable.assign(value)
        for bad, _ in corrupt:
            if set_aside:
                kept = bad.with_name(bad.name + _CORRUPT_SUFFIX)
                os.replace(bad, kept)
                log.warning("set aside unreadable checkpoint %s as %s", bad.name, kept.name)
        if corrupt:
            log.warning("resuming from older checkpoint %s (step %s)", path.name, meta["step"])
        return meta
    if corrupt:
        newest, reason = corrupt[0]
        raise CheckpointError(
            f"no intact checkpoint in {directory}: {len(corrupt)} unreadable, newest {newest.name} "
            f"({reason}); move them away to start over"
        )
    return None


def _name(variable, index: int) -> str:
    return str(getattr(variable, "path", None) or getattr(variable, "name", None) or f"v{index:04d}")


def _read(path: Path) -> tuple[list[np.ndarray], list[str] | None, dict]:
    """A checkpoint's values, variable names (None: written before names were stored) and meta."""
    with np.load(path) as f:
        keys = sorted(k for k in f.files if re.fullmatch(r"v\d{4}", k))
        if keys != [f"v{i:04d}" for i in range(len(keys))]:
            raise ValueError("its variables are not numbered v0000 onwards")
        meta = json.loads(f["meta"].tobytes().decode())
        if not isinstance(meta, dict) or not {"step", "wall_seconds"} <= meta.keys():
            raise ValueError("its meta lacks step or wall_seconds")
        names = json.loads(f["names"].tobytes().decode()) if "names" in f.files else None
        if names is not None and (len(names) != len(keys) or not all(isinstance(n, str) for n in names)):
            raise ValueError(f"it names {len(names)} variables but holds {len(keys)}")
        values = [f[key] for key in keys]
    return values, names, meta


def _same(name: str) -> str:
    """Keras numbers names per process (dense, dense_1, ...; adam_1/dense_3_kernel_velocity for an optimizer's
    slots): compare names without those numbers, so the same code rebuilt in one process still fits."""
    return re.sub(r"_\d+(?=[_/]|$)", "", name)


def _check_fits(path: Path, values: list[np.ndarray], names: list[str] | None, variables: list) -> None:
    model_shapes = [tuple(v.shape) for v in variables]
    stored_shapes = [value.shape for value in values]
    if names is None:  # an older checkpoint: count and shapes are all there is to compare
        if len(values) != len(variables):
            raise CheckpointError(
                f"checkpoint {path.name} holds {len(values)} variables, the model has {len(variables)}: "
                "it was written by other code; resume with that code, or train under a new --name"
            )
        for i, (variable, want, got) in enumerate(zip(variables, model_shapes, stored_shapes, strict=True)):
            if want != got:
                raise CheckpointError(
                    f"checkpoint {path.name}: variable {i} ({_name(variable, i)}) is {list(got)} there, "
                    f"{list(want)} in the model: it was written by other code"
                )
        return
    model_names = [_name(v, i) for i, v in enumerate(variables)]
    stored = [(_same(n), s) for n, s in zip(names, stored_shapes, strict=True)]
    model = [(_same(n), s) for n, s in zip(model_names, model_shapes, strict=True)]
    if stored == model:
        return
    only_stored, only_model = [], []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, stored, model, autojunk=False).get_opcodes():
        if op in ("delete", "replace"):
            only_stored += [f"{names[i]} {list(stored_shapes[i])}" for i in range(i1, i2)]
        if op in ("insert", "replace"):
            only_model += [f"{model_names[j]} {list(model_shapes[j])}" for j in range(j1, j2)]
    parts = []
    if only_stored:
        parts.append(f"the model lacks {_listed(only_stored)} that the checkpoint holds")
    if only_model:
        parts.append(f"the checkpoint lacks {_listed(only_model)} that the model has")
    raise CheckpointError(
        f"checkpoint {path.name} was written by other code ({'; '.join(parts)}); resume with the code "
        "that wrote it, or train under a new --name"
    )


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:_SHOWN])
    more = f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
    noun = "variable" if len(items) == 1 else "variables"
    return f"{len(items)} {noun} ({shown}{more})"
