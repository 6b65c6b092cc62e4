"""The naive peer: what a user would write without this service. FastAPI + the trained Keras generator,
``model.predict`` per request, a PNG grid drawn with Pillow.

    NAIVE_MODEL=/tmp/bench/naive/generator.keras python -m bench.peers.naive_app --host 127.0.0.1 --port 8002

Make the ``.keras`` file with ``python -m bench.peers.naive_app --export RUN_DIR OUT.keras``
(``bench/load/service_load.py`` does this for you from the cached benchmark run).
"""

from __future__ import annotations

import argparse
import io
import math
import os
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from pydantic import BaseModel  # noqa: E402


class Body(BaseModel):  # module level: FastAPI resolves the (postponed) annotation from the module globals
    label: int
    n: int = 16
    seed: int | None = None
    format: str = "png"


def export(run_dir: Path, out: Path) -> None:
    """Rebuild the run's generator from its checkpoint and save it as a ``.keras`` file."""
    from trainer.train import load_run

    _, _, gan, _ = load_run(run_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp.keras")
    gan.export_generator.save(tmp)
    tmp.replace(out)


def load_generator(path: str | Path):
    """The ``.keras`` generator, with our custom layers registered first: a conv generator's file names
    ``ConditionalBatchNorm``, which Keras can only rebuild once ``trainer.nets.blocks`` has been imported."""
    import keras

    import trainer.nets.blocks  # noqa: F401  (registers the layers with keras.saving)

    return keras.models.load_model(path, compile=False)


def feeds(model, z, labels, rng=None) -> list:
    """The generator's inputs: noise and labels, plus uniform style codes for an InfoGAN's third input."""
    import numpy as np

    if len(model.inputs) < 3:
        return [z, labels]
    k = int(model.inputs[2].shape[-1])
    rng = rng or np.random.default_rng(0)
    return [z, labels, rng.uniform(-1.0, 1.0, (len(z), k)).astype(np.float32)]


def build_app():
    import numpy as np
    from fastapi import FastAPI, Response
    from PIL import Image

    model = load_generator(os.environ["NAIVE_MODEL"])
    latent_dim = int(model.inputs[0].shape[-1])
    model.predict(feeds(model, np.zeros((1, latent_dim), np.float32), np.zeros(1, np.int32)), verbose=0)

    app = FastAPI()

    @app.post("/generate")
    def generate(body: Body) -> Response:  # plain def: FastAPI runs it in its thread pool
        rng = np.random.default_rng(body.seed)
        z = rng.standard_normal((body.n, latent_dim)).astype(np.float32)
        labels = np.full(body.n, body.label, dtype=np.int32)
        images = model.predict(feeds(model, z, labels, rng), verbose=0)
        pixels = np.clip((images[..., 0] + 1.0) * 127.5, 0, 255).astype(np.uint8)
        if body.format == "npy":
            buffer = io.BytesIO()
            np.save(buffer, pixels)
            return Response(buffer.getvalue(), media_type="application/x-npy")
        cols = math.ceil(math.sqrt(body.n))
        rows = math.ceil(body.n / cols)
        h, w = pixels.shape[1:]
        sheet = Image.new("L", (cols * w + (cols + 1) * 2, rows * h + (rows + 1) * 2))
        for i, image in enumerate(pixels):
            r, c = divmod(i, cols)
            sheet.paste(Image.fromarray(image), (2 + c * (w + 2), 2 + r * (h + 2)))
        buffer = io.BytesIO()
        sheet.save(buffer, format="PNG")
        return Response(buffer.getvalue(), media_type="image/png")

    @app.get("/readyz")
    def readyz() -> dict[str, bool]:
        return {"ready": True}

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    parser.add_argument(
        "--export", nargs=2, metavar=("RUN_DIR", "OUT_KERAS"), help="write the .keras file and exit"
    )
    args = parser.parse_args(argv)
    if args.export:
        export(Path(args.export[0]), Path(args.export[1]))
        return
    import uvicorn

    from service.server import SERVER_OPTIONS

    uvicorn.run(
        build_app(),
        host=args.host,
        port=args.port,
        log_level="warning",
        **SERVER_OPTIONS,
    )


if __name__ == "__main__":
    main()
