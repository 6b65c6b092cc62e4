"""Keras generator -> ONNX with the contract's signature, a parity check, and an atomic versioned write.

The model card is built here and only here, from the facts :func:`export` is given; the ONNX graph is
checked with the same runner (:mod:`cgan_contract.runner`) the service serves with.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path

import numpy as np

import cgan_contract as contract
from cgan_contract import runner
from trainer.files import fsync_dir, fsync_file, sha256_file, write_synced

OPSET = 17
#: Keras and onnxruntime may round a pixel differently by one grey level, never more.
PARITY_TOLERANCE = 1


class ExportError(Exception):
    """The export could not be completed; nothing was published."""


def trainer_version() -> str:
    try:
        return package_version("cgan-synth")
    except PackageNotFoundError:
        return "0+unknown"


def to_onnx(generator, latent_dim: int, num_codes: int = 0):
    """Convert with an explicit signature, then rewrite exactly (:mod:`trainer.onnx_rewrite`); the uint8
    pixel rule of the contract is part of the graph.

    ``num_codes`` > 0: the generator also takes style codes, the graph's third input ``codes``.
    """
    import tensorflow as tf
    import tf2onnx

    from trainer import onnx_rewrite

    signature = (
        tf.TensorSpec([None, latent_dim], tf.float32, name=contract.INPUT_NOISE),
        tf.TensorSpec([None], tf.int64, name=contract.INPUT_LABEL),
    )
    if num_codes:
        signature += (tf.TensorSpec([None, num_codes], tf.float32, name=contract.INPUT_CODES),)

    def pixels_of(images):
        pixels = tf.clip_by_value(tf.round((images + 1.0) * 127.5), 0.0, 255.0)
        return {contract.OUTPUT_IMAGE: tf.cast(pixels, tf.uint8)}

    if num_codes:

        @tf.function(input_signature=signature)
        def serve(z, label, codes):
            return pixels_of(generator([z, tf.cast(label, tf.int32), codes], training=False))

    else:

        @tf.function(input_signature=signature)
        def serve(z, label):
            return pixels_of(generator([z, tf.cast(label, tf.int32)], training=False))

    proto, _ = tf2onnx.convert.from_function(serve, input_signature=signature, opset=OPSET)
    _rename_io(proto)
    # Exact rewrites for onnxruntime's CPU kernels; export's parity check runs on the rewritten graph.
    proto, _ = onnx_rewrite.optimize(proto)
    return proto


def _rename_io(proto) -> None:
    """tf2onnx may suffix names (``z:0``); the contract wants the bare names."""
    graph = proto.graph
    wanted = {
        contract.INPUT_NOISE: contract.INPUT_NOISE,
        contract.INPUT_LABEL: contract.INPUT_LABEL,
        contract.INPUT_CODES: contract.INPUT_CODES,
        contract.OUTPUT_IMAGE: contract.OUTPUT_IMAGE,
    }
    renames = {}
    for value in [*graph.input, *graph.output]:
        bare = value.name.split(":")[0]
        for key in wanted:
            if bare == key or bare.endswith("/" + key):
                renames[value.name] = key
    if len(graph.output) == 1 and graph.output[0].name not in renames:
        renames[graph.output[0].name] = contract.OUTPUT_IMAGE
    for value in [*graph.input, *graph.output]:
        value.name = renames.get(value.name, value.name)
    for node in graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]


def parity(
    generator,
    session,
    latent_dim: int,
    num_classes: int,
    n: int = 64,
    code_ranges: list[tuple[float, float]] | None = None,
) -> int:
    """Max absolute pixel difference between Keras and onnxruntime on fixed noise, labels and codes."""
    seeds = contract.request_seeds(12345, n)
    labels = np.arange(n, dtype=np.int64) % num_classes
    inputs = [contract.noise_for_seeds(seeds, latent_dim), labels.astype(np.int32)]
    if code_ranges:
        inputs.append(contract.codes_for_seeds(seeds, latent_dim, code_ranges))
    expected = contract.to_uint8(np.asarray(generator(inputs, training=False)))
    got = runner.generate(session, labels, seeds, latent_dim, code_ranges=code_ranges)
    if got.shape != expected.shape or got.dtype != np.uint8:
        raise ExportError(f"onnx output is {got.dtype} {got.shape}, expected uint8 {expected.shape}")
    return int(np.abs(got.astype(np.int16) - expected.astype(np.int16)).max())


def check_signature(session, latent_dim: int, image_shape, num_codes: int = 0) -> None:
    inputs, outputs = contract.signature(latent_dim, image_shape, num_codes)
    got_all = [*session.get_inputs(), *session.get_outputs()]
    if len(got_all) != len(inputs) + len(outputs):
        raise ExportError(
            f"onnx has {len(got_all)} inputs and outputs, the contract {len(inputs) + len(outputs)}"
        )
    for want, got in zip([*inputs, *outputs], got_all, strict=True):
        got_shape = [d if isinstance(d, int) else None for d in got.shape]
        if got.name != want.name or got.type != runner.ORT_TYPES[want.dtype] or got_shape != want.shape:
            raise ExportError(
                f"onnx {got.name} {got.type} {got.shape} does not match the contract's "
                f"{want.name} {want.dtype} {want.shape}"
            )


def next_version(model_root: Path) -> int:
    found = contract.version_dirs(model_root)
    return found[-1][0] + 1 if found else 1


def publish(staging: Path, model_root: Path, card: contract.ModelCard) -> Path:
    """Rename a complete staging dir to the next free version; never overwrite an existing one.

    Durability order: every file in ``staging`` is already fsynced; the card is written and fsynced here
    (again for each version tried, as its number is in it), then the staging directory, then the rename,
    then ``model_root``, so that after a power cut a version directory is either absent or complete.
    """
    for _ in range(100):
        version = next_version(model_root)
        card = card.model_copy(update={"version": version})
        target = model_root / str(version)
        if target.exists():
            continue
        write_synced(staging / contract.CARD_FILE, contract.card_json(card).encode())
        fsync_dir(staging)
        try:
            # rename() of a directory fails when the target exists and is not empty, so a concurrent
            # exporter that took this number makes us retry with the next one instead of overwriting.
            os.rename(staging, target)
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                continue
            raise
        fsync_dir(model_root)
        return target
    raise ExportError(f"could not claim a version number under {model_root}")


def export(
    generator,
    models_dir: Path,
    *,
    name: str,
    variant: str,
    arch: str,
    dataset: str,
    class_names: list[str],
    latent_dim: int,
    image_shape: tuple[int, int, int],
    training: contract.Training | None = None,
    extra_files: dict[str, Path] | None = None,
    codes: list[contract.StyleCode] | None = None,
) -> Path:
    """Export ``generator`` to ``models_dir/<name>/<version>/``; return the version directory.

    The keyword arguments are the card's facts about the model; the export adds the signature, digest,
    version and dates. ``extra_files`` (name -> source) are copied in beside it when they exist. ``codes``:
    the generator's style codes in input order (it then takes ``[z, label, codes]``), listed on the card.
    """
    codes = list(codes or [])
    code_ranges = [code.range for code in codes]
    if not contract.valid_model_name(name):
        raise ExportError(f"model name {name!r} must match {contract.MODEL_NAME_PATTERN}")
    model_root = Path(models_dir) / name
    try:
        model_root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create {model_root}: {exc.strerror}") from None
    if not os.access(model_root, os.W_OK):
        raise ExportError(f"{model_root} is not writable")

    proto = to_onnx(generator, latent_dim, len(codes))
    onnx_bytes = proto.SerializeToString()
    session = runner.open_session(onnx_bytes)
    check_signature(session, latent_dim, image_shape, len(codes))
    diff = parity(generator, session, latent_dim, len(class_names), code_ranges=code_ranges)
    if diff > PARITY_TOLERANCE:
        raise ExportError(
            f"onnx output differs from keras by {diff} grey levels (allowed {PARITY_TOLERANCE})"
        )

    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=model_root))
    try:
        (staging / contract.MODEL_FILE).write_bytes(onnx_bytes)
        for extra, source in (extra_files or {}).items():
            if Path(source).is_file():
                shutil.copyfile(source, staging / extra)
        inputs, outputs = contract.signature(latent_dim, image_shape, len(codes))
        card = contract.ModelCard(
            name=name,
            version=1,
            variant=variant,
            arch=arch,
            dataset=dataset,
            class_names=class_names,
            latent_dim=latent_dim,
            image_shape=image_shape,
            inputs=inputs,
            outputs=outputs,
            opset=OPSET,
            sha256=sha256_file(staging / contract.MODEL_FILE),
            created_at=datetime.now(UTC),
            trainer_version=trainer_version(),
            training=training,
            codes=codes,
        )
        for path in staging.iterdir():
            fsync_file(path)
        os.chmod(staging, 0o755)
        return publish(staging, model_root, card)  # writes and syncs the card, then the directories
    except OSError as exc:
        raise ExportError(f"writing the model under {model_root} failed: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(staging)
