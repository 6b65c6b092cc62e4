"""Container packaging: Dockerfile, docker-compose.yml, .dockerignore; a TensorFlow-free service and CLI.

Linters (hadolint, docker-compose) come with the dev extra; a test that needs one skips, saying so, only
when it is not installed. The structural checks need nothing but the files and always run. The end-to-end
container run is scripts/container-smoke.sh (needs a docker engine; CI runs it after the tests).
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE_FILE = ROOT / "docker-compose.yml"
SMOKE = ROOT / "scripts" / "container-smoke.sh"
BUNDLED = ROOT / "service" / "bundled"


def _bundled_names() -> set[str]:
    return {p.parent.parent.name for p in BUNDLED.glob("*/*/model.onnx")}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (requirements/dev.txt provides it)")
    return path


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    # Compose interpolates these; the checks below are about the file's defaults, not this shell.
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("TRAIN_", "SERVICE_", "MODEL_", "BUNDLED_"))
    }
    env.pop("API_TOKEN", None)
    env.pop("BASE_IMAGE", None)
    env.pop("COMPOSE_FILE", None)
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, **kwargs)


# --- Dockerfile -------------------------------------------------------------------------------------------


def _stages() -> dict[str, list[str]]:
    """Dockerfile instructions per stage name (continuation lines joined, comments dropped)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: dict[str, list[str]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if match:
            current = match[2] or match[1]
            stages[current] = [line]
        elif current is not None:
            stages[current].append(line)
    return stages


def _instructions(stage: list[str], keyword: str) -> list[str]:
    return [line[len(keyword) :].strip() for line in stage if line.upper().startswith(keyword + " ")]


def _packages() -> set[str]:
    """The top-level packages pyproject.toml installs: directories that match ``packages.find``."""
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    found = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()}
    return {
        name
        for name in found
        if any(re.fullmatch(pat.replace("*", ".*"), name) for pat in patterns["include"])
    }


def _copied_packages(stage: list[str]) -> set[str]:
    """Packages a stage COPYs from the build context (first path of each COPY without --from)."""
    sources = [c.split()[0] for c in _instructions(stage, "COPY") if not c.startswith("--")]
    return {s.rstrip("/") for s in sources} & _packages()


