"""What the input-pipeline adapters (:mod:`cgan_client.tf_data`, :mod:`cgan_client.torch_data`) share: the
checked request, the number of batches of a pass, the seeds of successive passes and the split of a pass
among data-loader workers. Plain Python and numpy, so it is tested without TensorFlow or torch."""

from __future__ import annotations

import itertools
import math
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from cgan_client._common import DEFAULT_ORDER
from cgan_client.client import Client

ORDERS = ("shuffled", "by_class")
#: The service's seed bound (the contract's MAX_SEED): JSON- and JavaScript-safe integers.
MAX_SEED = 2**53 - 1

__all__ = ["DEFAULT_ORDER", "ORDERS", "Passes", "plan"]


@dataclass(frozen=True)
class Passes:
    """The passes over the service's data an adapter streams: pinned model and version, ``size`` images a
    pass in ``batch_size`` batches, and for an endless stream the first seed."""

    request: dict[str, Any]
    size: int
    batch_size: int
    image_shape: tuple[int, int, int]
    endless: bool = False
    #: Positions ``[start, stop)`` of each pass this reader takes (a data-loader worker's share).
    start: int = 0
    stop: int | None = None

    @property
    def count(self) -> int:
        """Batches of a pass (finite mode's cardinality)."""
        return math.ceil(((self.stop or self.size) - self.start) / self.batch_size)

    def passes(self, epoch_seed: int | None = None) -> Iterator[dict[str, Any]]:
        """``iter_dataset`` arguments of each pass: one (finite), or forever with seeds that never repeat.

        Finite: the request's seed, else ``epoch_seed`` (shared by the workers of one epoch), else the
        service picks one. Endless: pass k uses ``base + k * size``.
        """
        seed = self.request.get("seed")
        if seed is None:
            seed = epoch_seed
        span = {} if self.start == 0 and self.stop is None else {"start": self.start, "stop": self.stop}
        if not self.endless:
            yield {**self.request, "seed": seed, **span}
            return
        if seed is None:
            seed = secrets.randbelow(MAX_SEED // 2)
        for k in range((MAX_SEED - seed + 1) // self.size):
            yield {**self.request, "seed": seed + k * self.size, **span}

    def batches(
        self, client: Client, epoch_seed: int | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(x, y)`` batches of ``batch_size``: one pass (the last batch may be smaller), or, endless, the
        passes one after another in whole batches across their edges."""
        streams = (
            client.iter_dataset(batch_size=self.batch_size, **body) for body in self.passes(epoch_seed)
        )
        if not self.endless:
            yield from itertools.chain.from_iterable(streams)
            return
        held: list[tuple[np.ndarray, np.ndarray]] = []
        count = 0
        for x, y in itertools.chain.from_iterable(streams):
            held.append((x, y))
            count += len(x)
            if count >= self.batch_size:
                xs, ys = np.concatenate([h[0] for h in held]), np.concatenate([h[1] for h in held])
                yield xs[: self.batch_size], ys[: self.batch_size]
                held = [(xs[self.batch_size :], ys[self.batch_size :])] if count > self.batch_size else []
                count -= self.batch_size

    def share(self, worker: int, workers: int) -> Passes:
        """This worker's share of every pass: whole batches, contiguous, none twice and none missing."""
        batches = math.ceil(self.size / self.batch_size)
        first, last = worker * batches // workers, (worker + 1) * batches // workers
        start, stop = first * self.batch_size, min(last * self.batch_size, self.size)
        return replace(self, start=start, stop=stop)


def plan(
    client: Client,
    per_label: int,
    labels: Sequence[int | str] | None,
    seed: int | None,
    version: int | None,
    model: str | None,
    order: str,
    batch_size: int,
    endless: bool,
) -> Passes:
    """Check the arguments, pin the model version, and have the service check the request (one image)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: must be a whole number >= 1, got {batch_size!r}")
    if not isinstance(endless, bool):
        raise ValueError(f"endless: must be True or False, got {endless!r}")
    if order not in ORDERS:
        raise ValueError(f"order: must be one of {', '.join(ORDERS)}, got {order!r}")
    info = client.model_info(model, version)
    card = info["card"]
    size = len(card["class_names"] if labels is None else labels) * per_label
    request = {
        "per_label": per_label,
        "labels": labels,
        "seed": seed,
        "model": info["name"],
        "version": info["version"],
        "order": order,
    }
    client.dataset(**{**request, "seed": seed or 0}, start=0, stop=1)  # a 4xx names the field now
    return Passes(request, size, batch_size, tuple(card["image_shape"]), endless)
