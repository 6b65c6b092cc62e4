"""Print the QUALITY.md table from evaluated model cards.

    python -m bench.experiments.quality_table MODELS_DIR [MODELS_DIR ...]

Every ``<name>/<version>/model.json`` whose ``quality`` is filled becomes one row (newest version of each
name). Train and evaluate a row with ``cgan-train train ...`` then ``cgan-train evaluate MODEL_DIR``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cgan_contract as contract


def rows(models_dirs: list[Path]):
    for models_dir in models_dirs:
        for model_root in sorted(p for p in models_dir.iterdir() if p.is_dir()):
            versions = contract.version_dirs(model_root)
            if not versions:
                continue
            card = contract.read_card(versions[-1][1])
            if card.quality is not None:
                yield card


def _prdc(q: contract.Quality) -> str:
    if q.prdc is None:
        return "– | –"  # evaluated before PRDC existed
    p = q.prdc
    return f"{p.precision:.2f} / {p.recall:.2f} | {p.density:.2f} / {p.coverage:.2f}"


def _augmentation(q: contract.Quality) -> str:
    if not q.augmentation:
        return "–"  # skipped (--no-augmentation) or evaluated before it existed
    return " / ".join(
        f"{arm.accuracy:.1%}"
        if arm.synthetic_samples == 0
        else f"+{arm.synthetic_multiple:g}x {arm.accuracy:.1%}"
        for arm in q.augmentation
    )


def table(cards) -> str:
    head = (
        "| model | variant | arch | dataset | steps x batch | train min | label acc | FID / floor (ratio) "
        "| GAN-train / real-train | diversity | collapse | precision / recall | density / coverage "
        "| real alone / + generated |\n|" + "---|" * 14
    )
    lines = [head]
    for card in cards:
        q, t = card.quality, card.training
        recipe = t.recipe if t else {}
        variant = card.variant + "".join(
            tag for key, tag in (("aux_classifier", " +head"), ("cond_bn", " +cBN")) if recipe.get(key)
        )
        lines.append(
            f"| {card.name} | {variant} | {card.arch} | {card.dataset} | "
            f"{t.steps} x {t.batch_size} | {t.wall_seconds / 60:.1f} | {q.label_accuracy:.1%} | "
            f"{q.fid:.2f} / {q.fid_floor:.2f} ({q.fid_ratio:.2f}x) | "
            f"{q.gan_train_accuracy:.1%} / {q.real_train_accuracy:.1%} | {q.diversity_ratio:.2f} | "
            f"{'yes' if q.mode_collapse else 'no'} | {_prdc(q)} | {_augmentation(q)} |"
        )
    return "\n".join(lines)


def main() -> None:
    dirs = [Path(arg) for arg in sys.argv[1:]] or [Path("models")]
    print(table(rows(dirs)))


if __name__ == "__main__":
    main()
