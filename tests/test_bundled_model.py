"""The trained default model in service/bundled/: intact, loadable, and made by the documented command.

scripts/bundle-default-model regenerates it; these checks hold the bundle, its card, the script and the
README to each other.
"""

from __future__ import annotations

import hashlib
import re
import shlex
import tomllib
from pathlib import Path

import numpy as np
import pytest

import cgan_contract as contract
from service.config import BUNDLED_DIR, Settings
from service.metrics import Metrics
from service.models import ModelRegistry

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "bundle-default-model"
VERSION_DIRS = sorted(p.parent for p in BUNDLED_DIR.glob(f"*/*/{contract.CARD_FILE}"))
#: Distributions whose versions the card must record (tensorflow is tensorflow-cpu on x86_64).
RECORDED = {"keras", "tf2onnx", "onnxruntime", "numpy"}


def _script_commands() -> dict[str, str]:
    found = dict(re.findall(r'^    "([a-z0-9-]+)": "(cgan-train train [^"]+)",$', SCRIPT.read_text(), re.M))
    assert found, "scripts/bundle-default-model defines TRAIN_COMMANDS"
    return found


def _locked_versions() -> dict[str, set[str]]:
    locked: dict[str, set[str]] = {}
    for package in tomllib.loads((ROOT / "uv.lock").read_text())["package"]:
        locked.setdefault(package["name"], set()).add(package["version"])
    return locked


def test_the_bundled_dir_is_the_service_package_data_dir():
    assert BUNDLED_DIR == ROOT / "service" / "bundled"
    assert {p.relative_to(BUNDLED_DIR).parts[0] for p in VERSION_DIRS} >= {"mnist-5k-cgan-conv"}


@pytest.mark.parametrize("version_dir", VERSION_DIRS, ids=lambda p: f"{p.parent.name}-v{p.name}")
def test_bundle_matches_its_card(version_dir: Path):
    card = contract.read_card(version_dir)
    assert (card.name, str(card.version)) == (version_dir.parent.name, version_dir.name)
    assert hashlib.sha256((version_dir / contract.MODEL_FILE).read_bytes()).hexdigest() == card.sha256
    files = sorted(p.name for p in version_dir.iterdir())
    assert files == sorted([contract.CARD_FILE, contract.MODEL_FILE, contract.JUDGE_FILE])
    # The judge the quality figures come from, for min_confidence: hashed on the card, small.
    assert card.judge is not None and card.quality is not None
    assert hashlib.sha256((version_dir / contract.JUDGE_FILE).read_bytes()).hexdigest() == card.judge.sha256
    assert card.judge.dataset == card.dataset
    assert card.judge.test_accuracy == card.quality.judge_test_accuracy
    assert (version_dir / contract.JUDGE_FILE).stat().st_size < 4 * 2**20
    assert card.quality is not None, "evaluated before bundling"
    assert card.quality.label_accuracy > 0.9 and not card.quality.mode_collapse


@pytest.mark.parametrize("version_dir", VERSION_DIRS, ids=lambda p: f"{p.parent.name}-v{p.name}")
def test_card_command_is_the_documented_one_and_made_this_model(version_dir: Path):
    from trainer.cli import build_parser, make_config
    from trainer.config import fast_compute_dtype

    card = contract.read_card(version_dir)
    assert card.provenance is not None
    command = card.provenance.command
    assert command == _script_commands()[card.dataset]
    assert command in (ROOT / "README.md").read_text(), "the README documents the command"
    # The command, parsed by the trainer's own CLI (its variant's recipe), gives this card's training facts.
    config = make_config(build_parser().parse_args(shlex.split(command)[1:]))
    assert card.training is not None
    assert (card.name, card.dataset, card.variant, card.arch, card.latent_dim) == (
        config.name,
        config.dataset,
        config.variant,
        config.arch,
        config.latent_dim,
    )
    assert (card.training.steps, card.training.batch_size, card.training.seed) == (
        config.steps,
        config.batch_size,
        config.seed,
    )
    # The arithmetic's dtype is the machine's (bfloat16 where the CPU has it: fast_compute_dtype), not
    # the command's; the card records which one this model was trained in (absent: float32).
    assert config.recipe.compute_dtype == fast_compute_dtype()
    recipe = {k: v for k, v in config.recipe.flat().items() if k != "compute_dtype"}
    stored = {k: v for k, v in card.training.recipe.items() if k != "compute_dtype"}
    # Knobs the card records that this variant has not are other variants' (older trainers recorded every
    # variant's knobs for every run; the variant never read them).
    common = recipe.keys() & stored.keys()
    assert {key: stored[key] for key in common} == {key: recipe[key] for key in common}
    # Recipe knobs added after this model was trained are at their defaults.
    defaults = config.recipe.defaults()
    assert all(recipe[key] == defaults[key] for key in recipe.keys() - stored.keys())


