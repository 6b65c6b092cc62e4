"""bench/experiments/quality_table.py: one row per evaluated model (newest version), recipe tags,
unevaluated skipped, PRDC and augmentation columns (a dash for cards evaluated before they existed)."""

from __future__ import annotations

from datetime import UTC, datetime

import cgan_contract as contract
from bench.experiments.quality_table import rows, table
from cgan_testing.fakes import write_version


def quality(label_accuracy: float) -> contract.Quality:
    return contract.Quality(
        samples_per_class=1000,
        label_accuracy=label_accuracy,
        per_class_accuracy=[label_accuracy] * 10,
        judge_test_accuracy=0.98,
        fid=6.0,
        fid_floor=4.0,
        fid_ratio=1.5,
        gan_train_accuracy=0.95,
        real_train_accuracy=0.96,
        diversity_ratio=0.9,
        mode_collapse=False,
        evaluated_at=datetime.now(UTC),
    )


def training(**recipe: object) -> contract.Training:
    return contract.Training(
        steps=16000,
        batch_size=64,
        seed=0,
        wall_seconds=720.0,
        images_per_second=1422.0,
        steps_per_second=22.2,
        recipe=recipe,
    )


def test_table_has_one_row_per_evaluated_model(tmp_path):
    write_version(tmp_path, "alpha", 1, quality=quality(0.90), training=training())
    write_version(
        tmp_path, "alpha", 2, quality=quality(0.99), training=training(aux_classifier=True, cond_bn=True)
    )
    write_version(tmp_path, "unevaluated", 1, training=training())

    text = table(rows([tmp_path]))
    lines = text.splitlines()
    assert len(lines) == 3  # header, separator, alpha v2
    row = "| alpha | cgan +head +cBN | tiny-test | synthetic | 16000 x 64 | 12.0 | 99.0% |"
    assert lines[2].startswith(row)
    assert "6.00 / 4.00 (1.50x) | 95.0% / 96.0% | 0.90 | no |" in lines[2]


def test_table_shows_prdc_and_augmentation_when_the_card_has_them(tmp_path):
    arms = [
        contract.AugmentationArm(
            synthetic_multiple=m, real_samples=4500, synthetic_samples=int(4500 * m), accuracy=acc,
            runs=[acc] * 3, steps=360,
        )
        for m, acc in ((0.0, 0.961), (1.0, 0.968), (2.0, 0.972))
    ]  # fmt: skip
    measured = quality(0.99).model_copy(
        update={
            "prdc": contract.PRDC(precision=0.81, recall=0.74, density=0.95, coverage=0.9),
            "augmentation": arms,
        }
    )
    write_version(tmp_path, "new", 1, quality=measured, training=training())
    write_version(tmp_path, "old", 1, quality=quality(0.98), training=training())

    lines = table(rows([tmp_path])).splitlines()
    assert lines[0].count("|") == lines[1].count("|") == 15  # 14 columns
    new, old = lines[2], lines[3]
    assert new.endswith("| no | 0.81 / 0.74 | 0.95 / 0.90 | 96.1% / +1x 96.8% / +2x 97.2% |")
    assert old.endswith("| no | – | – | – |")
    assert all(line.count("|") == 15 for line in lines)
