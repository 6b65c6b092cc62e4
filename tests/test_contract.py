"""The contract module: card round trip, names, the seed rule, pixel rule; and that it stays light."""

from __future__ import annotations

import importlib
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


# --- the rest of each rule, edge by edge (scripts/mutation's survivors of the contract, closed) ----------


def test_pixel_rule_rounds_clips_and_types() -> None:
    pixels = contract.to_uint8(np.array([-2.0, -1.0, 0.0, 0.5, 1.0, 2.0]))
    assert pixels.dtype == np.uint8 and pixels.tolist() == [0, 0, 128, 191, 255, 255]
    back = contract.from_uint8(np.array([0, 191, 255], np.uint8))
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, [-1.0, 191 / 127.5 - 1, 1.0], rtol=1e-6)


def test_card_json_is_indented_by_two() -> None:
    assert contract.card_json(card()).splitlines()[1] == '  "contract_version": 1,'


def test_read_card(tmp_path) -> None:
    (tmp_path / contract.CARD_FILE).write_text(contract.card_json(card()))
    assert contract.read_card(tmp_path).name == "mnist-5k-cgan-conv"


def test_label_index_errors_name_what_is_valid() -> None:
    c = card(class_names=["a", "b", "c"])
    assert c.label_index(0) == 0 and c.label_index("0") == 0 and c.label_index(" 2 ") == 2
    for bad, message in (
        (True, "label must be an integer or a class name"),
        (3, "label 3 is outside 0..2"),
        (-1, "label -1 is outside 0..2"),
        ("-1", "label -1 is outside 0..2"),
        ("d", "unknown label 'd'; classes are ['a', 'b', 'c']"),
        ("1-", "unknown label '1-'; classes are ['a', 'b', 'c']"),
        # Digits of other scripts are not indices ("١" is Arabic-Indic 1; "²" made int() itself fail).
        ("١", "unknown label '١'; classes are ['a', 'b', 'c']"),
        ("²", "unknown label '²'; classes are ['a', 'b', 'c']"),
    ):
        with pytest.raises(ValueError) as raised:
            c.label_index(bad)
        assert str(raised.value) == message


def test_seed_and_truncation_errors_say_the_range() -> None:
    with pytest.raises(ValueError, match=rf"^seed must be in 0\.\.{contract.MAX_SEED}, got -1$"):
        contract.request_seeds(-1, 1)
    assert contract.request_seeds(contract.MAX_SEED, 1).tolist() == [contract.MAX_SEED]
    with pytest.raises(ValueError, match=rf"^seed \+ 2 images - 1 exceeds MAX_SEED \({contract.MAX_SEED}\)$"):
        contract.request_seeds(contract.MAX_SEED, 2)  # the last image would need a seed past the bound
    assert contract.last_first_seed(2) == contract.MAX_SEED - 1
    contract.check_seed(contract.MAX_SEED - 1, 2)
    with pytest.raises(ValueError, match=r"^truncation must be in 0\.5\.\.5\.9, got 6\.0$"):
        contract.truncated_noise_for_seeds([0], 8, 6.0)
    with pytest.raises(ValueError, match=r"got 0\.4$"):
        contract.truncated_noise_for_seeds([0], 8, 0.4)
    # Both ends are allowed; at the top nothing changes (every entry is within 5.9 already).
    np.testing.assert_array_equal(
        contract.truncated_noise_for_seeds([0, 41082], 100, contract.MAX_TRUNCATION),
        contract.noise_for_seeds([0, 41082], 100),
    )


