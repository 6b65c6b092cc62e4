"""Publish the INT8 twin of an exported FP32 version, only if it passes the quality gate.

The twin is quantized (:mod:`trainer.quantize`), checked against the card's signature, then both it and its
FP32 source are scored by ``cgan-train evaluate`` (:func:`trainer.evaluation.evaluate`) with the same options,
so the figures compare like with like. It becomes the next version of the same model (the service serves it
as the newest; the FP32 version stays loadable and pinnable), its card saying ``precision: int8`` and
``quantized_from``. When it misses the gate nothing is published and :class:`ExportError` says by how much.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import cgan_contract as contract
from cgan_contract import runner
from trainer.export import ExportError, publish
from trainer.files import fsync_file, sha256_file, write_synced
from trainer.quantize import quantize

#: Float noise in the subtractions, so a figure exactly at a limit passes.
_SLACK = 1e-9


@dataclass(frozen=True)
class QualityGate:
    """How much worse than its FP32 twin an INT8 version may score (accuracies as fractions)."""

    #: Label accuracy may drop by at most this (0.005 = half a point).
    label_accuracy_drop: float = 0.005
    #: The FID ratio may grow by at most this fraction of the FP32 one (0.10 = +10%).
    fid_ratio_increase: float = 0.10
    #: GAN-train accuracy may drop by at most this.
    gan_train_drop: float = 0.005

    def misses(self, fp32: contract.Quality, int8: contract.Quality) -> list[str]:
        """One phrase per figure outside the gate; empty when the INT8 version passes."""
        found = []
        for label, key, allowed in (
            ("label accuracy", "label_accuracy", self.label_accuracy_drop),
            ("GAN-train", "gan_train_accuracy", self.gan_train_drop),
        ):
            before, after = getattr(fp32, key), getattr(int8, key)
            if before - after > allowed + _SLACK:
                found.append(
                    f"{label} {100 * after:.1f}% vs {100 * before:.1f}% "
                    f"({100 * (after - before):+.1f} points, allowed -{100 * allowed:.1f})"
                )
        limit = fp32.fid_ratio * (1 + self.fid_ratio_increase)
        if int8.fid_ratio > limit + _SLACK:
            grew = 100 * (int8.fid_ratio / fp32.fid_ratio - 1)
            found.append(
                f"FID ratio {int8.fid_ratio:.2f} vs {fp32.fid_ratio:.2f} "
                f"({grew:+.1f}%, allowed {100 * self.fid_ratio_increase:+.0f}%)"
            )
        return found

    def record(
        self,
        against_version: int,
        fp32: contract.Quality,
        int8: contract.Quality,
        against_sha256: str | None = None,
    ) -> contract.QualityGate:
        """The gate as the INT8 card carries it: limits, both sides' figures, the verdict."""

        def figures(q: contract.Quality) -> contract.GateFigures:
            return contract.GateFigures(
                label_accuracy=q.label_accuracy,
                fid_ratio=q.fid_ratio,
                gan_train_accuracy=q.gan_train_accuracy,
            )

        return contract.QualityGate(
            passed=not self.misses(fp32, int8),
            against_version=against_version,
            against_sha256=against_sha256,
            label_accuracy_drop=self.label_accuracy_drop,
            fid_ratio_increase=self.fid_ratio_increase,
            gan_train_drop=self.gan_train_drop,
            fp32=figures(fp32),
            int8=figures(int8),
        )


@dataclass(frozen=True)
class Int8Result:
    version_dir: Path
    fp32: contract.Quality
    int8: contract.Quality


Evaluate = Callable[..., tuple[contract.Quality, str]]


def check_card_signature(session, card: contract.ModelCard) -> None:
    """The session's inputs and outputs are the card's, by name, dtype and shape."""
    for want, got in zip(
        [*card.inputs, *card.outputs], [*session.get_inputs(), *session.get_outputs()], strict=False
    ):
        got_shape = [d if isinstance(d, int) else None for d in got.shape]
        if got.name != want.name or got.type != runner.ORT_TYPES[want.dtype] or got_shape != want.shape:
            raise ExportError(f"int8 model's {got.name} {got.type} {got.shape} is not the card's {want}")
    if len(session.get_inputs()) + len(session.get_outputs()) != len(card.inputs) + len(card.outputs):
        raise ExportError("int8 model's inputs or outputs differ from the card's")


def publish_int8(
    fp32_dir: Path,
    *,
    gate: QualityGate | None = None,
    evaluate: Evaluate | None = None,
    **eval_options: object,
) -> Int8Result:
    """Quantize the FP32 version in ``fp32_dir``, gate it against it, publish it as the model's next version.

    ``eval_options`` are :class:`trainer.evaluation.EvalOptions` fields, used for both evaluations;
    ``evaluate`` replaces :func:`trainer.evaluation.evaluate` (tests).
    """
    # The gate reads label accuracy, FID and GAN-train; the augmentation value's nine probe trainings
    # would more than double each evaluation for figures it does not read.
    eval_options.setdefault("augmentation", False)
    if evaluate is None:
        from trainer.evaluation import evaluate
    gate = gate or QualityGate()
    fp32_dir = Path(fp32_dir)
    card = contract.read_card(fp32_dir)
    if card.precision != "fp32":
        raise ExportError(f"{fp32_dir} is already {card.precision}; quantize an fp32 version")
    model_bytes = (fp32_dir / contract.MODEL_FILE).read_bytes()
    int8_bytes = quantize(model_bytes, card.latent_dim, card.num_classes, card.code_ranges)
    check_card_signature(runner.open_session(int8_bytes), card)

    model_root = fp32_dir.parent
    staging = Path(tempfile.mkdtemp(prefix=".staging-int8-", dir=model_root))
    try:
        write_synced(staging / contract.MODEL_FILE, int8_bytes)
        twin = card.model_copy(
            update={
                "precision": "int8",
                "quantized_from": card.version,
                "sha256": sha256_file(staging / contract.MODEL_FILE),
                "created_at": datetime.now(UTC),
                "quality": None,
            }
        )
        write_synced(staging / contract.CARD_FILE, contract.card_json(twin).encode())
        fp32_quality, _ = evaluate(fp32_dir, write=True, **eval_options)
        int8_quality, _ = evaluate(staging, write=True, **eval_options)
        misses = gate.misses(fp32_quality, int8_quality)
        if misses:
            raise ExportError(
                f"int8 twin of {card.name} v{card.version} misses the quality gate: {'; '.join(misses)}"
                " (not published)"
            )
        for path in staging.iterdir():
            fsync_file(path)
        staging.chmod(0o755)
        # The twin's card carries its gate figures whether or not the evaluator wrote them onto it.
        final = contract.read_card(staging).model_copy(
            update={
                "quality": int8_quality,
                "gate": gate.record(card.version, fp32_quality, int8_quality, card.sha256),
            }
        )
        published = publish(staging, model_root, final)
        return Int8Result(published, fp32_quality, int8_quality)
    except OSError as exc:
        raise ExportError(f"writing the int8 model in {model_root} failed: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(staging)
