"""The Open Inference Protocol's (KServe v2) vocabulary for this service, whichever transport carries it
(HTTP: :mod:`service.http.oip_codec` and :mod:`service.routes.oip`; gRPC: :mod:`service.grpc`): the server's
name and extensions, the platform, the datatypes, the inputs a request may send, the parameters it knows.
"""

from __future__ import annotations

import cgan_contract as contract

#: ``name`` in the server metadata (``GET /v2``, ``ServerMetadata``).
SERVER_NAME = "cgan-synth"
#: What this server implements beyond the core protocol (the server metadata's ``extensions``): binary
#: tensors (HTTP; gRPC always carries raw bytes), request parameters (``seed``), model configuration
#: (``.../config``), statistics (``.../stats``). The repository index (``POST /v2/repository/index``,
#: ``RepositoryIndex``) is served too, but not the rest of ``model_repository`` (load and unload: models
#: come and go with MODELS_DIR), so that extension is not claimed.
EXTENSIONS = ["binary_tensor_data", "parameters", "model_configuration", "statistics"]
#: ``platform`` in model metadata and configuration.
PLATFORM = "onnxruntime_onnx"
#: The protocol's datatypes for the contract's dtypes.
DATATYPES = {"float32": "FP32", "int64": "INT64", "uint8": "UINT8"}
#: The inputs a request may send, with the datatype each must have.
INPUTS = {contract.INPUT_LABEL: "INT64", contract.INPUT_NOISE: "FP32"}
#: Inputs only some models take (those with style codes); the data plane refuses them for the others.
OPTIONAL_INPUTS = {contract.INPUT_CODES: "FP32"}
#: The largest dimension and element count an input may declare where no model bounds it yet (an HTTP body
#: decoded alone, a gRPC message before the data plane): past it no array can be built, so it is refused.
MAX_DIM = 2**31 - 1
#: The request parameter that picks the images' seeds (image i from seed + i), echoed in the response.
SEED_PARAMETER = "seed"


def shown_shape(shape: list[int]) -> str:
    """A shape for a message, its dimensions cut short: ``[1, 1, ... (65 dimensions)]``."""
    parts = [str(d) if d < 10**12 else f"{str(d)[:6]}...({len(str(d))} digits)" for d in shape[:4]]
    return "[" + ", ".join(parts) + (f", ... ({len(shape)} dimensions)]" if len(shape) > 4 else "]")
