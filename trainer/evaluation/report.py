"""The evaluation's outputs: the ``quality`` section written onto the model card, and ``quality.md``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cgan_contract import CARD_FILE, MODEL_FILE, ModelCard, Quality, StyleCode
from trainer.evaluation.intervals import spread
from trainer.evaluation.scores import COLLAPSE_THRESHOLD
from trainer.evaluation.worth import render_worth
from trainer.files import atomic_write

QUALITY_REPORT = "quality.md"


def traversal_file(code: int) -> str:
    """The traversal figure of code ``code`` (by input position: names change when evaluation names them)."""
    return f"traversal-c{code}.png"


def write_quality(version_dir: Path, quality: Quality, codes: list[StyleCode] | None = None) -> None:
    """Set the card's ``quality`` section (and its ``codes``, when given: figures and names from the code
    sweeps), leaving every other field as it was on disk."""
    card_path = version_dir / CARD_FILE
    original = card_path.read_text()
    raw = json.loads(original)
    raw["quality"] = quality.model_dump(mode="json")
    if codes is not None:
        raw["codes"] = [code.model_dump(mode="json") for code in codes]
    text = json.dumps(raw, indent=2, ensure_ascii=False) + ("\n" if original.endswith("\n") else "")
    ModelCard.model_validate_json(text)  # never leave a card the server would reject
    atomic_write(card_path, text, durable=True)


def write_report(version_dir: Path, report: str) -> None:
    atomic_write(version_dir / QUALITY_REPORT, report, durable=True)


def _known(value: object) -> object:
    return "?" if value is None else value


def _pct(x: float) -> str:
    return "n/a" if np.isnan(x) else f"{100 * x:.1f}%"


def _num(x: float) -> str:
    return "n/a" if np.isnan(x) else f"{x:.3g}"


def _spread(runs) -> str:
    """`` ± std (min-max)`` of a probe figure's seeds, in points."""
    if not runs or len(runs) < 2:
        return ""
    s = spread(runs)
    return f" ± {100 * s.std:.1f} ({100 * s.low:.1f}-{100 * s.high:.1f})"


def _iv(q: Quality, name: str) -> str:
    """`` [low, high]``: the figure's bootstrap interval, when measured."""
    interval = getattr(q.intervals, name, None) if q.intervals is not None else None
    return "" if interval is None else f" [{interval.low:.3g}, {interval.high:.3g}]"


def _kid_rows(q: Quality) -> list[str]:
    if q.kid is None:
        return []
    k = _known(q.kid_samples)
    ratio = "n/a (floor not above 0)" if q.kid_ratio is None else f"{_num(q.kid_ratio)}{_iv(q, 'kid_ratio')}"
    return [
        f"| KID (judge features) | {q.kid:.3g}{_iv(q, 'kid')} | {k} generated vs {k} real test, the same "
        "count of each class on both sides; unbiased, so 0 = the same distribution and sizes compare |",
        f"| KID floor | {_num(q.kid_floor)}{_iv(q, 'kid_floor')} | {k} real train vs the same {k} real "
        "test |",
        f"| KID ratio | {ratio} | KID / floor |",
        f"| FID at matched sizes | {_num(q.fid_matched)}{_iv(q, 'fid_matched')} / "
        f"{_num(q.fid_floor_matched)}{_iv(q, 'fid_floor_matched')} (ratio {_num(q.fid_ratio_matched)}"
        f"{_iv(q, 'fid_ratio_matched')}) | score / floor on those {k}-a-side sets |",
    ]


def _intervals_note(q: Quality) -> str:
    if q.intervals is None:
        return ""
    iv = q.intervals
    return (
        f" Brackets: {100 * iv.level:.0f}% bootstrap intervals ({iv.resamples} resamples within each class, "
        f"seed {iv.seed})."
    )


def _runs(runs) -> str:
    return f"; mean of {len(runs)} probe seeds" if runs and len(runs) > 1 else ""


def _prdc_cells(score) -> str:
    if score is None:
        return "n/a | n/a | n/a | n/a"
    return f"{score.precision:.3f} | {score.recall:.3f} | {score.density:.3f} | {score.coverage:.3f}"


def _prdc_rows(q: Quality, m: object) -> list[str]:
    if q.prdc is None:
        return []
    p, k = q.prdc, _known(q.prdc_k)
    return [
        f"| precision / recall | {p.precision:.3f} / {p.recall:.3f} | k-NN manifolds (k={k}) of {m} "
        f"generated and {m} real train: generated inside the real one (fidelity) / real inside the "
        "generated one (diversity) |",
        f"| density / coverage | {p.density:.3f} / {p.coverage:.3f} | real balls per generated image / k "
        "(1 = as dense as real) / share of real images with a generated one in their ball |",
    ]


def _augmentation_rows(q: Quality) -> list[str]:
    if not q.augmentation:
        return []
    base = q.augmentation[0].accuracy
    rows = []
    for arm in q.augmentation:
        if arm.synthetic_samples == 0:
            name, gain = "real alone", ""
            trained = f"CNN trained on the {arm.real_samples} real training images"
        else:
            name = f"real + {arm.synthetic_multiple:g}x generated"
            gain = f" ({100 * (arm.accuracy - base):+.1f} points)"
            trained = f"same CNN on those + {arm.synthetic_samples} generated"
        rows.append(
            f"| {name} | {_pct(arm.accuracy)}{_spread(arm.runs)}{gain} | {trained} ({arm.steps} steps), "
            f"tested on real test{_runs(arm.runs)} |"
        )
    return rows


