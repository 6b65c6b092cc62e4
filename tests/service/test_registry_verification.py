"""What stands between a version directory and serving it (service/models/loader.py ``Loader.load``): the
card, the hash, the contract's signature (names, dtypes, a free batch dimension, sizes), a warm-up run and
the judge. Each refusal is called directly, no app, with its reason code and message, so a check that goes
missing fails here; test_reload.py shows the same refusals through a running service."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto

import cgan_contract as contract
from cgan_testing.fakes import build_generator, build_judge, judge_section, write_version
from service.config import Settings
from service.metrics import Metrics
from service.models import LoadedModel, ModelRefused, ModelRegistry


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    settings = Settings(
        models_dir=tmp_path / "models", bundled_models=False, ort_intra_op_threads=1, model_lanes=1
    )
    return ModelRegistry(settings, Metrics())


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "models").mkdir()
    return tmp_path / "models"


def refusal(registry: ModelRegistry, version_dir: Path) -> tuple[str, str]:
    with pytest.raises(ModelRefused) as caught:
        registry.load(version_dir.parent.name, int(version_dir.name), version_dir)
    return caught.value.reason, str(caught.value)


def with_dims(model: bytes, name: str, dims: list[int | str]) -> bytes:
    """``model`` with graph input or output ``name`` declared as ``dims``."""
    graph = onnx.load_from_string(model)
    (value,) = [v for v in [*graph.graph.input, *graph.graph.output] if v.name == name]
    shape = value.type.tensor_type.shape
    del shape.dim[:]
    for dim in dims:
        entry = shape.dim.add()
        if isinstance(dim, int):
            entry.dim_value = dim
        else:
            entry.dim_param = dim
    return graph.SerializeToString()


def test_a_good_version_loads_with_its_card_and_session(registry: ModelRegistry, root: Path) -> None:
    version = write_version(root, "digits", 3)
    model = registry.load("digits", 3, version, source="bundled")
    assert isinstance(model, LoadedModel)
    assert (model.name, model.version, model.path, model.source) == ("digits", 3, version, "bundled")
    assert model.card == contract.read_card(version) and model.judge is None
    assert model.lane_session is None  # one thread for the lanes and the session alike
    assert model.run_images == registry.settings.run_max_images


@pytest.mark.parametrize("batch", [1, 2])
def test_a_fixed_batch_dimension_is_refused(registry: ModelRegistry, root: Path, batch: int) -> None:
    # Batch 2 even passes the warm-up run (two images): only the signature check stands in its way.
    version = write_version(root, "digits", 1, onnx_bytes=build_generator(batch=batch))
    assert refusal(registry, version) == ("signature", f"input 'z' has a fixed batch size {batch}")


def test_a_fixed_batch_dimension_on_the_output_is_refused(registry: ModelRegistry, root: Path) -> None:
    model = with_dims(build_generator(), contract.OUTPUT_IMAGE, [2, 28, 28, 1])
    version = write_version(root, "digits", 1, onnx_bytes=model)
    assert refusal(registry, version) == ("signature", "output 'image' has a fixed batch size 2")


def test_symbolic_sizes_are_left_to_the_warm_up(registry: ModelRegistry, root: Path) -> None:
    model = with_dims(build_generator(), contract.OUTPUT_IMAGE, ["N", "H", "W", 1])
    version = write_version(root, "digits", 1, onnx_bytes=model)
    assert registry.load("digits", 1, version).card.image_shape == (28, 28, 1)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (
            lambda: build_generator(label_type=TensorProto.INT32),
            "input 'label' is tensor(int32), the contract needs int64",
        ),
        (
            lambda: build_generator(float_output=True),
            "output 'image' is tensor(float), the contract needs uint8",
        ),
        (
            lambda: build_generator(graph_latent_dim=16),
            "input 'z' has shape ['N', 16], the card says [None, 8]",
        ),
        (
            lambda: with_dims(build_generator(), contract.INPUT_NOISE, ["N"]),
            "input 'z' has shape ['N'], the card says [None, 8]",
        ),
        (
            lambda: build_generator(image_shape=(28, 27, 1)),
            "output 'image' has shape ['N', 28, 27, 1], the card says [None, 28, 28, 1]",
        ),
        (
            lambda: build_generator(noise_name="noise"),
            "inputs are ['label', 'noise'], the contract needs ['label', 'z']",
        ),
    ],
)
def test_a_graph_that_breaks_the_signature_is_refused(
    registry: ModelRegistry, root: Path, model, message
) -> None:
    version = write_version(root, "digits", 1, onnx_bytes=model())
    assert refusal(registry, version) == ("signature", message)


def test_a_graph_that_fails_its_warm_up_is_refused(registry: ModelRegistry, root: Path) -> None:
    version = write_version(root, "digits", 1, onnx_bytes=build_generator(num_classes=4))  # label 9 of 10
    reason, message = refusal(registry, version)
    assert reason == "warmup" and message.startswith("warm-up run failed: ")


def test_the_card_must_be_valid_in_place_and_of_this_contract(registry: ModelRegistry, root: Path) -> None:
    version = write_version(root, "digits", 1)
    card_file = version / contract.CARD_FILE
    card = json.loads(card_file.read_text())
    card_file.write_text(json.dumps({**card, "contract_version": contract.CONTRACT_VERSION + 1}))
    speaks = contract.CONTRACT_VERSION
    assert refusal(registry, version) == (
        "contract",
        f"card contract_version {speaks + 1}; the server speaks {speaks}",
    )
    card_file.write_text(json.dumps({**card, "version": 2}))
    assert refusal(registry, version) == ("card", "card says digits/2 but sits in digits/1")
    card_file.write_text(json.dumps({**card, "name": "other"}))
    assert refusal(registry, version) == ("card", "card says other/1 but sits in digits/1")
    inputs, _ = contract.signature(16, (28, 28, 1))
    card_file.write_text(json.dumps({**card, "inputs": [spec.model_dump() for spec in inputs]}))
    assert refusal(registry, version) == (
        "signature",
        "card inputs/outputs do not match its latent_dim and image_shape",
    )
    card_file.write_text(json.dumps({**card, "version": 0, "sha256": "x"}))
    reason, message = refusal(registry, version)
    assert reason == "card" and message.startswith(f"{contract.CARD_FILE} is invalid: version: ")
    assert "; sha256: " in message
    card_file.write_text("{not json")
    reason, message = refusal(registry, version)
    assert reason == "card" and message.startswith(f"{contract.CARD_FILE} is invalid: card: Invalid JSON")


def test_missing_and_unreadable_files(registry: ModelRegistry, root: Path) -> None:
    version = write_version(root, "digits", 1)
    model = (version / contract.MODEL_FILE).read_bytes()
    (version / contract.MODEL_FILE).unlink()
    assert refusal(registry, version) == ("incomplete", f"{contract.MODEL_FILE} is missing")
    (version / contract.MODEL_FILE).mkdir()
    reason, message = refusal(registry, version)
    assert reason == "unreadable" and message.startswith(f"{contract.MODEL_FILE} is unreadable: ")
    (version / contract.MODEL_FILE).rmdir()
    (version / contract.MODEL_FILE).write_bytes(model)
    (version / contract.CARD_FILE).unlink()
    assert refusal(registry, version) == ("incomplete", f"{contract.CARD_FILE} is missing")
    (version / contract.CARD_FILE).mkdir()
    reason, message = refusal(registry, version)
    assert reason == "unreadable" and message.startswith(f"{contract.CARD_FILE} is unreadable: ")


def test_the_hash_is_of_the_bytes_loaded(registry: ModelRegistry, root: Path) -> None:
    version = write_version(root, "digits", 1, sha256="0" * 64)
    digest = contract.read_card(version).sha256
    actual = hashlib.sha256((version / contract.MODEL_FILE).read_bytes()).hexdigest()
    assert refusal(registry, version) == (
        "sha256",
        f"sha256 of {contract.MODEL_FILE} is {actual}, the card says {digest}",
    )
    (version / contract.MODEL_FILE).write_bytes(b"not onnx")
    card = json.loads((version / contract.CARD_FILE).read_text())
    card["sha256"] = hashlib.sha256(b"not onnx").hexdigest()
    (version / contract.CARD_FILE).write_text(json.dumps(card))
    reason, message = refusal(registry, version)
    assert reason == "onnx" and message.startswith(f"onnxruntime cannot load {contract.MODEL_FILE}: ")


# --- the judge -------------------------------------------------------------------------------------------


def test_a_declared_judge_is_loaded_and_warmed(registry: ModelRegistry, root: Path) -> None:
    version = write_version(root, "digits", 1, judge_bytes=build_judge(target=3, pixel=None, confidence=0.9))
    model = registry.load("digits", 1, version)
    assert model.judge is not None
    probabilities = model.classify(model.generate(np.array([3]), np.array([0], np.uint64)))
    assert probabilities.shape == (1, 10) and abs(float(probabilities[0, 3]) - 0.9) < 1e-6


@pytest.mark.parametrize(
    ("judge", "start"),
    [
        (
            lambda: build_judge(pixel=None, confidence=1.5),
            f"{contract.JUDGE_FILE} output is not probabilities",
        ),
        (
            lambda: build_judge(num_classes=12),
            "output 'probabilities' has shape ['N', 12], the card says [None, 10]",
        ),
        (lambda: build_generator(), "inputs are ['label', 'z'], the contract needs ['image']"),
    ],
)
def test_a_judge_that_cannot_back_its_card_is_refused(
    registry: ModelRegistry, root: Path, judge, start: str
) -> None:
    data = judge()
    version = write_version(root, "digits", 1, judge_bytes=data, judge=judge_section(data))
    reason, message = refusal(registry, version)
    assert reason in ("judge", "signature") and message.startswith(start), (reason, message)


def test_a_judge_whose_file_differs_from_its_card_is_refused(registry: ModelRegistry, root: Path) -> None:
    judge = build_judge()
    version = write_version(root, "digits", 1, judge_bytes=judge, judge=judge_section(build_judge(target=1)))
    reason, message = refusal(registry, version)
    assert reason == "sha256" and message.startswith(f"sha256 of {contract.JUDGE_FILE} is ")
    (version / contract.JUDGE_FILE).unlink()
    assert refusal(registry, version) == (
        "incomplete",
        f"{contract.JUDGE_FILE} is missing (the card declares a judge)",
    )


def test_the_warm_up_runs_the_last_class(registry: ModelRegistry, root: Path) -> None:
    # Nine classes in the graph, ten on the card: only label 9 is out of range.
    version = write_version(root, "digits", 1, onnx_bytes=build_generator(num_classes=9))
    reason, message = refusal(registry, version)
    assert reason == "warmup" and message.startswith("warm-up run failed: ")


def test_the_judge_is_held_to_the_generators_rules(registry: ModelRegistry, root: Path) -> None:
    judge = build_judge()
    version = write_version(root, "digits", 1, judge_bytes=judge, judge=judge_section(judge, num_classes=12))
    assert refusal(registry, version) == (
        "judge",
        "card's judge inputs/outputs do not match its image_shape and classes",
    )
    card = json.loads((version / contract.CARD_FILE).read_text())
    card["judge"] = judge_section(b"not onnx").model_dump(mode="json")
    (version / contract.CARD_FILE).write_text(json.dumps(card))
    (version / contract.JUDGE_FILE).write_bytes(b"not onnx")
    reason, message = refusal(registry, version)
    assert reason == "judge" and message.startswith(f"onnxruntime cannot load {contract.JUDGE_FILE}: ")
    (version / contract.JUDGE_FILE).unlink()
    (version / contract.JUDGE_FILE).mkdir()
    reason, message = refusal(registry, version)
    assert reason == "unreadable" and message.startswith(f"{contract.JUDGE_FILE} is unreadable: ")


def test_a_judge_that_is_not_probabilities_says_what_its_rows_sum_to(
    registry: ModelRegistry, root: Path
) -> None:
    judge = build_judge(pixel=None, confidence=0.25, decoy=0)  # rows: 0.25 + 0.75, then a negative one
    ok = write_version(root, "digits", 1, judge_bytes=judge)
    assert registry.load("digits", 1, ok).judge is not None
    bad = build_judge(pixel=None, confidence=2.0)
    version = write_version(root, "digits", 2, judge_bytes=bad)
    reason, message = refusal(registry, version)
    assert (
        reason == "judge"
        and message == f"{contract.JUDGE_FILE} output is not probabilities (rows sum to [1. 1.])"
    )
