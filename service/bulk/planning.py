"""Planning a bulk run: the command line's flags turned into a checked :class:`BulkJob` (everything that
decides a shard's bytes), and which shard this process writes."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import cgan_contract as contract


class BulkError(Exception):
    """Bad input: a one-line reason for the user, exit status 2."""


@dataclass(frozen=True)
class BulkJob:
    """Everything that decides a shard's bytes, resolved and checked (see :func:`plan_job`)."""

    models_dir: Path
    model: str
    version: int
    model_sha256: str
    labels: tuple[int, ...]
    per_label: int
    seed: int
    shards: int
    out: Path
    batch: int = 1024
    png_compress_level: int = 1
    order: contract.Order = contract.DEFAULT_ORDER

    @property
    def total(self) -> int:
        return len(self.labels) * self.per_label

    def span(self, index: int) -> tuple[int, int]:
        """Positions ``[start, stop)`` of shard ``index``."""
        return index * self.total // self.shards, (index + 1) * self.total // self.shards

    def stem(self, index: int) -> str:
        return f"part-{index:05d}-of-{self.shards:05d}"

    #: The fields of :meth:`run_record` that name the shard; the others are :meth:`run_identity`.
    SHARD_FIELDS: ClassVar[frozenset[str]] = frozenset({"shard", "samples"})

    def run_identity(self) -> dict[str, Any]:
        """What decides the run's bytes, every shard alike: two jobs with another identity are two runs,
        and may not share an output directory (``batch`` is not in it: it changes no byte)."""
        return {
            "model": self.model,
            "version": self.version,
            "model_sha256": self.model_sha256,
            "labels": list(self.labels),
            "per_label": self.per_label,
            "seed": self.seed,
            "order": self.order,
            "shards": self.shards,
            "png_compress_level": self.png_compress_level,
        }

    def run_record(self, index: int) -> dict[str, Any]:
        """What a finished shard must have been asked for to count as this run's shard ``index``."""
        start, stop = self.span(index)
        return {**self.run_identity(), "shard": index, "samples": [start, stop]}


def plan_job(
    models_dir: Path,
    model: str,
    version: int | None,
    labels: Sequence[str] | None,
    per_label: int,
    seed: int,
    shards: int,
    out: Path,
    batch: int = 1024,
    png_compress_level: int = 1,
    order: str = contract.DEFAULT_ORDER,
) -> BulkJob:
    """Resolve the model version and labels and check every number; :class:`BulkError` says what is wrong.

    Reads the model card only; the model itself is loaded and verified by whoever runs a shard.
    """
    if per_label < 1:
        raise BulkError(f"--per-label must be at least 1, got {per_label}")
    if shards < 1:
        raise BulkError(f"--shards must be at least 1, got {shards}")
    if batch < 1:
        raise BulkError(f"--batch must be at least 1, got {batch}")
    if not 0 <= png_compress_level <= 9:
        raise BulkError(f"--png-compress-level must be 0..9, got {png_compress_level}")
    if order not in contract.ORDERS:
        raise BulkError(f"--order must be one of {', '.join(contract.ORDERS)}, got {order!r}")
    if not contract.valid_model_name(model):
        raise BulkError(f"--model {model!r} is not a valid model name ({contract.MODEL_NAME_PATTERN})")
    if not models_dir.is_dir():
        raise BulkError(f"--models-dir {str(models_dir)!r} is not a directory")
    versions = dict(contract.version_dirs(models_dir / model))
    if not versions:
        raise BulkError(f"--model {model!r}: no version directory under {str(models_dir / model)!r}")
    if version is None:
        version = max(versions)
    elif version not in versions:
        raise BulkError(f"--version {version} of {model!r} not found; versions: {sorted(versions)}")
    try:
        card = contract.read_card(versions[version])
    except (OSError, ValueError) as e:
        reason = str(e).splitlines()[0]
        raise BulkError(f"{model} v{version}: {contract.CARD_FILE} cannot be read: {reason}") from None
    if labels is None:
        resolved = tuple(range(card.num_classes))
    else:
        resolved = []
        for given in labels:
            try:
                resolved.append(card.label_index(given))
            except ValueError as e:
                raise BulkError(f"--labels: {e}") from None
        resolved = tuple(resolved)
        if len(set(resolved)) != len(resolved):
            raise BulkError(f"--labels: each label may appear once, got {list(labels)}")
    total = len(resolved) * per_label
    if shards > total:
        raise BulkError(f"--shards {shards} exceeds the {total} images: a shard would be empty")
    try:
        contract.check_seed(seed, total)
    except ValueError:
        last = contract.last_first_seed(total)
        raise BulkError(f"--seed must be 0..MAX_SEED - images + 1 ({last}), got {seed}") from None
    return BulkJob(
        models_dir,
        model,
        version,
        card.sha256,
        resolved,
        per_label,
        seed,
        shards,
        out,
        batch,
        png_compress_level,
        order,  # type: ignore[arg-type]
    )


def shard_index(
    flag: int | None, shards: int, environ: dict[str, str] | os._Environ[str] = os.environ
) -> int:
    """The shard to write: ``--shard``, else Kubernetes' ``JOB_COMPLETION_INDEX``."""
    if flag is None:
        raw = environ.get("JOB_COMPLETION_INDEX")
        if raw is None:
            raise BulkError("no shard given: pass --shard I, set JOB_COMPLETION_INDEX, or use --all or --ray")
        try:
            flag = int(raw)
        except ValueError:
            raise BulkError(f"JOB_COMPLETION_INDEX must be an integer, got {raw!r}") from None
    if not 0 <= flag < shards:
        raise BulkError(f"shard index {flag} is out of range 0..{shards - 1} for --shards {shards}")
    return flag
