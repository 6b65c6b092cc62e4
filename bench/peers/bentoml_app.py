"""BentoML running the generator, written the way its docs write a service (a class, typed ``@bentoml.api``).

    PEER_MODEL=M.onnx .venv-bentoml/bin/bentoml serve bench/peers/bentoml_app.py:Generator --port 3000

``POST /generate {"label": 9, "n": 16, "seed": 1}`` answers the images as a JSON nested list (BentoML's own
numpy encoding: the docs' form); ``POST /generate_npy`` the same uint8 ``[n, H, W, 1]`` array as ``.npy``
bytes (the binary form). Same ONNX file, same seed rule as ours. ``PEER_WORKERS`` sets BentoML's worker
processes (1, its default), ``PEER_ORT_THREADS`` onnxruntime's intra-op threads (0: its default),
``PEER_ACCESS_LOG=0`` turns BentoML's per-request log line off.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _work  # noqa: E402
import bentoml  # noqa: E402
import numpy as np  # noqa: E402


@bentoml.service(
    workers=int(os.environ.get("PEER_WORKERS", "1")),
    logging={"access": {"enabled": os.environ.get("PEER_ACCESS_LOG", "1") == "1"}},
)
class Generator:
    def __init__(self) -> None:
        self.session = _work.open_session(
            os.environ["PEER_MODEL"], int(os.environ.get("PEER_ORT_THREADS", "0"))
        )
        self.latent = _work.latent_dim(self.session)

    def images(self, label: int, n: int, seed: int) -> np.ndarray:
        # Not an API method: calling one API from another goes back through BentoML's dispatch.
        return _work.images(self.session, self.latent, np.full(n, label, dtype=np.int64), seed)

    @bentoml.api
    def generate(self, label: int, n: int = 16, seed: int = 0) -> np.ndarray:
        return self.images(label, n, seed)

    @bentoml.api
    def generate_npy(self, label: int, n: int = 16, seed: int = 0) -> bytes:
        buffer = io.BytesIO()
        np.save(buffer, self.images(label, n, seed))
        return buffer.getvalue()
