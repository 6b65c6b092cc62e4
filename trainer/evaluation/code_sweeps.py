"""What each style code of a generator controls: sweeps through the exported ONNX, scored on pixels.

A sweep of code j holds one (seed, label) pair fixed (the seed's noise, and the seed's other codes, as the
contract's seed rule draws them) and moves code j over its range in ``steps`` equal steps. Sweep i uses
seed ``seed + i`` and label ``i mod classes``. For each sweep and each property of
:mod:`.properties` the Spearman rank correlation between the code's value and the property is taken;
a code's figure for a property is the **median over sweeps** of that signed correlation, so it says both
how monotonically and in which direction the code moves the property (a code whose direction flips from
class to class has a small median). Sweeps where a property is constant or undefined are left out.

A code is named after the property with the largest ``|median|`` when that is at least
:data:`NAME_THRESHOLD`; a property names one code only (the one that tracks it most). Others stay ``c<j>``.
Names are given only for a generator whose images the judge recognises (label accuracy at least
:data:`NAME_MIN_LABEL_ACCURACY`): an untrained generator's noise moves its pixel statistics monotonically
with any input too (measured: 20 steps of dense InfoGAN, pure noise, |median| 0.85 for centre_y).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cgan_contract import ModelCard, StyleCode, codes_for_seeds, request_seeds, runner
from trainer.evaluation.properties import PROPERTIES, measure

NAME_THRESHOLD = 0.8
NAME_MIN_LABEL_ACCURACY = 0.9


@dataclass(frozen=True)
class CodeFigures:
    """One code's sweep results, per property."""

    index: int
    median: dict[str, float]  # median over sweeps of the signed Spearman correlation
    median_abs: dict[str, float]  # median over sweeps of |Spearman|
    defined: dict[str, int]  # sweeps where the correlation is defined


def spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row of ``x`` with the same row of ``y`` (``[S, T]`` each; ties get
    their average rank); NaN for a row where either side is constant or has a NaN."""
    rx, ry = _ranks(np.asarray(x, np.float64)), _ranks(np.asarray(y, np.float64))
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    denominator = np.sqrt((rx**2).sum(axis=1) * (ry**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (rx * ry).sum(axis=1) / denominator
    bad = np.isnan(x).any(axis=1) | np.isnan(y).any(axis=1) | (denominator == 0)
    return np.where(bad, np.nan, rho)


def _ranks(v: np.ndarray) -> np.ndarray:
    """1-based ranks along the last axis, ties averaged (rows are short: a sweep has ~9 steps)."""
    less = (v[..., :, None] > v[..., None, :]).sum(axis=-1)
    equal = (v[..., :, None] == v[..., None, :]).sum(axis=-1)
    return less + (equal + 1) / 2.0


def sweep_values(low: float, high: float, steps: int) -> np.ndarray:
    return np.linspace(low, high, steps, dtype=np.float32)


def sweep_images(
    session, card: ModelCard, code: int, sweeps: int, steps: int, seed: int, batch_size: int = 1024
) -> np.ndarray:
    """uint8 ``[sweeps, steps, H, W, C]``: sweep i moves ``code`` over its range for seed + i, label i mod
    classes, every other input as the seed rule makes it."""
    seeds = request_seeds(seed, sweeps)
    labels = np.arange(sweeps, dtype=np.int64) % card.num_classes
    base = codes_for_seeds(seeds, card.latent_dim, card.code_ranges)
    codes = np.repeat(base, steps, axis=0)
    codes[:, code] = np.tile(sweep_values(*card.code_ranges[code], steps), sweeps)
    images = runner.generate(
        session,
        np.repeat(labels, steps),
        np.repeat(seeds, steps),
        card.latent_dim,
        batch_size,
        code_ranges=card.code_ranges,
        codes=codes,
    )
    return images.reshape(sweeps, steps, *images.shape[1:])


def traversal_grid(session, card: ModelCard, code: int, steps: int = 9, seed: int = 0) -> np.ndarray:
    """uint8 ``[classes*H, steps*W]`` (first channel): row c is sweep c (class c, seed + c), the figure of
    what ``code`` does."""
    images = sweep_images(session, card, code, card.num_classes, steps, seed)[..., 0]
    rows, cols, h, w = images.shape
    return images.transpose(0, 2, 1, 3).reshape(rows * h, cols * w)


def code_figures(
    session, card: ModelCard, sweeps: int = 1000, steps: int = 9, seed: int = 0
) -> list[CodeFigures]:
    """Sweep every code of ``card``'s generator and score each against every pixel property."""
    if steps < 3:
        raise ValueError("a code sweep needs at least 3 steps")
    found = []
    for j, (low, high) in enumerate(card.code_ranges):
        images = sweep_images(session, card, j, sweeps, steps, seed)
        values = np.tile(sweep_values(low, high, steps), (sweeps, 1))
        props = measure(images.reshape(sweeps * steps, *images.shape[2:]))
        median, median_abs, defined = {}, {}, {}
        for name in PROPERTIES:
            rho = spearman_rows(values, props[name].reshape(sweeps, steps))
            rho = rho[~np.isnan(rho)]
            defined[name] = len(rho)
            if len(rho):  # JSON has no NaN: a property never defined gets no figure
                median[name] = float(np.median(rho))
                median_abs[name] = float(np.median(np.abs(rho)))
        found.append(CodeFigures(j, median, median_abs, defined))
    return found


def name_codes(figures: list[CodeFigures], threshold: float = NAME_THRESHOLD) -> list[str]:
    """A name per code: the property it tracks (``|median| >= threshold``), each property at most once,
    strongest first; else ``c<j>``."""
    names = [f"c{f.index}" for f in figures]
    strong = [(abs(rho), f.index, prop) for f in figures for prop, rho in f.median.items()]
    pairs = sorted((pair for pair in strong if pair[0] >= threshold), reverse=True)
    taken: set[str] = set()
    named: set[int] = set()
    for _, index, prop in pairs:
        if prop in taken or index in named:
            continue
        names[index] = prop
        taken.add(prop)
        named.add(index)
    return names


def evaluated_codes(
    session, card: ModelCard, sweeps: int = 1000, steps: int = 9, seed: int = 0, *, name: bool = True
) -> tuple[list[StyleCode], list[CodeFigures]]:
    """The card's codes with their Spearman figures set, and their names too unless ``name`` is false
    (then ``c<j>``); ranges and Q's recovery error are kept."""
    figures = code_figures(session, card, sweeps, steps, seed)
    names = name_codes(figures) if name else [f"c{f.index}" for f in figures]
    codes = [
        code.model_copy(update={"name": name, "spearman": {k: round(v, 4) for k, v in f.median.items()}})
        for code, f, name in zip(card.codes, figures, names, strict=True)
    ]
    return codes, figures
