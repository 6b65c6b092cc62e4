"""The same seed and recipe train to the same weights, and checkpoints keep their variables' paths.

Each case trains a small model of one variant and arch for a few steps through :func:`trainer.train.train`
(the data pipeline, the runner, XLA for dense where the CLI uses it, EMA, DiffAugment, LeCam, jitter, the
class head, Q, EBGAN's wrong-label negatives, bfloat16 where the CPU has it) and compares every variable a
checkpoint holds with ``numerics.json``, written by the code before a refactoring:

* the variables' paths and shapes, in checkpoint order: what :mod:`trainer.checkpoint` keys a resume on;
* the recipe the case trains, flat, knob by knob: the variants' default recipes;
* the weights: bit for bit (a SHA-256 over all of them) on the machine that wrote the file (same CPU model,
  same TensorFlow), and elsewhere, where other kernels round differently, close (a fixed random projection
  and the norm of each variable).

Regenerate (only when a change is meant to change the numbers, and say so in the commit):
``python -m tests.trainer.test_numerics --write``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

FIXTURE = Path(__file__).with_name("numerics.json")
STEPS = 3
SMALL_CONV = ["g_width=16", "d_width=16", "compute_dtype=float32"]

#: case -> (variant, arch, XLA, recipe changes on top of the variant's default recipe for the arch).
CASES: dict[str, tuple[str, str, bool, list[str]]] = {
    "cgan-dense": ("cgan", "dense", True, []),
    "cgan-conv": (
        "cgan",
        "conv",
        False,
        [*SMALL_CONV, "lecam_weight=0.3", "jitter_degrees=10", "jitter_zoom=0.1"],
    ),
    "cgan-conv-bf16": ("cgan", "conv", False, ["g_width=16", "d_width=16", "compute_dtype=bfloat16"]),
    "acgan-dense": ("acgan", "dense", False, ["real_target=0.9", "augment_shift=2", "augment_cutout=8"]),
    "acgan-conv": ("acgan", "conv", False, [*SMALL_CONV, "classify_fake=false", "cond_bn=true"]),
    "infogan-dense": ("infogan", "dense", False, ["num_codes=3", "q_weight=0.5"]),
    "infogan-conv": ("infogan", "conv", False, [*SMALL_CONV, "lecam_weight=0.1"]),
    "ebgan-dense": ("ebgan", "dense", False, ["ae_condition=code", "ae_code_dim=16"]),
    "ebgan-conv": ("ebgan", "conv", False, [*SMALL_CONV, "ae_code_dim=16", "pt_weight=0.2"]),
}


def machine() -> str:
    """What decides the exact bits: the CPU model and the TensorFlow version."""
    import tensorflow as tf

    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}; tensorflow {tf.__version__}"


def small_run(name: str, variant: str, arch: str, changes: list[str], work: Path, **settings):
    """The TrainConfig of a small mnist-5k run under ``work`` that checkpoints at its last step: the
    variant's recipe with ``changes`` (``--recipe`` pairs), no export; ``settings`` are TrainConfig's."""
    from trainer.config import TrainConfig, override_recipe, recipe_for

    recipe = override_recipe(recipe_for(variant, arch, augment_shift=2), changes)
    every = settings.pop("log_every", settings["steps"])
    return TrainConfig(
        variant=variant,
        arch=arch,
        dataset="mnist-5k",
        recipe=recipe,
        name=name,
        work_dir=work,
        out=work / "models",
        checkpoint_every=settings["steps"],
        sample_every=settings["steps"],
        log_every=every,
        export=False,
        progress=False,
        **settings,
    )


def train_case(case: str, work: Path):
    """(flat recipe, checkpoint variables) of the case after :data:`STEPS` steps."""
    from trainer.train import train

    variant, arch, jit, changes = CASES[case]
    settings = dict(steps=STEPS, batch_size=16, latent_dim=8, seed=7, jit_compile=jit)
    config = small_run(case, variant, arch, changes, work, **settings)
    result = train(config)
    flat = json.loads(config.to_json())["recipe"]
    return flat, result.gan.checkpoint_variables()


def fingerprint(flat: dict, variables: list) -> dict:
    from trainer.checkpoint import _name

    values = [np.asarray(v.numpy()) for v in variables]
    digest = hashlib.sha256()
    projections, norms = [], []
    for i, value in enumerate(values):
        digest.update(np.ascontiguousarray(value).tobytes())
        x = value.astype(np.float64).ravel()
        direction = np.random.default_rng(i).standard_normal(x.size)
        projections.append(float(x @ direction))
        norms.append(float(np.linalg.norm(x)))
    return {
        "recipe": flat,
        "names": [_name(v, i) for i, v in enumerate(variables)],
        "shapes": [list(v.shape) for v in values],
        "sha256": digest.hexdigest(),
        "projections": projections,
        "norms": norms,
    }


def _bf16_cpu() -> bool:
    from trainer.config import fast_compute_dtype

    return fast_compute_dtype() == "bfloat16"


def _fixture() -> dict:
    return json.loads(FIXTURE.read_text())


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_seed_and_recipe_train_to_the_same_weights(case, tmp_path):
    pytest.importorskip("tensorflow")
    from trainer.checkpoint import _same

    if case.endswith("bf16") and not _bf16_cpu():
        pytest.skip("bfloat16 arithmetic differs where the CPU emulates it")
    fixture = _fixture()
    want = fixture["cases"][case]
    got = fingerprint(*train_case(case, tmp_path))
    # The variant's recipe is as it was; knobs it no longer records are other variants' (older code recorded
    # every variant's knobs for every run), at the defaults they had.
    assert got["recipe"] == {k: want["recipe"][k] for k in got["recipe"]}, "the default recipe changed"
    dropped = want["recipe"].keys() - got["recipe"].keys()
    assert {k: want["recipe"][k] for k in dropped} == {k: fixture["defaults"][k] for k in dropped}
    # The checkpoint's layout: resuming compares these, up to Keras's per-process numbering.
    assert [_same(n) for n in got["names"]] == [_same(n) for n in want["names"]]
    assert got["shapes"] == want["shapes"]
    if machine() == fixture["machine"]:
        assert got["sha256"] == want["sha256"], "not bit-identical on the machine that wrote the fixture"
    else:
        scale = np.maximum(np.asarray(want["norms"]), 1.0)
        np.testing.assert_allclose(got["norms"], want["norms"], rtol=1e-3, atol=1e-5)
        assert np.all(np.abs(np.subtract(got["projections"], want["projections"])) <= 1e-2 * scale)


def write(path: Path = FIXTURE) -> None:
    import tempfile

    cases = {}
    with tempfile.TemporaryDirectory() as work:
        for case in sorted(CASES):
            cases[case] = fingerprint(*train_case(case, Path(work)))
            sys.stderr.write(f"{case} {cases[case]['sha256']}\n")
    # One line per list, so that a diff of the file shows which case and which figure moved.
    from trainer.config import Recipe

    defaults = Recipe().flat()  # the flat recipe's defaults, for the knobs a case lacks
    lines = [f'{{"machine": {json.dumps(machine())}, "defaults": {json.dumps(defaults)}, "cases": {{']
    for n, (case, found) in enumerate(cases.items()):
        fields = ",\n".join(f"  {json.dumps(key)}: {json.dumps(value)}" for key, value in found.items())
        lines.append(f" {json.dumps(case)}: {{\n{fields}\n }}" + ("," if n < len(cases) - 1 else ""))
    path.write_text("\n".join(lines) + "\n}}\n")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit(f"usage: python -m tests.trainer.test_numerics --write   (rewrites {FIXTURE.name})")
    write()
