"""The floor: the cheapest FastAPI ``POST /generate`` there is, served with the service's uvicorn settings.

It parses the same JSON body into a pydantic model (as any FastAPI endpoint does) and answers a constant
~300-byte PNG. Whatever the real service costs above this is model, encoding and its own middleware.

    python -m bench.peers.floor_app --host 127.0.0.1 --port 8001
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402
import uvicorn  # noqa: E402
from fastapi import FastAPI, Response  # noqa: E402
from pydantic import BaseModel  # noqa: E402

from service.imaging import png  # noqa: E402
from service.server import SERVER_OPTIONS  # noqa: E402


def _constant_png() -> bytes:
    """A 28x28 ring with a sprinkle of grey pixels: ~300 bytes of real PNG, made once."""
    yy, xx = np.mgrid[:28, :28]
    image = np.where(np.abs(np.hypot(yy - 13.5, xx - 13.5) - 8) < 2, 255, 0).astype(np.uint8)
    rng = np.random.default_rng(0)
    image.flat[rng.integers(0, image.size, 80)] = rng.integers(0, 256, 80)
    return png(image, 1)


PNG = _constant_png()


class Body(BaseModel):
    label: int | str
    n: int = 16
    seed: int | None = None
    format: str = "png"


app = FastAPI()


@app.post("/generate")
async def generate(body: Body) -> Response:
    return Response(PNG, media_type="image/png")


@app.get("/readyz")
async def readyz() -> dict[str, bool]:
    return {"ready": True}


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args(argv)
    # The service's own uvicorn settings, so the floor differs from it only in the work done.
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        **SERVER_OPTIONS,
    )


if __name__ == "__main__":
    main()
