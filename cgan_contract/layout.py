"""Where models live: ``MODELS_DIR/<name>/<version>/{model.onnx,model.json}``, and ``judge.onnx`` beside
them when the card declares a judge (its ``judge`` section).

``version`` is a positive integer, named in ASCII digits, and the newest wins. Version directories appear
atomically: writers build them under a name starting with ``.`` in the same parent and rename. Readers
ignore every entry whose name is not ASCII digits (:func:`version_number`), so a half-written version is
never seen.
"""

from __future__ import annotations

import re
from pathlib import Path

MODEL_FILE = "model.onnx"
CARD_FILE = "model.json"
#: The classifier ``cgan-train evaluate`` scored the generator with, exported for serve-time filtering.
JUDGE_FILE = "judge.onnx"

#: Model names are single path components: no separators, no dot-files, nothing that escapes MODELS_DIR.
MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
_MODEL_NAME_RE = re.compile(MODEL_NAME_PATTERN)


def valid_model_name(name: str) -> bool:
    return bool(_MODEL_NAME_RE.fullmatch(name))


#: ASCII digits only: ``str.isdigit`` also takes "²" (which ``int()`` refuses) and "٣" (which it reads as 3).
_VERSION_RE = re.compile(r"[0-9]+")


def version_number(name: str) -> int | None:
    """The version a directory ``name`` stands for: ASCII digits making 1 or more; else None."""
    if not _VERSION_RE.fullmatch(name):
        return None
    return int(name) or None


def version_dirs(model_root: Path) -> list[tuple[int, Path]]:
    """Complete version directories under ``MODELS_DIR/<name>``, oldest first; temp dirs are skipped."""
    if not model_root.is_dir():
        return []
    found = []
    for entry in model_root.iterdir():
        version = version_number(entry.name)
        if version is not None and entry.is_dir():
            found.append((version, entry))
    return sorted(found)