def test_dockerfile_hadolint_clean():
    hadolint = _tool("hadolint")
    result = _run([hadolint, "--failure-threshold", "info", str(DOCKERFILE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_has_both_targets_on_a_configurable_base():
    text = DOCKERFILE.read_text()
    stages = _stages()
    assert {"trainer", "service"} <= set(stages), sorted(stages)
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim$", text, re.MULTILINE)
    assert re.search(r"^FROM \$\{BASE_IMAGE\} AS base$", text, re.MULTILINE)
    env = " ".join(_instructions(stages["base"], "ENV"))
    for var in ("PYTHONDONTWRITEBYTECODE=1", "PIP_NO_CACHE_DIR=1", "MODELS_DIR=/models", "/opt/venv"):
        assert var in env, var
    # Only classic-builder syntax: the smoke script builds with a plain docker.io engine.
    assert "--mount=" not in text and "<<" not in text


def test_trainer_target():
    trainer = _stages()["trainer"]
    runs = " ".join(_instructions(trainer, "RUN"))
    assert "python3 -m venv /opt/venv" in runs
    assert "--require-hashes -r /src/requirements/train.txt" in runs, "trainer installs the locked [train]"
    assert _instructions(trainer, "ENTRYPOINT") == ['["cgan-train"]']
    users = _instructions(trainer, "USER")
    assert users and not users[-1].startswith(("0", "root")), users


def test_service_target_is_small_non_root_and_healthchecked():
    stages = _stages()
    service = stages["service"]
    build = stages["service-build"]
    runs = " ".join(_instructions(build, "RUN"))
    assert "--require-hashes -r /src/requirements/service.txt" in runs, "service installs the lock"
    assert " train" not in runs.replace("trainer", "")
    # The final stage copies the venv from the builder and installs nothing itself.
    assert any("--from=service-build /opt/venv /opt/venv" in c for c in _instructions(service, "COPY"))
    assert not any("pip" in r for r in _instructions(service, "RUN"))
    users = _instructions(service, "USER")
    assert users and users[-1].split(":")[0] not in ("0", "root"), users
    assert _instructions(service, "EXPOSE") == ["8000", "8001"]  # HTTP, and gRPC (GRPC_PORT's default)
    health = " ".join(_instructions(service, "HEALTHCHECK"))
    assert "/readyz" in health and "urllib" in health and "curl" not in health
    entry = _instructions(service, "ENTRYPOINT") + _instructions(service, "CMD")
    assert entry[0] == '["cgan-serve"]' and "0.0.0.0" in entry[1] and "8000" in entry[1], entry


def test_packages_are_the_three_siblings_and_the_client():
    # cgan_client is for consumers of the service: it imports none of the other three (see its own tests).
    assert _packages() == {"cgan_client", "cgan_contract", "service", "trainer"}


def test_dev_only_packages_are_not_shipped():
    # cgan_testing (tiny models, a live server, a Ray cluster for tests and bench), tests and bench are
    # packages in the checkout only: not in the wheel, not in the images' build context.
    dev_only = {"cgan_testing", "tests", "bench"}
    assert dev_only <= {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()}
    assert not dev_only & _packages()
    ignore = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()]
    assert not any(ln.startswith(tuple(f"!{p}" for p in dev_only)) for ln in ignore), ignore


def test_each_image_copies_the_packages_it_runs_and_no_other():
    # The service runs on the contract without the trainer; the trainer on the contract without the service.
    stages = _stages()
    assert _copied_packages(stages["service-build"]) == {"cgan_contract", "service"}
    assert _copied_packages(stages["trainer"]) == {"cgan_contract", "trainer"}


def test_dependencies_are_installed_before_the_source_is_copied():
    packages = "|".join(sorted(_packages()))
    for deps_stage in ("trainer", "service-build"):
        lines = _stages()[deps_stage]
        first_source = next(i for i, line in enumerate(lines) if re.match(rf"COPY ({packages}) ", line))
        deps = next(i for i, line in enumerate(lines) if "pip install --require-hashes -r" in line)
        lock = next(i for i, line in enumerate(lines) if line.startswith("COPY requirements/"))
        assert lock < deps < first_source, deps_stage


def test_service_lock_has_no_tensorflow():
    # The service image installs requirements/service.txt: the lock itself must not drag TensorFlow in.
    pinned = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", re.M)
    names = pinned.findall((ROOT / "requirements" / "service.txt").read_text())
    assert {"onnxruntime", "fastapi", "numpy"} <= set(names)
    assert not any(n.lower().startswith(("tensorflow", "keras", "tf2onnx", "tf-")) for n in names), names
    train = pinned.findall((ROOT / "requirements" / "train.txt").read_text())
    assert {"tensorflow-cpu", "tensorflow", "keras", "tf2onnx"} <= set(train)


def test_dockerignore_keeps_the_context_small():
    lines = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    assert lines[0] == "*", "whitelist: ignore everything, then re-include"
    needed = ["!pyproject.toml", "!requirements/", *(f"!{p}/" for p in sorted(_packages()))]
    assert {"!service/", "!trainer/", "!cgan_contract/"} <= set(needed)
    for entry in needed:
        assert entry in lines, entry
    # Nothing after the re-include drops the bundled model the service image must serve at once.
    after = lines[lines.index("!service/") + 1 :]
    bundled = [str(p.relative_to(ROOT)) for p in BUNDLED.glob("*/*/*")]
    assert bundled, "no bundled model under service/bundled"
    for path in bundled:
        dropped = [pat for pat in after if not pat.startswith("!") and fnmatch.fnmatch(path, pat.lstrip("/"))]
        assert not dropped, (path, dropped)


def test_service_build_installs_and_checks_the_bundled_model():
    build = _stages()["service-build"]
    assert "service" in _copied_packages(build)
    runs = " ".join(_instructions(build, "RUN"))
    assert "BUNDLED_DIR" in runs and "model.onnx" in runs, "the build fails when the bundle is missing"


def test_wheel_ships_the_bundled_model(tmp_path):
    # The service image installs the project as a wheel, so package data is what reaches the image. Built
    # with the locked backend (what `pip install --no-build-isolation` uses) from a copy of the sources,
    # so the checkout gets no build/ or egg-info.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for package in sorted(_packages()):
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    build = "import sys; from setuptools import build_meta; print(build_meta.build_wheel(sys.argv[1]))"
    result = subprocess.run(
        [sys.executable, "-c", build, str(tmp_path)], cwd=src, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = tmp_path.glob("cgan_synth-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = {name: archive.getinfo(name).file_size for name in archive.namelist()}
    bundled = {str(p.relative_to(ROOT)): p.stat().st_size for p in BUNDLED.glob("*/*/*") if p.is_file()}
    assert bundled and {n: shipped.get(n) for n in bundled} == bundled


# --- docker-compose.yml -----------------------------------------------------------------------------------


def _compose() -> str:
    return _tool("docker-compose")


def test_compose_file_validates():
    result = _run([_compose(), "-f", str(COMPOSE_FILE), "config", "-q"])
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def compose_config() -> dict:
    result = _run([_compose(), "-f", str(COMPOSE_FILE), "config", "--format", "json"])
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _trainer_argv(trainer: dict, tmp_path: Path, **env: str) -> list[str]:
    """Run the compose trainer's command with a stub cgan-train; return the argv the stub received."""
    stub_dir = tmp_path / "bin"
    stub_dir.mkdir(exist_ok=True)
    stub = stub_dir / "cgan-train"
    stub.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done > "$ARGV_OUT"\n')
    stub.chmod(0o755)
    out = tmp_path / "argv.txt"
    # `$$` in a compose file is a literal `$` in the container.
    script = [part.replace("$$", "$") for part in trainer["command"]]
    run_env = {**{k: str(v) for k, v in trainer["environment"].items()}, **env}
    run_env |= {"PATH": f"{stub_dir}:/usr/bin:/bin", "ARGV_OUT": str(out)}
    result = subprocess.run(
        [*trainer["entrypoint"], *script], env=run_env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    return out.read_text().splitlines()


def test_compose_trainer_is_a_one_shot_job_into_the_models_volume(compose_config, tmp_path):
    trainer = compose_config["services"]["trainer"]
    assert trainer["build"]["target"] == "trainer"
    assert trainer["build"]["args"]["BASE_IMAGE"] == "python:3.11-slim"
    assert trainer["image"] == "cgan-synth/trainer:local"
    assert trainer.get("restart", "no") == "no"
    assert [(v["source"], v["target"], v.get("read_only", False)) for v in trainer["volumes"]] == [
        ("models", "/models", False)
    ]
    assert "models" in compose_config["volumes"]
    assert trainer["environment"]["MODELS_DIR"] == "/models"
    assert trainer["user"].split(":")[0] not in ("", "0", "root")
    # Defaults: only the dataset, name and output are given; the trainer's recipe decides the rest. The
    # name is the bundled model's, so the trained version supersedes it in the running service.
    assert _trainer_argv(trainer, tmp_path) == [
        "train",
        "--dataset",
        "mnist-5k",
        "--name",
        "mnist-5k-cgan-conv",
        "--out",
        "/models",
    ]
    assert "mnist-5k-cgan-conv" in _bundled_names()


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"TRAIN_DATASET": "fashion-mnist"},
        {"TRAIN_ARCH": "dense"},
        {"TRAIN_VARIANT": "acgan", "TRAIN_DATASET": "mnist"},
        {"TRAIN_MODEL": "infogan", "TRAIN_ARCH": "dense"},  # TRAIN_VARIANT's old name
        {"TRAIN_VARIANT": "ebgan", "TRAIN_MODEL": "acgan"},  # the new name wins
    ],
)
def test_compose_model_name_is_the_trainers_own_default_name(env):
    # Compose cannot ask the trainer, so it spells the trainer's <dataset>-<variant>-<arch> rule itself;
    # this holds the two together for every dataset's recipe.
    from trainer.config import TrainConfig

    result = subprocess.run(
        [_compose(), "-f", str(COMPOSE_FILE), "config", "--format", "json"],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith(("TRAIN_", "MODEL_"))} | env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    config = TrainConfig.for_dataset(
        env.get("TRAIN_DATASET", "mnist-5k"),
        variant=env.get("TRAIN_VARIANT", env.get("TRAIN_MODEL")),
        arch=env.get("TRAIN_ARCH"),
    )
    assert services["trainer"]["environment"]["MODEL_NAME"] == config.name
    assert services["service"]["environment"]["DEFAULT_MODEL"] == config.name


def test_compose_trainer_flags_follow_the_environment(compose_config, tmp_path):
    trainer = compose_config["services"]["trainer"]
    argv = _trainer_argv(
        trainer,
        tmp_path,
        TRAIN_VARIANT="acgan",
        TRAIN_ARCH="dense",
        TRAIN_STEPS="20",
        TRAIN_BATCH_SIZE="16",
        MODEL_NAME="smoke",
    )
    assert argv[0] == "train"
    opts = dict(zip(argv[1::2], argv[2::2], strict=True))
    assert opts == {
        "--dataset": "mnist-5k",
        "--name": "smoke",
        "--out": "/models",
        "--variant": "acgan",
        "--arch": "dense",
        "--steps": "20",
        "--batch-size": "16",
    }


def test_compose_service_is_hardened_and_starts_without_the_trainer(compose_config):
    service = compose_config["services"]["service"]
    assert service["build"]["target"] == "service"
    assert service["image"] == "cgan-synth/service:local"
    # It serves the bundled model at once and hot-swaps the trainer's version in: no waiting on the trainer,
    # and `docker compose up service` must not start the trainer either.
    assert "depends_on" not in service
    assert "depends_on" not in compose_config["services"]["trainer"]
    assert not compose_config["services"]["trainer"].get("profiles"), "`docker compose up` trains too"
    assert service["environment"]["BUNDLED_MODELS"] == "1"
    assert service["environment"]["DEFAULT_MODEL"] in _bundled_names(), "ready at once on the bundle"
    (volume,) = service["volumes"]
    assert (volume["source"], volume["target"], volume.get("read_only")) == ("models", "/models", True)
    assert service["read_only"] is True
    assert any(t.split(":")[0] == "/tmp" for t in service["tmpfs"])
    assert service["user"].split(":")[0] not in ("", "0", "root")
    assert "no-new-privileges:true" in service["security_opt"]
    assert service["cap_drop"] == ["ALL"]
    assert "/readyz" in " ".join(service["healthcheck"]["test"])
    http, grpc = service["ports"]  # bound to loopback like each other (SERVICE_BIND)
    assert (http["target"], str(http["published"])) == (8000, "8000")
    assert (grpc["target"], str(grpc["published"])) == (8001, "8001")
    assert http.get("host_ip") == grpc.get("host_ip") == "127.0.0.1"
    env = service["environment"]
    assert env["MODELS_DIR"] == "/models"
    assert env["DEFAULT_MODEL"] == compose_config["services"]["trainer"]["environment"]["MODEL_NAME"]
    assert env.get("API_TOKEN") is None, "no token unless API_TOKEN is set"


def test_compose_settings_come_from_the_environment():
    env = {
        "TRAIN_DATASET": "fashion-mnist",
        "TRAIN_STEPS": "7",
        "TRAIN_VARIANT": "acgan",
        "TRAIN_ARCH": "conv",
        "MODEL_NAME": "fashion",
        "SERVICE_PORT": "9123",
        "SERVICE_GRPC_PORT": "9124",
        "API_TOKEN": "s3cret",
        "BASE_IMAGE": "debian-local:bookworm",
        "TRAINER_IMAGE": "reg.example/t:1",
        "SERVICE_IMAGE": "reg.example/s:1",
        "BUNDLED_MODELS": "0",
    }
    compose = _compose()
    result = subprocess.run(
        [compose, "-f", str(COMPOSE_FILE), "config", "--format", "json"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    trainer, service = config["services"]["trainer"], config["services"]["service"]
    assert {k: trainer["environment"][k] for k in env if k.startswith(("TRAIN_", "MODEL_"))} == {
        k: v for k, v in env.items() if k.startswith(("TRAIN_", "MODEL_"))
    }
    assert service["environment"]["DEFAULT_MODEL"] == "fashion"
    assert service["environment"]["API_TOKEN"] == "s3cret"
    assert service["environment"]["BUNDLED_MODELS"] == "0"
    assert str(service["ports"][0]["published"]) == "9123"
    assert (str(service["ports"][1]["published"]), service["ports"][1]["target"]) == ("9124", 8001)
    assert (
        trainer["build"]["args"]["BASE_IMAGE"]
        == service["build"]["args"]["BASE_IMAGE"]
        == "debian-local:bookworm"
    )
    assert (trainer["image"], service["image"]) == ("reg.example/t:1", "reg.example/s:1")


_UNITS = {
    "": 1,
    "b": 1,
    "k": 1 << 10,
    "m": 1 << 20,
    "g": 1 << 30,
    "ki": 1 << 10,
    "mi": 1 << 20,
    "gi": 1 << 30,
}


def _bytes(size: str | int) -> int:
    """A memory size as compose (``1g``, ``1024m``, bytes) or Kubernetes (``1Gi``) writes it, in bytes."""
    number, unit = re.fullmatch(r"(\d+)\s*([kmg]i?|b)?b?", str(size).strip().lower()).groups()  # type: ignore[union-attr]
    return int(number) * _UNITS[unit or ""]


def test_compose_service_has_the_k8s_pods_limits_and_a_worker_per_core():
    # Without limits the service sizes itself by the host (a worker per host core, each loading every model,
    # MAX_CONCURRENCY 8 a core): what the k8s pod is given (2 cores, 1Gi) is what compose gives it too.
    import yaml

    service = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["service"]
    pod = yaml.safe_load((ROOT / "deploy" / "k8s" / "base" / "serve-deployment.yaml").read_text())
    (serve,) = [c for c in pod["spec"]["template"]["spec"]["containers"] if c["name"] == "serve"]
    k8s = serve["resources"]["limits"]
    limits = service.get("deploy", {}).get("resources", {}).get("limits", {})
    assert limits, "docker-compose.yml: the service needs deploy.resources.limits"
    assert float(limits["cpus"]) == float(k8s["cpu"]) == 2
    assert _bytes(limits["memory"]) == _bytes(k8s["memory"]) == 1 << 30
    assert "mem_limit" not in service and "cpus" not in service, "one place for the limits"
    # One worker per core the limit allows (the service would read the cgroup quota too; said outright).
    assert int(service["environment"]["WORKERS"]) == int(float(limits["cpus"]))


# --- smoke script -----------------------------------------------------------------------------------------


def test_smoke_script_is_strict_bash():
    text = SMOKE.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    assert os.access(SMOKE, os.X_OK), "scripts/container-smoke.sh must be executable"
    result = subprocess.run(["bash", "-n", str(SMOKE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_smoke_script_shows_the_bundled_model_first_and_the_trained_one_after():
    text = SMOKE.read_text()
    # The tiny run publishes under the bundled model's name, so the swap from bundle to volume is visible.
    default_name = re.search(r'^export MODEL_NAME="\$\{MODEL_NAME:-([^}]+)\}"$', text, re.M)
    assert default_name and default_name[1] in _bundled_names()
    stages = re.findall(r'^stage "([^"]+)" (\w+)', text, re.M)
    order = [fn for _, fn in stages]
    assert order.index("compose_up") < order.index("first_image") < order.index("wait_trained_version")
    assert order.index("wait_trained_version") < order.index("check_generate")
    assert "--wait" not in re.search(r"^compose_up\(\) \{.*?^\}", text, re.M | re.S)[0]


def test_smoke_script_shellcheck():
    shellcheck = _tool("shellcheck")
    result = _run([shellcheck, str(SMOKE)])
    assert result.returncode == 0, result.stdout


# --- the service must not need TensorFlow -----------------------------------------------------------------


def test_service_import_pulls_in_no_tensorflow():
    code = (
        "import service.app, sys; "
        "bad = sorted(m for m in sys.modules if m == 'tensorflow' or m.startswith('tensorflow.')); "
        "assert not bad, bad[:5]"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]


# --- nor the trainer's command line ------------------------------------------------------------------------

_NO_TENSORFLOW = (
    "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf2onnx')); "
    "assert not bad, bad[:5]"
)


def test_trainer_cli_import_pulls_in_no_tensorflow():
    code = "import sys, trainer.cli; " + _NO_TENSORFLOW
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize(
    "argv", [["--help"], ["train", "--help"], ["export", "--help"], ["evaluate", "--help"]]
)
def test_cgan_train_help_pulls_in_no_tensorflow(argv):
    # What the cgan-train console script runs (trainer.cli:main), in a process we can look inside.
    code = (
        "import sys; from trainer.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "print('usage ok')\n" + _NO_TENSORFLOW.replace("; ", "\n")
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("usage: cgan-train") and "usage ok" in result.stdout


@pytest.mark.parametrize(
    "argv", [["train", "--dataset", "mnist-5k", "--steps", "1"], ["evaluate", "models/mnist-5k-cgan-conv/1"]]
)
def test_cgan_train_without_the_train_extra_is_one_line(argv, tmp_path):
    # A service-only install: TensorFlow and Keras cannot be imported. Each command says what to install.
    shutil.copytree(ROOT / "service" / "bundled", tmp_path / "models")
    code = (
        "import sys, importlib.abc\n"
        "class Hide(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('tensorflow', 'keras', 'tf2onnx'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Hide())\n"
        f"from trainer.cli import main\nsys.exit(main({argv!r}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if not line.startswith("INFO ")]
    assert len(lines) == 1 and "needs the train extra" in lines[0], result.stderr[-2000:]
    assert lines[0].startswith(f"cgan-train {argv[0]}: error:") and "requirements/train.txt" in lines[0]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--port", "99999"], "cgan-serve: error: --port must be 0..65535, got 99999"),
        (["--port", "abc"], "cgan-serve: error: argument --port: invalid int value: 'abc'"),
        (
            ["--host", "no-such-host.invalid", "--port", "0"],
            "cgan-serve: error: cannot listen on no-such-host.invalid:0",
        ),
        (["--workers", "-1"], "cgan-serve: WORKERS"),
    ],
)
def test_cgan_serve_bad_address_is_one_line(args, message, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "service", *args], cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(message), result.stderr[-2000:]


def test_cgan_serve_without_models_dir_logs_no_warning(tmp_path):
    # The documented start (README: no MODELS_DIR, no ./models) serves the bundle; nothing is wrong.
    from service.config import Settings
    from service.metrics import Metrics
    from service.models import ModelRegistry

    registry = ModelRegistry(Settings(models_dir=tmp_path / "models"), Metrics())
    with _captured("service.models.registry") as records, _captured("service.models.listing") as listed:
        registry.scan()
        registry.scan()
    records += listed
    assert "mnist-5k-cgan-conv" in registry.models
    assert [r.levelname for r in records if r.levelno >= logging.WARNING] == []
    absent = [r.getMessage() for r in records if "does not exist" in r.getMessage()]
    assert len(absent) == 1, "said once, not per scan"


@contextlib.contextmanager
def _captured(name: str):
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    old, logger.level = logger.level, logging.INFO
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)


def test_cgan_train_console_script_answers_help():
    script = shutil.which("cgan-train", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("cgan-train is not installed in this environment (pip install -e .)")
    result = subprocess.run([script, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.startswith("usage: cgan-train"), result.stderr
