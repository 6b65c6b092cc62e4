"""Every Python and shell example in README.md runs, as a user would paste it, against a live server.

The server is started the way the README's quick start starts it (the ``cgan-serve`` line of the block
marked ``starts-server``: no MODELS_DIR, the bundled model), on a free port; ``localhost:8000`` in the
examples becomes that port, and ``localhost:8001`` (GRPC_PORT's default) its gRPC port. Each ``bash``
block runs under ``bash -euo pipefail`` with ``curl`` failing on an HTTP error (``--fail-with-body``), each
``python`` block under this interpreter, in one working directory per block holding ``models/`` (a copy of
the bundled model, as if trained). A wrong model name, version or
field in an example is a non-2xx answer, so it fails here; the server's own count of 4xx/5xx answers must not
move either, which catches an example that ignores its error.

A block may be marked on the line before it (``<!-- readme-test: ... -->``):

* ``skip: <why>``: not run (Docker, a cluster, a 23-minute training, installs); the reason is in the README.
* ``starts-server``: its ``cgan-serve`` line is how the server here is started; its other lines are installs.
* ``server: infogan``: run against a second server that serves a small model with style codes under the
  name the example uses (no InfoGAN is bundled).
* ``needs: torch``: run when torch is installed (``.ci/run`` installs it), skipped otherwise.
* ``client-install``: the client's install line, run by :func:`test_client_installs_alone_into_an_empty_venv`.

Examples that ask for more images than a test should make are shrunk by the explicit substitutions in
:data:`SMALLER`, each of which must apply (so none goes stale silently); the names and fields stay as written.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
import venv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cgan_testing.fakes import write_version
from cgan_testing.live_server import LiveServer

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BUNDLED = ROOT / "service" / "bundled"

pytestmark = pytest.mark.slow

#: Examples of full-size data sets, made smaller here (example text -> what runs). Each must occur.
SMALLER = {
    '"per_label": 1000, "seed": 0}\' -o synthetic.npz': '"per_label": 20, "seed": 0}\' -o synthetic.npz',
    '"per_label": 1000, "seed": 0, "min_confidence"': '"per_label": 20, "seed": 0, "min_confidence"',
    "--per-label 10000": "--per-label 30",
    "api.dataset(per_label=1000, seed=0)": "api.dataset(per_label=20, seed=0)",
    "per_label=1000)  # 10,000 images a pass": "per_label=100)  # 10,000 images a pass",
    "ServiceDataset(api.config, per_label=1000)": "ServiceDataset(api.config, per_label=100)",
}
_BLOCK = re.compile(
    r"(?:^ *<!-- readme-test: (?P<mark>[^>]*?) -->\n)?"
    r"^(?P<indent> *)```(?P<lang>bash|python)\n(?P<code>.*?)^(?P=indent)```$",
    re.S | re.M,
)


@dataclass(frozen=True)
class Example:
    line: int
    lang: str
    code: str
    mark: str

    @property
    def id(self) -> str:
        return f"README.md:{self.line}-{self.lang}"


def examples() -> list[Example]:
    text = README.read_text()
    return [
        Example(
            text.count("\n", 0, m.start("code")),
            m["lang"],
            textwrap.dedent(m["code"]),
            (m["mark"] or "").strip(),
        )
        for m in _BLOCK.finditer(text)
    ]


def _marked(prefix: str) -> list[Example]:
    return [e for e in examples() if e.mark.startswith(prefix)]


def _errors(url: str) -> float:
    """4xx and 5xx answers the server has given so far (summed over its workers)."""
    families = text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=10).text)
    return sum(
        s.value
        for f in families
        if f.name == "cgan_http_requests"
        for s in f.samples
        if s.name.endswith("_total") and s.labels.get("status", "2")[0] in "45"
    )


def _server_command() -> list[str]:
    (example,) = _marked("starts-server")
    lines = [line.split("#")[0].strip() for line in example.code.splitlines()]
    (command,) = [line for line in lines if line.startswith("cgan-serve ")]
    return command.split()


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, LiveServer]]:
    root = tmp_path_factory.mktemp("readme")
    argv = _server_command()
    assert argv[:2] == ["cgan-serve", "--host"] and "--port" in argv, argv
    bundled = LiveServer(
        None,
        root / "bundled.log",
        cwd=root,  # no ./models here: the README's "no MODELS_DIR, no ./models" start
        argv=("-m", "service", *argv[1 : argv.index("--port")]),
        BUNDLED_MODELS="1",
        WORKERS="2",
    )
    codes = root / "codes"
    codes.mkdir()
    write_version(codes, "mnist-5k-infogan-conv", 1, num_codes=2)
    infogan = LiveServer(codes, root / "infogan.log")
    try:
        yield {"bundled": bundled, "infogan": infogan}
    finally:
        bundled.stop()
        infogan.stop()


def _runnable() -> list[Example]:
    return [e for e in examples() if not e.mark.startswith(("skip", "starts-server", "client-install"))]


def test_every_example_is_run_or_marked_with_a_reason() -> None:
    found = examples()
    assert len(found) >= 15, "the README's examples were not found: has the block syntax changed?"
    for example in found:
        if example.mark.startswith("skip"):
            assert len(example.mark.removeprefix("skip:").strip()) > 10, (
                f"{example.id}: say why it is skipped"
            )
        else:
            assert example.mark in (
                "",
                "starts-server",
                "server: infogan",
                "needs: torch",
                "client-install",
            ), f"{example.id}: unknown mark {example.mark!r}"
    text = "\n".join(e.code for e in _runnable())
    for original in SMALLER:
        assert original in text, f"SMALLER[{original!r}] no longer occurs in a runnable README example"


def _prepare(example: Example, server: LiveServer, cwd: Path) -> str:
    code = example.code
    for original, smaller in SMALLER.items():
        code = code.replace(original, smaller)
    shutil.copytree(BUNDLED, cwd / "models")
    # localhost:8001 is GRPC_PORT's default: the server here serves gRPC on a free port of its own.
    code = code.replace("localhost:8001", server.grpc_host)
    return code.replace("localhost:8000", f"127.0.0.1:{server.port}")


@pytest.mark.parametrize("example", _runnable(), ids=lambda e: e.id)
def test_readme_example_runs(example: Example, servers: dict[str, LiveServer], tmp_path: Path) -> None:
    if example.mark == "needs: torch":
        pytest.importorskip("torch", reason="torch is not installed: this example needs it")
    server = servers["infogan" if example.mark == "server: infogan" else "bundled"]
    code = _prepare(example, server, tmp_path)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
    }
    errors = _errors(server.url)
    if example.lang == "bash":
        prelude = 'curl() { command curl --fail-with-body "$@"; }\n'
        argv = ["bash", "-euo", "pipefail", "-c", prelude + code]
    else:
        argv = [sys.executable, "-c", code]
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (
        f"{example.id} failed:\n{code}\n--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
    )
    assert _errors(server.url) == errors, f"{example.id}: the server answered an error:\n{server.log_tail()}"


def test_client_installs_alone_into_an_empty_venv(servers: dict[str, LiveServer], tmp_path: Path) -> None:
    # The README's client install line, in a venv with nothing else, then the client example against the
    # live server with that venv's Python: neither the service's nor the trainer's dependencies are needed.
    (install,) = _marked("client-install")
    home = tmp_path / "venv"
    venv.create(home, with_pip=True)
    python = home / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{home / 'bin'}:{env['PATH']}"
    checkout = tmp_path / "checkout"  # a copy: building the wheel writes build/ beside the sources
    files = (
        subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, checkout / name)
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", install.code],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (example,) = [
        e for e in _runnable() if "from cgan_client import Client" in e.code and "api.dataset(" in e.code
    ]
    code = _prepare(example, servers["bundled"], tmp_path) + "\nprint(x.shape, y.shape)\n"
    check = (
        "import sys\n"
        "for name in ('fastapi', 'onnxruntime', 'tensorflow', 'keras'):\n"
        "    try:\n        __import__(name)\n    except ImportError:\n        continue\n"
        "    sys.exit(f'{name} is installed: not a client-only venv')\n"
    )
    done = subprocess.run(
        [python, "-c", check + code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.strip().endswith("(200, 28, 28) (200,)"), done.stdout
