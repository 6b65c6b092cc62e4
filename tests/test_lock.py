"""The dependency lock agrees with pyproject.toml, and every install path reads it.

uv.lock is the lock; requirements/*.txt are its exports for pip. Both are written by scripts/lock and
checked here offline: `uv lock --check` fails when pyproject.toml asks for something the lock does not
hold, and a fresh export must equal the committed one byte for byte.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = ("client", "service", "train", "ray", "dev")

uv = pytest.importorskip("uv", reason="uv comes with the dev install (requirements/dev.txt)")


def run_uv(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "UV_OFFLINE": "1", "UV_NO_PROGRESS": "1"}  # never a network call from a test
    return subprocess.run(
        [uv.find_uv_bin(), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def export(extra: str, cwd: Path = ROOT) -> str:
    # The same command as scripts/lock: uv writes it into the file's header.
    out = run_uv(
        "export", "--quiet", "--frozen", "--no-emit-project", "--extra", extra, "--group", "build",
        "--format", "requirements-txt", "--output-file", f"requirements/{extra}.txt",
        cwd=cwd,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return (cwd / "requirements" / f"{extra}.txt").read_text()


def test_lock_matches_pyproject():
    out = run_uv("lock", "--check", "--python", "3.11")
    assert out.returncode == 0, f"uv.lock is stale, run scripts/lock:\n{out.stderr}"


@pytest.mark.parametrize("extra", EXTRAS)
def test_requirements_are_the_locks_export(tmp_path, extra):
    # Export from a copy so a stale committed file is reported, not silently rewritten.
    for name in ("pyproject.toml", "uv.lock", "README.md"):
        (tmp_path / name).write_bytes((ROOT / name).read_bytes())
    (tmp_path / "requirements").mkdir()
    committed = (ROOT / "requirements" / f"{extra}.txt").read_text()
    assert export(extra, cwd=tmp_path) == committed, f"requirements/{extra}.txt is stale, run scripts/lock"


def test_stale_lock_is_detected(tmp_path):
    # The guard must be able to fail: a requirement the lock has never seen makes --check refuse.
    pyproject = (ROOT / "pyproject.toml").read_text()
    pyproject = pyproject.replace('"pillow>=10.0",', '"pillow>=10.0", "six>=1",', 1)
    (tmp_path / "pyproject.toml").write_text(pyproject)
    (tmp_path / "uv.lock").write_bytes((ROOT / "uv.lock").read_bytes())
    (tmp_path / "README.md").write_bytes((ROOT / "README.md").read_bytes())
    out = run_uv("lock", "--check", "--python", "3.11", cwd=tmp_path)
    assert out.returncode != 0


def test_every_requirement_is_pinned_with_hashes():
    for extra in EXTRAS:
        text = (ROOT / "requirements" / f"{extra}.txt").read_text()
        entries = re.findall(r"^([A-Za-z0-9][^\s;]*)", text, flags=re.M)
        assert entries, extra
        for entry in entries:
            assert "==" in entry, f"{extra}: {entry} is not pinned"
        assert text.count("--hash=sha256:") >= len(entries), f"{extra}: a pin lacks its hash"


def test_install_paths_use_the_lock():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- test-command -->", 1)[1].split("<!-- /test-command -->", 1)[0]
    assert "--require-hashes -r requirements/dev.txt" in block
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--require-hashes -r /src/requirements/service.txt" in dockerfile
    assert "--require-hashes -r /src/requirements/train.txt" in dockerfile
    assert "pyproject_deps" not in dockerfile, "images install from the lock, not from pyproject ranges"


def test_readme_names_the_locked_versions():
    locked = dict(re.findall(r'^name = "([^"]+)"\nversion = "([^"]+)"', (ROOT / "uv.lock").read_text(), re.M))
    readme = (ROOT / "README.md").read_text()
    rows = dict(re.findall(r"^\| ([^|]+?) \| (\d[^|]*?) \|$", readme.split("## Dependencies", 1)[1], re.M))
    names = {"Keras": "keras", "tf2onnx": "tf2onnx", "onnxruntime": "onnxruntime", "FastAPI": "fastapi",
             "pydantic": "pydantic", "numpy": "numpy"}  # fmt: skip
    rows = {names.get(k, "tensorflow-cpu" if k.startswith("TensorFlow") else k): v for k, v in rows.items()}
    assert set(names.values()) | {"tensorflow-cpu"} <= set(rows), rows
    for name, version in rows.items():
        assert locked[name] == version, f"README says {name} {version}, the lock has {locked[name]}"
