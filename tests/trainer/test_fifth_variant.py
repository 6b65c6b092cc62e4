"""Adding a variant is one module and one registry line (issue #33): this file is the module.

:class:`LSGAN` is a least-squares conditional GAN (Mao et al. 2017): D regresses real images to ``b`` and
fakes to ``a``, G pulls its images' scores to ``c``. It brings what a real new variant brings — its own
networks, its own adversarial loss and history columns, its own recipe knobs (``Extras``) with their
rules, its default recipe — and touches no other file: the test registers it with one line and trains it
through ``cgan-train train`` (flags, recipe, checks, checkpoints, export), then generates from the
exported ONNX the way the service does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pytest

keras = pytest.importorskip("keras")

import cgan_contract as contract  # noqa: E402
from trainer import variants  # noqa: E402
from trainer.config import FRACTION, NON_NEGATIVE, Recipe, knob  # noqa: E402
from trainer.nets import blocks  # noqa: E402
from trainer.variants.base import ConditionalGAN  # noqa: E402

# --- the variant's module ---------------------------------------------------------------------------------


class LSGAN(ConditionalGAN):
    variant = "lsgan"
    archs = ("dense",)
    loss_kinds = ("least_squares",)

    @dataclass(frozen=True)
    class Extras:
        fake_score: float = knob(0.0, FRACTION)  # a: D's target score for fakes
        real_score: float = knob(1.0, NON_NEGATIVE)  # b: D's target score for real images
        g_score: float = knob(1.0, NON_NEGATIVE)  # c: the score G wants D to give its images

    @classmethod
    def default_recipe(cls, arch: str) -> Recipe:
        return replace(super().default_recipe(arch), loss="least_squares")

    @classmethod
    def recipe_problem(cls, recipe: Recipe, arch: str) -> str | None:
        problem = super().recipe_problem(recipe, arch)
        if problem is None and recipe.real_score <= recipe.fake_score:
            problem = "real_score must be above fake_score"
        return problem

    def build_generator(self, spec, recipe) -> keras.Model:
        z, label = blocks.generator_inputs(spec)
        embedded = keras.layers.Embedding(spec.num_classes, spec.latent_dim)(label)
        joined = keras.layers.Multiply()([z, embedded])
        hidden = keras.layers.Dense(32, activation="relu")(joined)
        pixels = keras.layers.Dense(math.prod(spec.image_shape), activation="tanh")(hidden)
        return keras.Model([z, label], keras.layers.Reshape(spec.image_shape)(pixels), name="generator")

    def build_discriminator(self, spec, recipe) -> keras.Model:
        image = keras.Input(spec.image_shape, name="image")
        label = keras.Input((), dtype="int32", name="label")
        embedded = keras.layers.Embedding(spec.num_classes, math.prod(spec.image_shape))(label)
        joined = keras.layers.Multiply()([keras.layers.Flatten()(image), embedded])
        hidden = keras.layers.LeakyReLU(0.2)(keras.layers.Dense(32)(joined))
        return keras.Model([image, label], keras.layers.Dense(1)(hidden), name="discriminator")

    def metric_names(self) -> tuple[str, ...]:
        return ("d_loss", "g_loss", "d_real_mean", "d_fake_mean")

    def d_adversarial(self, seen: dict, size):
        real, fake = seen["logits"][:size], seen["logits"][size:]
        loss = _squared(real, self.recipe.real_score) + _squared(fake, self.recipe.fake_score)
        return loss, {"d_real_mean": keras.ops.mean(real), "d_fake_mean": keras.ops.mean(fake)}

    def g_adversarial(self, seen: dict):
        return _squared(seen["logits"], self.recipe.g_score)


def _squared(scores, target: float):
    return 0.5 * keras.ops.mean(keras.ops.square(scores - target))


# --- the test ---------------------------------------------------------------------------------------------


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(variants.VARIANTS, "lsgan", (__name__, "LSGAN"))  # the one registry line


def test_a_fifth_variant_trains_exports_and_serves_from_its_own_module(registered, tmp_path, capsys):
    from trainer.cli import main

    argv = ["train", "--variant", "lsgan", "--arch", "dense", "--steps", "2", "--batch-size", "8"]
    argv += ["--latent-dim", "8", "--recipe", "g_score=0.9", "--work-dir", str(tmp_path / "runs")]
    argv += ["--out", str(tmp_path / "models"), "--checkpoint-every", "2", "--no-jit", "--quiet"]
    assert main(argv) == 0, capsys.readouterr().err
    version = tmp_path / "models" / "mnist-5k-lsgan-dense" / "1"
    card = contract.read_card(version)
    assert (card.variant, card.arch, card.training.steps) == ("lsgan", "dense", 2)
    # The whole recipe, its own knobs included, is on the card and in run.json; the override took.
    assert card.training.recipe["loss"] == "least_squares"
    own = {k: card.training.recipe[k] for k in ("fake_score", "real_score", "g_score")}
    assert own == {"fake_score": 0.0, "real_score": 1.0, "g_score": 0.9}
    run = tmp_path / "runs" / "mnist-5k-lsgan-dense"
    assert (run / "checkpoints" / "ckpt-00000002.npz").is_file()
    assert "d_real_mean" in (run / "history.csv").read_text().splitlines()[0]
    # The exported generator answers through the contract, as the service runs it.
    session = contract.runner.open_session(version / contract.MODEL_FILE)
    images = contract.runner.generate(session, np.array([0, 1, 2]), contract.request_seeds(5, 3), 8)
    assert images.shape == (3, 28, 28, 1) and images.dtype == np.uint8


def test_a_fifth_variant_states_its_own_rules(registered, tmp_path, capsys):
    from trainer.cli import main

    base = ["train", "--variant", "lsgan", "--steps", "1", "--work-dir", str(tmp_path), "--no-export"]
    assert main([*base, "--arch", "conv"]) == 2
    assert "lsgan has no arch 'conv'; choose one of dense" in capsys.readouterr().err
    assert main([*base, "--arch", "dense", "--recipe", "fake_score=1.5"]) == 2
    assert "fake_score must be in [0, 1), got 1.5" in capsys.readouterr().err
    assert main([*base, "--arch", "dense", "--recipe", "real_score=0"]) == 2
    assert "real_score must be above fake_score" in capsys.readouterr().err
    assert main([*base, "--arch", "dense", "--recipe", "margin=0.5"]) == 2  # EBGAN's knob, not LSGAN's
    assert "--recipe 'margin=0.5': expected FIELD=VALUE with FIELD one of" in capsys.readouterr().err


def test_a_variant_knob_may_not_take_a_shared_knobs_name():
    @dataclass(frozen=True)
    class Clashing:
        ema_decay: float = 0.5  # the optimiser's: read flat, recipe.ema_decay would be ambiguous

    with pytest.raises(TypeError, match="ema_decay"):
        Recipe(extras=Clashing())
