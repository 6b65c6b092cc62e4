"""The client installs without the service or TensorFlow: it imports neither, nor the contract package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_client_imports_only_httpx_and_numpy() -> None:
    banned = {
        "service",
        "trainer",
        "cgan_contract",
        "tensorflow",
        "torch",
        "fastapi",
        "onnxruntime",
        "pydantic",
    }
    code = (
        "import sys, cgan_client; "
        f"print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in {banned!r})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "", out.stdout
