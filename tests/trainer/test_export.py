"""Export: contract signature, parity, card, versioning, atomicity, and the per-image seed rule."""

from __future__ import annotations

import json

import numpy as np
import pytest

import cgan_contract as contract
from trainer.files import sha256_file

tf = pytest.importorskip("tensorflow")
ort = pytest.importorskip("onnxruntime")

from trainer import export as export_mod  # noqa: E402
from trainer.config import ARTICLE, MODERN  # noqa: E402
from trainer.export import ExportError, export  # noqa: E402
from trainer.variants import Spec, build  # noqa: E402

LATENT = 8


def info(name="m", variant="cgan", arch="dense"):
    """The card facts :func:`export` takes, as keywords."""
    return dict(
        name=name,
        variant=variant,
        arch=arch,
        dataset="test",
        class_names=["a", "b", "c"],
        latent_dim=LATENT,
        image_shape=(28, 28, 1),
    )


def generator(variant="cgan", arch="dense", recipe=None):
    recipe = recipe or (ARTICLE if arch == "dense" else MODERN)
    gan = build(variant, Spec(LATENT, 3, (28, 28, 1), arch), recipe, seed=3)
    gan.compile()
    # One step, so BatchNorm statistics are not at their initial values.
    rng = np.random.default_rng(0)
    gan.train_step((tf.constant(rng.uniform(-1, 1, (4, 28, 28, 1)), "float32"), tf.constant([0, 1, 2, 0])))
    return gan.export_generator


def test_conditional_batchnorm_generator_exports_with_parity(tmp_path):
    import dataclasses

    g = generator(arch="conv", recipe=dataclasses.replace(MODERN, cond_bn=True))
    assert_parity(g, export(g, tmp_path, **info(arch="conv")))


def assert_parity(g, version_dir, seed=7):
    """ONNX and Keras agree to one grey level on the contract's noise for a mix of labels."""
    z = contract.noise(seed, 6, LATENT)
    labels = np.array([0, 1, 2, 2, 1, 0])
    got = session(version_dir).run(["image"], {"z": z, "label": labels})[0]
    want = contract.to_uint8(np.asarray(g([z, labels.astype("int32")], training=False)))
    assert got.dtype == np.uint8
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


def session(version_dir):
    return ort.InferenceSession(str(version_dir / contract.MODEL_FILE), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("variant", ["cgan", "acgan"])
@pytest.mark.parametrize("arch", ["dense", "conv"])
def test_every_variant_exports_with_the_contract_signature(tmp_path, variant, arch):
    g = generator(variant, arch)
    out = export(g, tmp_path, **info(variant=variant, arch=arch))
    sess = session(out)
    assert [(i.name, i.type) for i in sess.get_inputs()] == [
        ("z", "tensor(float)"),
        ("label", "tensor(int64)"),
    ]
    assert sess.get_inputs()[0].shape[1] == LATENT
    (output,) = sess.get_outputs()
    assert (output.name, output.type, output.shape[1:]) == ("image", "tensor(uint8)", [28, 28, 1])

    card = contract.read_card(out)
    assert card.sha256 == sha256_file(out / contract.MODEL_FILE)
    inputs, outputs = contract.signature(LATENT, (28, 28, 1))
    assert card.inputs == inputs and card.outputs == outputs
    assert card.version == 1 and card.variant == variant and card.arch == arch
    assert card.quality is None

    assert_parity(g, out)


def test_second_export_is_version_2_and_leaves_1_alone(tmp_path):
    g = generator()
    first = export(g, tmp_path, **info())
    before = {p.name: p.read_bytes() for p in first.iterdir()}
    second = export(g, tmp_path, **info())
    assert (first.name, second.name) == ("1", "2")
    assert {p.name: p.read_bytes() for p in first.iterdir()} == before
    assert json.loads((second / "model.json").read_text())["version"] == 2


def test_interrupted_export_leaves_no_version_dir(tmp_path, monkeypatch):
    def disk_full(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export_mod.shutil, "copyfile", disk_full)
    extra = tmp_path / "samples.png"
    extra.write_bytes(b"png")
    with pytest.raises(ExportError, match="No space left"):
        export(generator(), tmp_path / "models", extra_files={"samples.png": extra}, **info())
    assert list((tmp_path / "models" / "m").iterdir()) == []


def test_unwritable_out_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ExportError, match="cannot create"):
        export(generator(), blocker, **info())


def test_parity_failure_reports_the_difference(tmp_path, monkeypatch):
    monkeypatch.setattr(export_mod, "parity", lambda *a, **k: 9)
    with pytest.raises(ExportError, match="differs from keras by 9 grey levels"):
        export(generator(), tmp_path, **info())
    assert contract.version_dirs(tmp_path / "m") == []


def test_per_image_seed_rule_across_batch_sizes(tmp_path):
    sess = session(export(generator(), tmp_path, **info()))

    def run(seed, n, label=1):
        z = contract.noise(seed, n, LATENT)
        return sess.run(["image"], {"z": z, "label": np.full(n, label, np.int64)})[0]

    batch = run(100, 16)
    for k in (0, 5, 15):
        single = run(100 + k, 1)[0]
        assert np.abs(batch[k].astype(int) - single.astype(int)).max() <= 1
    assert not np.array_equal(batch[0], batch[1])


def test_dense_article_onnx_is_under_7_mb(tmp_path):
    g = build("cgan", Spec(100, 10, (28, 28, 1), "dense"), ARTICLE).generator
    out = export(g, tmp_path, **{**info(), "latent_dim": 100, "class_names": [str(i) for i in range(10)]})
    assert (out / contract.MODEL_FILE).stat().st_size < 7 * 1024 * 1024
