"""The work every peer does, written once: the contract's seed rule, an onnxruntime session, one run.

Imports numpy, onnxruntime and ``cgan_contract`` (numpy + pydantic) only, which every peer's environment
has; the repository root is put on ``sys.path`` so a peer venv needs no install of this project.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402

from cgan_contract import noise_for_seeds, request_seeds  # noqa: E402


def open_session(path: str, threads: int):
    """onnxruntime's CPU session; ``threads`` 0 leaves its defaults (what the peers' docs do)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads > 0:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def latent_dim(session) -> int:
    return next(i.shape[1] for i in session.get_inputs() if i.name == "z")


def images(session, latent: int, labels: np.ndarray, seed: int) -> np.ndarray:
    """uint8 ``[n, H, W, 1]``: image i of label ``labels[i]`` from seed ``seed + i`` (the contract's rule)."""
    z = noise_for_seeds(request_seeds(seed, len(labels)), latent)
    return session.run(["image"], {"z": z, "label": labels.astype(np.int64)})[0]
