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
#: The request parameter that picks the images' seeds (image i from seed + i), echoed in the response.
SEED_PARAMETER = "seed"
