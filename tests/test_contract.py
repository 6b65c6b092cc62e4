"""The contract module: card round trip, names, the seed rule, pixel rule; and that it stays light."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

import cgan_contract as contract


def card(**overrides):
    inputs, outputs = contract.signature(100, (28, 28, 1))
    fields = dict(
        name="mnist-5k-cgan-conv",
        version=3,
        variant="cgan",
        arch="conv",
        dataset="mnist-5k",
        class_names=[str(i) for i in range(10)],
        latent_dim=100,
        image_shape=(28, 28, 1),
        inputs=inputs,
        outputs=outputs,
        opset=17,
        sha256="a" * 64,
        created_at=datetime.now(UTC),
        trainer_version="0.1.0",
    )
    return contract.ModelCard(**{**fields, **overrides})


def test_card_round_trips():
    original = card(
        training=contract.Training(
            steps=5, batch_size=8, seed=1, wall_seconds=1.5, images_per_second=26.7, steps_per_second=3.3
        )
    )
    again = contract.ModelCard.model_validate_json(contract.card_json(original))
    assert again == original
    assert again.quality is None


@pytest.mark.parametrize(
    "bad", [{"name": "../etc"}, {"name": "A"}, {"version": 0}, {"sha256": "xyz"}, {"class_names": []}]
)
def test_card_rejects_bad_fields(bad):
    with pytest.raises(ValidationError):
        card(**bad)


def test_label_index():
    c = card(class_names=["T-shirt/top", "Trouser", "Sneaker"])
    assert c.label_index(2) == 2 and c.label_index("Sneaker") == 2 and c.label_index("1") == 1
    for bad in (3, -1, "Boot", True):
        with pytest.raises(ValueError):
            c.label_index(bad)


@pytest.mark.parametrize(
    "name,ok",
    [
        ("mnist", True),
        ("a-b_c9", True),
        ("..", False),
        (".tmp", False),
        ("a/b", False),
        ("", False),
        ("x" * 65, False),
        ("Upper", False),
    ],
)
def test_model_names(name, ok):
    assert contract.valid_model_name(name) is ok


@given(seed=st.integers(0, 2**40), n=st.integers(1, 40), k=st.integers(0, 39))
def test_image_k_uses_seed_plus_k(seed, n, k):
    k = k % n
    np.testing.assert_array_equal(contract.noise(seed, n, 16)[k], contract.noise(seed + k, 1, 16)[0])


def test_noise_is_standard_normal_and_decorrelated():
    z = contract.noise(0, 4000, 64)
    assert z.dtype == np.float32 and z.shape == (4000, 64)
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    assert abs(np.corrcoef(z[:-1, 0], z[1:, 0])[0, 1]) < 0.05  # neighbouring seeds are unrelated


def _codes_card(k: int = 2, **overrides):
    inputs, outputs = contract.signature(100, (28, 28, 1), num_codes=k)
    fields = {"codes": [contract.StyleCode(name=f"c{j}") for j in range(k)], **overrides}
    return card(inputs=inputs, outputs=outputs, variant="infogan", **fields)


def test_codes_card_round_trips_and_old_cards_have_none():
    original = _codes_card(
        codes=[contract.StyleCode(name="slant", low=-2, high=2), contract.StyleCode(name="c1")]
    )
    again = contract.ModelCard.model_validate_json(contract.card_json(original))
    assert again == original and again.code_ranges == [(-2.0, 2.0), (-1.0, 1.0)]
    assert [spec.name for spec in again.inputs] == ["z", "label", "codes"] and again.inputs[2].shape == [
        None,
        2,
    ]
    assert card().codes == [] and [spec.name for spec in card().inputs] == ["z", "label"]


@pytest.mark.parametrize(
    "overrides",
    [
        {"codes": []},  # a codes input with no codes listed
        {"codes": [contract.StyleCode(name="c0")]},  # one code listed for a [N, 2] input
        {"codes": [contract.StyleCode(name="c0"), contract.StyleCode(name="c0")]},  # names repeat
    ],
)
def test_card_codes_must_match_the_codes_input(overrides):
    with pytest.raises(ValidationError):
        _codes_card(**overrides)
    with pytest.raises(ValidationError):  # codes listed for a model without the input
        card(codes=[contract.StyleCode(name="c0")])
    with pytest.raises(ValidationError):
        contract.StyleCode(name="c0", low=1, high=1)


@given(seed=st.integers(0, 2**40), n=st.integers(1, 30), k=st.integers(0, 29))
def test_codes_follow_the_seed_rule(seed, n, k):
    k = k % n
    ranges = [(-1.0, 1.0), (0.0, 5.0)]
    batch = contract.codes_for_seeds(contract.request_seeds(seed, n), 16, ranges)
    alone = contract.codes_for_seeds(contract.request_seeds(seed + k, 1), 16, ranges)
    np.testing.assert_array_equal(batch[k], alone[0])


def test_codes_are_uniform_over_their_ranges_and_independent_of_the_noise():
    seeds = contract.request_seeds(0, 20_000)
    codes = contract.codes_for_seeds(seeds, 64, [(-1.0, 1.0), (2.0, 3.0)])
    assert codes.dtype == np.float32 and codes.shape == (20_000, 2)
    assert (
        codes[:, 0].min() >= -1
        and codes[:, 0].max() <= 1
        and codes[:, 1].min() >= 2
        and codes[:, 1].max() <= 3
    )
    assert abs(codes[:, 0].mean()) < 0.02 and abs(codes[:, 0].std() - 1 / np.sqrt(3)) < 0.01
    assert np.histogram(codes[:, 1], bins=10, range=(2, 3))[0].min() > 1_800  # no gaps in the range
    z = contract.noise_for_seeds(seeds, 64)
    assert np.abs(np.corrcoef(np.c_[codes, z[:, :8]], rowvar=False)[:2, 2:]).max() < 0.05
    assert np.abs(np.corrcoef(codes, rowvar=False)[0, 1]) < 0.05
    # The codes come after the noise in the stream, so a model's noise is the same with or without codes.
    np.testing.assert_array_equal(contract.noise(0, 5, 64), z[:5])
    assert contract.codes_for_seeds(seeds[:3], 64, []).shape == (3, 0)


def test_runner_feeds_codes_from_the_seed_rule_or_the_request():
    from cgan_contract import runner

    class Recorder:
        def run(self, outputs, feed):
            self.feed = feed
            return [np.zeros((len(feed["label"]), 1), np.uint8)]

    session, ranges = Recorder(), [(-1.0, 1.0), (-1.0, 1.0)]
    seeds = contract.request_seeds(5, 4)
    runner.generate(session, np.arange(4), seeds, 8, code_ranges=ranges)
    np.testing.assert_array_equal(session.feed["codes"], contract.codes_for_seeds(seeds, 8, ranges))
    given_codes = np.full((4, 2), 0.5, np.float32)
    runner.generate(session, np.arange(4), seeds, 8, code_ranges=ranges, codes=given_codes)
    np.testing.assert_array_equal(session.feed["codes"], given_codes)
    np.testing.assert_array_equal(session.feed["z"], contract.noise(5, 4, 8))
    runner.generate(session, np.arange(4), seeds, 8)
    assert set(session.feed) == {"z", "label"}
    runner.generate(session, np.arange(0), seeds[:0], 8, batch_size=2)
    assert session.feed["z"].shape == (0, 8)


def test_seed_range():
    with pytest.raises(ValueError):
        contract.request_seeds(-1, 1)
    with pytest.raises(ValueError):
        contract.request_seeds(contract.MAX_SEED + 1, 1)


def test_pixel_rule():
    assert contract.to_uint8(np.array([-1.0, 0.0, 1.0, 2.0])).tolist() == [0, 128, 255, 255]
    np.testing.assert_allclose(contract.from_uint8(np.array([0, 255], np.uint8)), [-1, 1])


def test_version_dirs_skip_temp_and_junk(tmp_path):
    for name in ("1", "2", "10", ".staging-x", "latest", "0"):
        (tmp_path / name).mkdir()
    (tmp_path / "3").write_text("a file, not a version dir")
    assert [v for v, _ in contract.version_dirs(tmp_path)] == [1, 2, 10]


def test_contract_imports_nothing_heavy():
    code = (
        "import sys, cgan_contract, cgan_contract.runner; "
        "heavy = {'tensorflow', 'onnxruntime', 'fastapi', 'keras', 'service', 'trainer'}; "
        "sys.exit(sorted(heavy & set(m.split('.')[0] for m in sys.modules)) or 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
