"""The card's new quality fields: optional (cards evaluated before them still load and render), round-trip
through JSON, and render in quality.md."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from cgan_contract import ModelCard, Quality
from cgan_contract.card import Interval, Intervals, RealCurvePoint, SyntheticWorth, Worth
from trainer.evaluation import render_report

BUNDLED = Path(__file__).parents[2] / "service" / "bundled" / "mnist-5k-cgan-conv" / "1" / "model.json"
NEW_FIELDS = {"kid_samples", "kid", "kid_floor", "kid_ratio", "fid_matched", "fid_floor_matched",
              "fid_ratio_matched", "intervals", "worth"}  # fmt: skip


def test_a_card_evaluated_before_the_new_fields_loads_and_renders_as_before():
    raw = json.loads(BUNDLED.read_text())
    assert not NEW_FIELDS & set(raw["quality"])  # the bundled card predates them
    card = ModelCard.model_validate(raw)
    assert all(getattr(card.quality, name) is None for name in NEW_FIELDS)
    report = render_report(card, card.quality)
    assert "KID" not in report and "Worth in real images" not in report and "bootstrap" not in report


def test_every_interval_names_a_quality_figure():
    figures = set(Intervals.model_fields) - {"level", "resamples", "seed"}
    assert figures <= set(Quality.model_fields)


def _interval(x: float) -> Interval:
    return Interval(low=0.9 * x, high=1.1 * x)


def test_new_fields_round_trip_and_render():
    card = ModelCard.model_validate_json(BUNDLED.read_text())
    curve = [
        RealCurvePoint(fraction=f, samples=int(4500 * f), accuracy=a, runs=[a - 0.01, a, a + 0.01], steps=360)
        for f, a in ((0.5, 0.9), (1.0, 0.95))
    ]
    synthetic = [
        SyntheticWorth(multiple=1, samples=4500, accuracy=0.92, runs=[0.92] * 3, steps=360,
                       equivalent_real=3150.0),
        SyntheticWorth(multiple=10, samples=45000, accuracy=0.97, runs=[0.97] * 3, steps=360,
                       equivalent_real=4500, outside="above"),
    ]  # fmt: skip
    quality = card.quality.model_copy(
        update={
            "kid_samples": 500, "kid": 0.02, "kid_floor": -0.001, "kid_ratio": None,
            "fid_matched": 3.0, "fid_floor_matched": 2.0, "fid_ratio_matched": 1.5,
            "intervals": Intervals(level=0.95, resamples=200, seed=0, fid=_interval(card.quality.fid),
                                   kid=_interval(0.02), kid_floor=Interval(low=-0.003, high=0.002)),
            "worth": Worth(real_samples=4500, curve=curve, synthetic=synthetic, seconds=12.0),
        }
    )  # fmt: skip
    raw = json.loads(BUNDLED.read_text())
    raw["quality"] = quality.model_dump(mode="json")
    again = ModelCard.model_validate_json(json.dumps(raw))
    assert again.quality == quality
    report = render_report(again, again.quality)
    assert "| KID (judge features) | 0.02 [0.018, 0.022] |" in report
    assert "| KID ratio | n/a (floor not above 0) |" in report
    assert "95% bootstrap intervals (200 resamples" in report
    assert "| 1x | 4500 | 92.0% ± 0.0 (92.0-92.0) | 3150 real (70% of the split) |" in report
    assert "| 10x | 45000 | 97.0% ± 0.0 (97.0-97.0) | > all 4500 real |" in report
    assert "| 50% | 2250 | 90.0% ± 0.8 (89.0-91.0) | 360 |" in report


def test_an_old_quality_section_without_any_optional_field_still_validates():
    old = Quality(
        samples_per_class=10, label_accuracy=0.9, per_class_accuracy=[0.9] * 10, judge_test_accuracy=0.98,
        fid=5.0, fid_floor=4.0, fid_ratio=1.25, gan_train_accuracy=0.9, real_train_accuracy=0.95,
        diversity_ratio=0.9, mode_collapse=False, evaluated_at=datetime.now(UTC),
    )  # fmt: skip
    assert Quality.model_validate_json(old.model_dump_json()) == old