@pytest.mark.parametrize("version_dir", VERSION_DIRS, ids=lambda p: f"{p.parent.name}-v{p.name}")
def test_card_records_the_locked_package_versions(version_dir: Path):
    card = contract.read_card(version_dir)
    assert card.provenance is not None
    packages = card.provenance.packages
    assert set(packages) >= RECORDED and {"tensorflow", "tensorflow-cpu"} & set(packages), packages
    locked = _locked_versions()
    wrong = {name: v for name, v in packages.items() if v not in locked.get(name, set())}
    assert not wrong, f"not the lock's versions (uv.lock): {wrong}"


@pytest.mark.parametrize("version_dir", VERSION_DIRS, ids=lambda p: f"{p.parent.name}-v{p.name}")
def test_bundle_loads_in_the_service_and_draws_every_class(version_dir: Path, tmp_path: Path):
    # The bundled models at their shipped location, over an empty MODELS_DIR.
    settings = Settings(
        models_dir=tmp_path, bundled_models=True, bundled_models_dir=BUNDLED_DIR, ort_intra_op_threads=1
    )
    registry = ModelRegistry(settings, Metrics())
    card = contract.read_card(version_dir)
    registry.scan()
    model = registry.loaded[card.name][card.version]
    assert (model.source, model.path, model.card) == ("bundled", version_dir, card)
    assert model.judge is not None
    labels = np.repeat(np.arange(card.num_classes, dtype=np.int64), 4)
    images = model.generate(labels, contract.request_seeds(0, len(labels)))
    assert images.shape == (len(labels), *card.image_shape) and images.dtype == np.uint8
    # Ink on background, and no image repeated: a sanity floor (the card's quality section is the measure).
    ink = (images > 127).mean(axis=(1, 2, 3))
    assert 0.02 < ink.mean() < 0.5
    assert len({img.tobytes() for img in images}) == len(images)


@pytest.mark.parametrize(("precision", "served"), [("auto", "int8"), ("fp32", "fp32")])
def test_the_default_model_serves_its_gated_int8_twin_unless_fp32_is_asked(
    precision: str, served: str, tmp_path: Path
):
    settings = Settings(
        models_dir=tmp_path, bundled_models_dir=BUNDLED_DIR, ort_intra_op_threads=1, precision=precision
    )
    registry = ModelRegistry(settings, Metrics())
    registry.scan()
    model = registry.models[registry.default_name()]
    assert model.card.precision == served
    if served == "int8":
        gate, source = model.card.gate, registry.loaded[model.name][model.card.quantized_from]
        assert gate is not None and gate.passed and gate.against_version == source.version
        assert source.card.precision == "fp32" and model.card.quality is not None
        assert gate.against_sha256 == source.card.sha256 and model.source == source.source
        # The gate's own figures: the twin within the limits of its source.
        assert gate.int8.label_accuracy >= gate.fp32.label_accuracy - gate.label_accuracy_drop
        assert gate.int8.fid_ratio <= gate.fp32.fid_ratio * (1 + gate.fid_ratio_increase)
        assert gate.int8.gan_train_accuracy >= gate.fp32.gan_train_accuracy - gate.gan_train_drop


def test_sizes_are_small():
    # What the wheel and the service image carry; the README states them.
    total = sum(p.stat().st_size for d in VERSION_DIRS for p in d.iterdir())
    assert 0 < total < 20 * 2**20, total
