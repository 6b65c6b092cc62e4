"""What the trainer and the service agree on, written down once: ``import cgan_contract as contract``.

Both sides import this package and neither imports the other, so it depends on numpy and pydantic only
(:mod:`cgan_contract.runner` opens onnxruntime sessions, importing onnxruntime only when asked to).

A model lives in ``MODELS_DIR/<name>/<version>/`` (:mod:`~cgan_contract.layout`) and holds:

* ``model.onnx``: the generator, with the tensors of :mod:`~cgan_contract.tensors`: ``z`` float32
  ``[N, latent_dim]`` and ``label`` int64 ``[N]`` in, ``image`` uint8 ``[N, H, W, C]`` out. The pixel rule of
  :mod:`~cgan_contract.pixels` (tanh -> uint8, 0 background, 255 ink) is part of the graph, so a server does
  no per-pixel work.
  A generator with style codes (InfoGAN) also takes ``codes`` float32 ``[N, k]``, each code's name and range
  listed in the card's ``codes``.
* ``model.json``: a :class:`~cgan_contract.card.ModelCard`. A server can serve the model from the card alone.
* ``judge.onnx`` (optional, declared in the card's ``judge`` section): a classifier of the generator's
  images, ``image`` uint8 ``[N, H, W, C]`` in, ``probabilities`` float32 ``[N, classes]`` out
  (:func:`~cgan_contract.tensors.judge_signature`).

Noise is reproducible (:mod:`~cgan_contract.noise`): image ``i`` of a request with seed ``s`` uses the noise
of seed ``s + i``, so ``{seed: s, n: 16}`` image ``k`` equals ``{seed: s + k, n: 1}``; a request without codes
takes image i's codes from the same seed (:func:`~cgan_contract.noise.codes_for_seeds`).

A data set (``/dataset``, ``cgan-bulk``) holds image ``j`` with label ``labels[j // per_label]`` and seed
``seed + j``, handed out in the order :mod:`~cgan_contract.order` defines (class-mixed by default).
"""

from cgan_contract.card import (
    CONTRACT_VERSION,
    PRDC,
    AugmentationArm,
    GateFigures,
    JudgeSection,
    ModelCard,
    Provenance,
    Quality,
    QualityGate,
    StyleCode,
    Training,
    card_json,
    read_card,
)
from cgan_contract.layout import (
    CARD_FILE,
    JUDGE_FILE,
    MODEL_FILE,
    MODEL_NAME_PATTERN,
    valid_model_name,
    version_dirs,
)
from cgan_contract.noise import (
    MAX_TRUNCATION,
    MIN_TRUNCATION,
    codes_for_seeds,
    noise,
    noise_for_seeds,
    truncated_noise_for_seeds,
)
from cgan_contract.order import DEFAULT_ORDER, ORDERS, Order, check_order, image_indices
from cgan_contract.pixels import BACKGROUND, INK, from_uint8, to_uint8
from cgan_contract.seeds import (
    MAX_DRAWS_PER_IMAGE,
    MAX_SEED,
    block_candidates,
    check_seed,
    index_seeds,
    last_first_seed,
    request_candidates,
    request_seeds,
)
from cgan_contract.tensors import (
    CODES_DTYPE,
    IMAGE_DTYPE,
    INPUT_CODES,
    INPUT_LABEL,
    INPUT_NOISE,
    JUDGE_INPUT,
    JUDGE_OUTPUT,
    LABEL_DTYPE,
    NOISE_DTYPE,
    OUTPUT_IMAGE,
    TensorSpec,
    judge_signature,
    signature,
)

__all__ = [
    "BACKGROUND",
    "CARD_FILE",
    "CODES_DTYPE",
    "CONTRACT_VERSION",
    "DEFAULT_ORDER",
    "IMAGE_DTYPE",
    "INK",
    "INPUT_CODES",
    "INPUT_LABEL",
    "INPUT_NOISE",
    "JUDGE_FILE",
    "JUDGE_INPUT",
    "JUDGE_OUTPUT",
    "LABEL_DTYPE",
    "MAX_DRAWS_PER_IMAGE",
    "MAX_SEED",
    "MAX_TRUNCATION",
    "MIN_TRUNCATION",
    "MODEL_FILE",
    "MODEL_NAME_PATTERN",
    "NOISE_DTYPE",
    "ORDERS",
    "OUTPUT_IMAGE",
    "GateFigures",
    "JudgeSection",
    "PRDC",
    "AugmentationArm",
    "ModelCard",
    "Order",
    "Provenance",
    "Quality",
    "QualityGate",
    "StyleCode",
    "TensorSpec",
    "Training",
    "block_candidates",
    "card_json",
    "check_seed",
    "check_order",
    "codes_for_seeds",
    "from_uint8",
    "image_indices",
    "index_seeds",
    "noise",
    "noise_for_seeds",
    "read_card",
    "request_seeds",
    "judge_signature",
    "last_first_seed",
    "request_candidates",
    "signature",
    "to_uint8",
    "truncated_noise_for_seeds",
    "valid_model_name",
    "version_dirs",
]