def test_truncation_takes_seeds_in_any_shape_and_clamps_what_stays_out(monkeypatch) -> None:
    flat = contract.truncated_noise_for_seeds([0, 41082, 7], 100, 0.5)
    column = contract.truncated_noise_for_seeds(np.array([[0], [41082], [7]]), 100, 0.5)
    np.testing.assert_array_equal(column, flat)
    # With no redraw rounds every entry beyond the threshold is clamped to it, on both sides.
    noise_rule = importlib.import_module("cgan_contract.noise")
    monkeypatch.setattr(noise_rule, "TRUNCATION_ROUNDS", 0)
    z = contract.noise_for_seeds([0, 1, 2], 100)
    clamped = contract.truncated_noise_for_seeds([0, 1, 2], 100, 0.5)
    np.testing.assert_array_equal(clamped, np.clip(z, np.float32(-0.5), np.float32(0.5)))
    assert clamped.min() == np.float32(-0.5) and clamped.max() == np.float32(0.5)


def test_codes_are_exact_and_typed() -> None:
    # Codes are float64 sums and products of exact 24-bit draws: the same bits on every platform.
    codes = contract.codes_for_seeds([0, 7, 41082], 100, [(-1.0, 1.0), (2.0, 3.0), (0.0, 8.0)])
    assert codes.dtype == np.float32
    assert codes.tobytes().hex() == (
        "a170073fb9de3540e2fbe9404ef0c8be20122340b4aaa94098ecf9bd83b73540d0871a3e"
    )
    empty = contract.codes_for_seeds(np.array([[1], [2]]), 100, [])
    assert empty.shape == (2, 0) and empty.dtype == np.float32


def test_runner_generate_takes_any_shape_and_runs_in_pieces() -> None:
    from cgan_contract import runner

    class Recorder:
        def __init__(self) -> None:
            self.feeds: list[dict] = []

        def run(self, outputs, feed):
            assert outputs == [contract.OUTPUT_IMAGE]
            self.feeds.append(feed)
            return [np.repeat(feed["label"][:, None], 2, axis=1).astype(np.uint8)]

    session = Recorder()
    images = runner.generate(session, [[3], [4], [5], [6], [7]], [10, 11, 12, 13, 14], 8, batch_size=2)
    assert images.tolist() == [[3, 3], [4, 4], [5, 5], [6, 6], [7, 7]]
    assert [len(f["label"]) for f in session.feeds] == [2, 2, 1]
    assert all(f["label"].dtype == np.int64 and f["z"].dtype == np.float32 for f in session.feeds)
    np.testing.assert_array_equal(np.concatenate([f["z"] for f in session.feeds]), contract.noise(10, 5, 8))
    session.feeds.clear()
    runner.generate(session, np.arange(3), np.array([[0], [1], [2]]), 100, truncation=0.5, batch_size=2)
    np.testing.assert_array_equal(
        np.concatenate([f["z"] for f in session.feeds]), contract.noise(0, 3, 100, truncation=0.5)
    )
    session.feeds.clear()
    one = runner.generate(session, [1], [5], 8)
    assert one.tolist() == [[1, 1]] and len(session.feeds) == 1


def test_runner_classify_feeds_uint8_images() -> None:
    from cgan_contract import runner

    class Judge:
        def run(self, outputs, feed):
            assert outputs == [contract.JUDGE_OUTPUT] and set(feed) == {contract.JUDGE_INPUT}
            assert (
                feed[contract.JUDGE_INPUT].dtype == np.uint8 and feed[contract.JUDGE_INPUT].flags.c_contiguous
            )
            return [np.full((len(feed[contract.JUDGE_INPUT]), 3), 1 / 3, np.float32), "second output"]

    images = np.zeros((2, 28, 28, 1), np.int64)[:, ::-1]
    assert runner.classify(Judge(), images).shape == (2, 3)


