"""Jobs: requests resolved to images, and the one place they run.

A :class:`Job` is every request kind after resolution: which model makes which images (a label, and seeds
or the caller's noise ``z``, and style codes per image), the quality controls, and how the images become
response bytes. :func:`run_jobs` runs any mix of them, one generator call per model for all that share it
(the batcher's lanes call it with whatever arrived together, an unbatched caller with one job).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

import cgan_contract as contract
from service import filtering
from service.batching import Batcher
from service.dataplane.resolve import not_enough
from service.errors import NotReady
from service.halting import Halt
from service.models import LoadedModel

#: A job's encoder: its ``[n, H, W, C]`` images and the uint64 seeds ``[n]`` they were made from (None for
#: a job from ``z``) -> response bytes, on the generating thread. The seeds are the very array the images
#: came from, so what a response reports can never drift from what it holds.
Encoder = Callable[[np.ndarray, np.ndarray | None], bytes]


@dataclass(eq=False)
class Job:
    """A resolved request: image i has label ``labels[i]`` and the noise of ``seeds[i]`` (the contract's
    rule, with ``truncation``) or the caller's ``z[i]``, and style codes ``codes[i]`` (else its seed's)."""

    model: LoadedModel
    #: int64 ``[n]``.
    labels: np.ndarray
    encode: Encoder
    #: uint64 ``[n]``; with ``min_confidence``, the candidates in the order the judge sees them (more than n).
    seeds: np.ndarray | None = None
    #: float32 ``[n, latent_dim]``: the caller's noise, instead of seeds.
    z: np.ndarray | None = None
    #: float32 ``[n, k]``: the caller's style codes (a traversal's included), for a model with codes.
    codes: np.ndarray | None = None
    truncation: float | None = None
    #: Keep the first n candidates the judge gives their label at least this probability.
    min_confidence: float | None = None
    #: A filtered job's outcome once run: its images' seeds and the acceptance rate.
    selection: filtering.Selection | None = None
    #: A filtered job's pick reads it before each run of candidates: set when its request is cancelled
    #: (the batcher does) or when the service stops.
    halt: Halt | None = None

    @property
    def n(self) -> int:
        """Images this job makes (what the batcher counts)."""
        return len(self.labels)

    @property
    def seed(self) -> int | None:
        """The request's seed: its first image's, or its first candidate's; None for a job from ``z``."""
        return None if self.seeds is None else int(self.seeds[0])


async def submit(batcher: Batcher, job: Job, since: float) -> bytes:
    """``job``'s answer from the batcher, counted for its model version (``LoadedModel.served``: success or
    fail, and the time since ``since``, when the data plane took the request); a client that leaves is
    not counted (nothing was answered or failed)."""
    try:
        body = await batcher.submit(job)
    except Exception:
        job.model.served(time.perf_counter() - since, ok=False)
        raise
    job.model.served(time.perf_counter() - since, ok=True)
    return body


def run_jobs(jobs: Sequence[Job], lane: bool = False) -> list[bytes | BaseException]:
    """One generator run per model (and truncation, and seeds or z) for all ``jobs``, then each job's
    encoding; errors stay per job.

    Blocking. The batcher's lanes call it with whatever requests arrived together (``lane=True``: on the
    session the lanes share); an unbatched caller with one.
    """
    outcomes: list[bytes | BaseException] = [b""] * len(jobs)
    groups: dict[tuple[LoadedModel, float | None, bool], list[int]] = {}
    for i, job in enumerate(jobs):
        if job.min_confidence is not None:
            outcomes[i] = _run_filtered(job, lane)
            continue
        groups.setdefault((job.model, job.truncation, job.z is None), []).append(i)
    for (served, truncation, by_seed), members in groups.items():
        model = served.on_lanes if lane else served
        group = [jobs[i] for i in members]
        try:
            # One seed array per group: the images are made from it and each response reports its slice.
            labels = np.concatenate([j.labels for j in group])
            seeds = np.concatenate([j.seeds for j in group]) if by_seed else None  # type: ignore[misc]
            z = None if by_seed else np.concatenate([j.z for j in group])  # type: ignore[misc]
            images = model.generate(labels, seeds, _codes(model, group), truncation, z=z)
        except Exception as e:
            for i in members:
                outcomes[i] = e
            continue
        start = 0
        for i, job in zip(members, group, strict=True):
            stop = start + job.n
            try:
                outcomes[i] = job.encode(images[start:stop], None if seeds is None else seeds[start:stop])
            except Exception as e:
                outcomes[i] = e
            start = stop
    return outcomes


def _codes(model: LoadedModel, group: list[Job]) -> np.ndarray | None:
    """The style codes of a group's images: None when no job gives any (each image's follow its seed),
    else each job's own, or its seeds' (the contract's rule), concatenated like the seeds."""
    if all(j.codes is None for j in group):
        return None
    latent_dim, ranges = model.card.latent_dim, model.card.code_ranges
    own = [
        j.codes if j.codes is not None else contract.codes_for_seeds(j.seeds, latent_dim, ranges)
        for j in group
    ]
    return np.concatenate(own)


def _run_filtered(job: Job, lane: bool) -> bytes | BaseException:
    """A min_confidence job: its seeds picked by the judge from its candidates, then encoded; errors become
    its outcome."""
    assert job.min_confidence is not None and job.seeds is not None
    try:
        job.selection = filtering.select(
            job.model.on_lanes if lane else job.model,
            int(job.labels[0]),
            job.seeds,
            job.n,
            job.min_confidence,
            truncation=job.truncation,
            codes=None if job.codes is None else job.codes[0],
            halt=job.halt,
        )
        return job.encode(job.selection.images, job.selection.seeds)
    except filtering.NotEnoughAccepted as e:
        return not_enough(e, job.min_confidence)
    except filtering.Halted:
        return halted()
    except Exception as e:
        return e


def halted() -> NotReady:
    """The 503 for work halted because the service is stopping (a caller that left hears nothing)."""
    return NotReady("not ready: shutting down", None, retry_after=1)
