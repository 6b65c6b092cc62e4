"""Style codes in requests: checking the codes a caller gives and expanding a traversal into images.

A model with style codes (InfoGAN) takes ``k`` continuous codes per image (``card.codes``, each with a
range). A request may give them as ``k`` values for every image, or (``/generate``) one list of ``k`` per
image; without them each image's codes follow the contract's seed rule
(:func:`cgan_contract.codes_for_seeds`). A traversal sweeps one code over its range in ``steps`` columns,
one row per seed, every other code at that row's value. Everything here is numpy on the card: the data plane
calls it while preparing a job, and a :class:`CodesError` is a request error (a 422 naming ``field``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

import cgan_contract as contract
from cgan_contract import ModelCard
from service.errors import RequestError

#: Columns of a traversal when the request names none.
DEFAULT_STEPS = 8


class CodesError(RequestError):
    """Codes or a traversal a model cannot take; ``detail`` reads ``"<field>: <what is wrong>"``."""

    def __init__(self, detail: str, field: str) -> None:
        super().__init__(detail, field)


@dataclass(frozen=True)
class Traversal:
    """Sweep code ``code`` (name or index) from its low to its high value in ``steps`` columns."""

    code: int | str
    steps: int = DEFAULT_STEPS


def _names(card: ModelCard) -> str:
    return ", ".join(code.name for code in card.codes)


def no_codes(card: ModelCard, field: str) -> CodesError:
    return CodesError(f"{field}: model {card.name!r} v{card.version} has no style codes", field)


def _row(card: ModelCard, values: Sequence[float], where: str) -> list[float]:
    k = len(card.codes)
    if len(values) != k:
        detail = f"{where}: {card.name!r} takes {k} code{'s' * (k != 1)} ({_names(card)}), got {len(values)}"
        raise CodesError(detail, where)
    for j, (value, code) in enumerate(zip(values, card.codes, strict=True)):
        at = f"{where}[{j}]"
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CodesError(f"{at}: must be a number", at)
        if not math.isfinite(value):
            raise CodesError(f"{at}: must be finite (no NaN or infinity)", at)
        if not code.low <= value <= code.high:
            raise CodesError(f"{at}: {value} is outside {code.name}'s range [{code.low}, {code.high}]", at)
    return [float(v) for v in values]


def resolve(
    card: ModelCard,
    codes: Sequence[float] | Sequence[Sequence[float]] | None,
    n: int,
    *,
    per_image: bool = True,
    field: str = "codes",
) -> np.ndarray | None:
    """The request's codes as float32 ``[n, k]``, or None (the seed rule) when it gives none.

    ``codes`` is ``k`` values for all ``n`` images or, when ``per_image``, ``n`` lists of ``k``.
    """
    if codes is None:
        return None
    if not card.codes:
        raise no_codes(card, field)
    if per_image and len(codes) and all(isinstance(row, list | tuple) for row in codes):
        if len(codes) != n:
            k = len(card.codes)
            detail = (
                f"{field}: {len(codes)} lists for {n} images; give {k} values for all or one list per image"
            )
            raise CodesError(detail, field)
        rows = [_row(card, row, f"{field}[{i}]") for i, row in enumerate(codes)]  # type: ignore[arg-type]
        return np.array(rows, dtype=np.float32).reshape(n, len(card.codes))
    return np.tile(np.array(_row(card, codes, field), dtype=np.float32), (n, 1))  # type: ignore[arg-type]


def check_array(card: ModelCard, codes: np.ndarray, n: int, field: str = contract.INPUT_CODES) -> np.ndarray:
    """A tensor of codes (Open Inference Protocol): float32 ``[n, k]``, finite, each code in its range."""
    if not card.codes:
        raise no_codes(card, field)
    want = [n, len(card.codes)]
    if codes.dtype != np.float32 or list(codes.shape) != want:
        got = f"{codes.dtype} {list(codes.shape)}"
        detail = f"{field}: must be FP32 {want} for {n} labels ({_names(card)}), got {got}"
        raise CodesError(detail, field)
    if not np.isfinite(codes).all():
        raise CodesError(f"{field}: must be finite (no NaN or infinity)", field)
    for j, code in enumerate(card.codes):
        column = codes[:, j]
        outside = column[(column < code.low) | (column > code.high)]
        if len(outside):
            detail = (
                f"{field}: {outside[0]} is outside {code.name}'s range [{code.low}, {code.high}] (column {j})"
            )
            raise CodesError(detail, field)
    return codes


def parse_text(text: str, field: str = "codes") -> list[float]:
    """``"0.5,-1"`` (a query parameter) as a list of numbers; per-code checks are :func:`resolve`'s."""
    values = []
    for j, part in enumerate(text.split(",")):
        try:
            # A number as JSON writes it: float() alone also reads other scripts' digits and "1_0".
            if not part.isascii() or "_" in part:
                raise ValueError(part)
            values.append(float(part))
        except ValueError:
            raise CodesError(f"{field}[{j}]: {part.strip()!r} is not a number", f"{field}[{j}]") from None
    return values


def code_index(card: ModelCard, code: int | str, field: str = "traverse.code") -> int:
    """The input position of a code named by name or index (a digit string counts as an index)."""
    k = len(card.codes)
    names = [c.name for c in card.codes]
    if isinstance(code, str) and code in names:
        return names.index(code)
    if isinstance(code, str) and code.strip().isascii() and code.strip().isdigit():  # not "²"
        code = int(code)
    if isinstance(code, int) and not isinstance(code, bool) and 0 <= code < k:
        return code
    raise CodesError(f"{field}: unknown code {code!r}; {card.name!r} has {_names(card)} (0..{k - 1})", field)


def traversal(
    card: ModelCard, row_seeds: np.ndarray, traverse: Traversal, base: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-image ``(seeds, codes)`` of a traversal grid, row-major: image ``r * steps + c`` has row ``r``'s
    seed and codes (``base[r]``, else the seed rule's) with the swept code at column ``c``'s value."""
    if not card.codes:
        raise no_codes(card, "traverse")
    index = code_index(card, traverse.code)
    steps = traverse.steps
    if steps < 2:
        raise CodesError(f"traverse.steps: at least 2 columns (low and high), got {steps}", "traverse.steps")
    if base is None:
        base = contract.codes_for_seeds(row_seeds, card.latent_dim, card.code_ranges)
    code = card.codes[index]
    codes = np.repeat(base, steps, axis=0)
    codes[:, index] = np.tile(np.linspace(code.low, code.high, steps, dtype=np.float64), len(row_seeds))
    return np.repeat(row_seeds, steps), codes.astype(np.float32)
