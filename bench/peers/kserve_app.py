"""KServe's Python model server running the generator, the way its docs write a custom ``Model``.

    .venv-kserve/bin/python bench/peers/kserve_app.py --model-path M.onnx --http_port 8080 [--workers 2]

A ``kserve.Model`` whose ``load`` opens an onnxruntime session and whose ``predict`` takes an Open Inference
Protocol (v2) request: ``label`` INT64 [n] and the request parameter ``seed`` -> ``image`` UINT8
[n, H, W, 1], the same tensors and seed rule as our ``/v2/models/{name}/infer``. Everything else is
``kserve.ModelServer``'s: its own command-line flags (``--http_port``, ``--workers``, ...) pass through.
``--ort-threads`` (ours) sets onnxruntime's intra-op threads (0: its default, every core).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _work  # noqa: E402
import kserve  # noqa: E402
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer  # noqa: E402
from kserve.utils.utils import generate_uuid  # noqa: E402


class Generator(Model):
    def __init__(self, name: str, path: str, threads: int) -> None:
        super().__init__(name)
        self.path, self.threads = path, threads
        self.load()

    def load(self) -> bool:
        self.session = _work.open_session(self.path, self.threads)
        self.latent = _work.latent_dim(self.session)
        self.ready = True
        return self.ready

    # With --workers > 1 KServe pickles the model into each worker process: the session is opened there.
    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "session"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.load()

    def predict(self, payload: InferRequest, headers: dict[str, str] | None = None) -> InferResponse:
        labels = payload.inputs[0].as_numpy()
        seed = int((payload.parameters or {}).get("seed", 0))
        images = _work.images(self.session, self.latent, labels, seed)
        output = InferOutput(name="image", shape=list(images.shape), datatype="UINT8", data=images)
        return InferResponse(
            model_name=self.name,
            infer_outputs=[output],
            response_id=payload.id or generate_uuid(),
            # What the request asked for: binary output (the binary tensor extension) or JSON.
            use_binary_outputs=payload.use_binary_outputs,
            requested_outputs=payload.request_outputs,
        )


def patient_workers(seconds: float) -> None:
    """KServe kills a worker that has not answered its parent's ping within 5 s and starts another; on a
    loaded 2-core machine importing kserve alone takes longer, so --workers > 1 restarts forever. Waiting
    longer changes nothing once the workers are up."""
    from kserve.protocol.rest.multiprocess.server import RESTServerProcess

    RESTServerProcess.is_alive.__defaults__ = (seconds,)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[kserve.model_server.parser], conflict_handler="resolve")
    parser.add_argument("--model-path", required=True)
    parser.add_argument("--ort-threads", type=int, default=0)
    parser.add_argument("--ping-timeout", type=float, default=5.0)
    args, _ = parser.parse_known_args()
    patient_workers(args.ping_timeout)
    ModelServer(workers=args.workers).start([Generator(args.model_name, args.model_path, args.ort_threads)])