def _seconds(q: Quality) -> str:
    if q.evaluation_seconds is None:
        return ""
    aug = f", augmentation value {q.augmentation_seconds:.0f} s of it" if q.augmentation_seconds else ""
    return f" Took {q.evaluation_seconds:.0f} s{aug}."


def render_report(card: ModelCard, q: Quality) -> str:
    per_div = [float("nan") if d is None else d for d in q.per_class_diversity or []]
    per_div += [float("nan")] * (card.num_classes - len(per_div))
    worst = int(np.nanargmin(per_div)) if not np.all(np.isnan(per_div)) else None
    m, t = _known(q.matched_samples), _known(q.test_samples)
    lines = [
        f"# Quality: {card.name} v{card.version} ({card.dataset})",
        "",
        f"{q.samples_per_class} generated images per class from `{MODEL_FILE}` (onnxruntime, noise seed "
        f"{_known(q.seed)}); evaluated {q.evaluated_at:%Y-%m-%d %H:%M} UTC.{_seconds(q)}{_intervals_note(q)}",
        "",
        "| metric | value | what is compared |",
        "|---|---|---|",
        f"| label accuracy | {_pct(q.label_accuracy)} | judge's prediction vs requested label "
        f"(judge: {_pct(q.judge_test_accuracy)} on the real test split) |",
        f"| FID (judge features) | {_num(q.fid)}{_iv(q, 'fid')} | {m} generated vs {t} real test |",
        f"| FID floor | {_num(q.fid_floor)}{_iv(q, 'fid_floor')} | {m} real train vs {t} real test |",
        f"| FID ratio | {_num(q.fid_ratio)}{_iv(q, 'fid_ratio')} | FID / floor; 1 = as close as the training "
        "data |",
        *_kid_rows(q),
        f"| GAN-train accuracy | {_pct(q.gan_train_accuracy)}{_spread(q.gan_train_runs)} | "
        f"CNN trained on {m} generated, tested on real test{_runs(q.gan_train_runs)} |",
        f"| real-train accuracy | {_pct(q.real_train_accuracy)}{_spread(q.real_train_runs)} | "
        f"same CNN trained on {m} real train{_runs(q.real_train_runs)} |",
        f"| diversity ratio | {_num(q.diversity_ratio)}"
        + (f" (class {card.class_names[worst]})" if worst is not None else "")
        + " | within-class mean pairwise judge-feature distance, generated / real test (min over classes) |",
        f"| mode collapse | {'**YES**' if q.mode_collapse else 'no'} | any class ratio < "
        f"{q.collapse_threshold if q.collapse_threshold is not None else COLLAPSE_THRESHOLD} |",
        *_prdc_rows(q, m),
        *_augmentation_rows(q),
        "",
    ]
    # Cards evaluated before PRDC existed keep their three-column class table.
    with_prdc = q.per_class_prdc is not None
    per_prdc = list(q.per_class_prdc or []) + [None] * card.num_classes
    lines += [
        "| class | label accuracy | diversity |" + (" precision | recall | density | coverage |" * with_prdc),
        "|---|---|---|" + "---|---|---|---|" * with_prdc,
    ]
    for name, acc, div, score in zip(card.class_names, q.per_class_accuracy, per_div, per_prdc, strict=False):
        lines.append(f"| {name} | {_pct(acc)} | {_num(div)} |" + f" {_prdc_cells(score)} |" * with_prdc)
    text = "\n".join(lines) + "\n"
    return text + render_worth(q.worth) if q.worth is not None else text


def render_codes(codes: list[StyleCode], figures, sweeps: int, steps: int, named: bool = True) -> str:
    """The style-code section of ``quality.md``: per code and property, median Spearman over the sweeps."""
    from trainer.evaluation.code_sweeps import NAME_MIN_LABEL_ACCURACY, NAME_THRESHOLD
    from trainer.evaluation.properties import PROPERTIES

    lines = [
        "",
        "## Style codes",
        "",
        f"Each code swept over its range in {steps} steps with everything else fixed, {sweeps} sweeps "
        "((seed, label) pairs). Cells: median over sweeps of the Spearman correlation between the code "
        "and a property measured on the pixels (median of |Spearman| in brackets). A code is named after a "
        f"property when |median| >= {NAME_THRESHOLD} and the label accuracy is at least "
        f"{_pct(NAME_MIN_LABEL_ACCURACY)} (noise moves pixel statistics monotonically too)"
        + ("" if named else "; it is not here, so the codes keep their generic names")
        + ". Q error: Q's mean absolute error in code units, measured at export.",
        "",
        "| code | name | " + " | ".join(PROPERTIES) + " | Q error | figure |",
        "|---" * (len(PROPERTIES) + 4) + "|",
    ]
    for code, f in zip(codes, figures, strict=True):
        cells = [
            f"{f.median[p]:+.2f} ({f.median_abs[p]:.2f})" if p in f.median else "n/a" for p in PROPERTIES
        ]
        error = "?" if code.recovery_error is None else f"{code.recovery_error:.3f}"
        lines.append(
            f"| c{f.index} | {code.name} | " + " | ".join(cells) + f" | {error} | {traversal_file(f.index)} |"
        )
    return "\n".join(lines) + "\n"
