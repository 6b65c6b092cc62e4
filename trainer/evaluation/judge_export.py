"""The judge beside the generator: ``judge.onnx`` and the card's ``judge`` section, for serve-time filtering.

``cgan-train evaluate`` (and ``cgan-train export-judge`` for a model evaluated before judges were exported)
converts the judge it scored the generator with to ONNX with the contract's judge signature (uint8 images
as the generator makes them in, softmax probabilities out), checks it against Keras, writes it into the
version directory (atomically, fsynced) and only then declares it on the card, so a server never reads a
card naming a judge that is not there yet. The service then filters with exactly the judge the quality
figures come from.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

import cgan_contract as contract
from cgan_contract import ModelCard, runner
from trainer.data import DataError
from trainer.evaluation.judge import Judge, to_input
from trainer.files import atomic_write

OPSET = 17
#: Keras and onnxruntime may differ in float rounding; a probability further off is a broken conversion.
PARITY_TOLERANCE = 1e-4


class JudgeExportError(DataError):
    """The judge could not be exported; the version directory was left as it was (a DataError, so the
    CLI prints it as one line)."""


def judge_to_onnx(judge: Judge, image_shape: tuple[int, int, int]) -> bytes:
    import tensorflow as tf
    import tf2onnx

    signature = (tf.TensorSpec([None, *image_shape], tf.uint8, name=contract.JUDGE_INPUT),)
    model = judge.model

    @tf.function(input_signature=signature)
    def serve(image):
        logits = model(tf.cast(image, tf.float32) / 255.0, training=False)
        return {contract.JUDGE_OUTPUT: tf.nn.softmax(logits, axis=-1)}

    proto, _ = tf2onnx.convert.from_function(serve, input_signature=signature, opset=OPSET)
    graph = proto.graph
    # tf2onnx may suffix names (``image:0``); the contract wants the bare ones.
    renames = {graph.input[0].name: contract.JUDGE_INPUT, graph.output[0].name: contract.JUDGE_OUTPUT}
    for value in [*graph.input, *graph.output]:
        value.name = renames.get(value.name, value.name)
    for node in graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    return proto.SerializeToString()


def check_judge(data: bytes, judge: Judge, images: np.ndarray, card: ModelCard) -> None:
    """The ONNX judge has the contract's signature and gives Keras's probabilities on ``images``."""
    session = runner.open_session(data)
    inputs, outputs = contract.judge_signature(card.image_shape, card.num_classes)
    for want, got in zip([*inputs, *outputs], [*session.get_inputs(), *session.get_outputs()], strict=True):
        got_shape = [d if isinstance(d, int) else None for d in got.shape]
        if got.name != want.name or got.type != runner.ORT_TYPES[want.dtype] or got_shape != want.shape:
            raise JudgeExportError(
                f"judge onnx {got.name} {got.type} {got.shape} does not match the contract's "
                f"{want.name} {want.dtype} {want.shape}"
            )
    logits = judge.model.predict(to_input(images), verbose=0)
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    diff = float(np.abs(runner.classify(session, images) - expected).max())
    if diff > PARITY_TOLERANCE:
        raise JudgeExportError(f"judge onnx differs from keras by {diff:.2g} (allowed {PARITY_TOLERANCE})")


def export_judge(
    judge: Judge, version_dir: Path, card: ModelCard, images: np.ndarray
) -> contract.JudgeSection:
    """Write ``judge.onnx`` into ``version_dir`` and declare it on the card; ``images`` (uint8, the
    generator's) check the conversion. Returns the card section written."""
    images = images if images.ndim == 4 else images[..., None]
    data = judge_to_onnx(judge, card.image_shape)
    check_judge(data, judge, images, card)
    inputs, outputs = contract.judge_signature(card.image_shape, card.num_classes)
    section = contract.JudgeSection(
        sha256=hashlib.sha256(data).hexdigest(),
        inputs=inputs,
        outputs=outputs,
        dataset=judge.dataset,
        test_accuracy=None if np.isnan(judge.test_accuracy) else judge.test_accuracy,
    )
    # The file first, durable, then the card that names it: a reader never sees a judge it cannot load.
    atomic_write(version_dir / contract.JUDGE_FILE, data, durable=True)
    card_path = version_dir / contract.CARD_FILE
    original = card_path.read_text()
    raw = json.loads(original)
    raw["judge"] = section.model_dump(mode="json")
    text = json.dumps(raw, indent=2, ensure_ascii=False) + ("\n" if original.endswith("\n") else "")
    ModelCard.model_validate_json(text)  # never leave a card the server would reject
    atomic_write(card_path, text, durable=True)
    return section