def test_open_session_options() -> None:
    from cgan_contract import runner
    from cgan_testing.fakes import build_generator

    model = build_generator()
    pinned = runner.open_session(model, threads=1, spinning=False).get_session_options()
    assert (pinned.intra_op_num_threads, pinned.inter_op_num_threads) == (1, 1)
    assert pinned.execution_mode.name == "ORT_SEQUENTIAL" and pinned.log_severity_level == 3
    assert pinned.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert (
        runner.open_session(model, spinning=True)
        .get_session_options()
        .get_session_config_entry("session.intra_op.allow_spinning")
        == "1"
    )
    default = runner.open_session(model).get_session_options()
    assert default.intra_op_num_threads == 0 and default.graph_optimization_level.name == "ORT_ENABLE_ALL"
    with pytest.raises(RuntimeError, match="does not have configuration"):
        default.get_session_config_entry("session.intra_op.allow_spinning")


def test_runner_generate_from_z_splits_labels_noise_and_codes_alike() -> None:
    from cgan_contract import runner

    class Recorder:
        def __init__(self) -> None:
            self.feeds: list[dict] = []

        def run(self, outputs, feed):
            self.feeds.append(feed)
            return [feed["label"][:, None].astype(np.uint8)]

    session, z = Recorder(), contract.noise(3, 5, 4)
    codes = np.arange(10, dtype=np.float64).reshape(5, 2)
    images = runner.generate(session, np.arange(5), z=z, codes=codes, batch_size=2)
    assert images.ravel().tolist() == [0, 1, 2, 3, 4] and len(session.feeds) == 3
    np.testing.assert_array_equal(np.concatenate([f["z"] for f in session.feeds]), z)
    np.testing.assert_array_equal(np.concatenate([f["codes"] for f in session.feeds]), codes)
    assert all(f["codes"].dtype == np.float32 for f in session.feeds)
    session.feeds.clear()
    assert runner.generate(session, np.arange(3), z=z[:3]).ravel().tolist() == [0, 1, 2]
    assert len(session.feeds) == 1 and "codes" not in session.feeds[0]
    session.feeds.clear()
    assert runner.generate(session, np.arange(0), z=z[:0], batch_size=4).shape == (0, 1)


def test_runner_generate_takes_seeds_or_z() -> None:
    from cgan_contract import runner

    class Never:
        def run(self, outputs, feed):
            raise AssertionError("nothing runs for a refused call")

    z, seeds = contract.noise(0, 2, 4), np.arange(2, dtype=np.uint64)
    with pytest.raises(ValueError, match="either seeds or z"):
        runner.generate(Never(), np.arange(2), seeds, 4, z=z)
    with pytest.raises(ValueError, match="either seeds or z"):
        runner.generate(Never(), np.arange(2), latent_dim=4)
    with pytest.raises(ValueError, match="truncation"):
        runner.generate(Never(), np.arange(2), z=z, truncation=1.0)
    with pytest.raises(ValueError, match="style codes takes codes with z"):
        runner.generate(Never(), np.arange(2), z=z, code_ranges=[(-1.0, 1.0)])


def test_judge_signature() -> None:
    inputs, outputs = contract.judge_signature((28, 28, 1), 10)
    assert [spec.model_dump() for spec in inputs] == [
        {"name": "image", "dtype": "uint8", "shape": [None, 28, 28, 1]}
    ]
    assert [spec.model_dump() for spec in outputs] == [
        {"name": "probabilities", "dtype": "float32", "shape": [None, 10]}
    ]


def test_candidate_seeds_of_a_request_and_of_each_label_block() -> None:
    assert contract.request_candidates(7, 2).tolist() == list(range(7, 7 + 2 * contract.MAX_DRAWS_PER_IMAGE))
    blocks = [contract.block_candidates(10, 4, 3, b) for b in range(3)]
    assert blocks[1][:6].tolist() == [14, 15, 16, 17, 23, 26]  # its own four, then every third after the set
    every = np.concatenate(blocks)
    assert len(np.unique(every)) == len(every) == 3 * 4 * contract.MAX_DRAWS_PER_IMAGE
    assert every.max() == 10 + 3 * 4 * contract.MAX_DRAWS_PER_IMAGE - 1
    np.testing.assert_array_equal(contract.block_candidates(5, 3, 1, 0), contract.request_candidates(5, 3))
