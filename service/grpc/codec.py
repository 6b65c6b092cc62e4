"""The Open Inference Protocol's gRPC messages, both ways: a ``ModelInferRequest`` becomes the data plane's
:class:`~service.requests.TensorRequest`, the images a ``ModelInferResponse``, and the data plane's
descriptions (:mod:`service.dataplane.describe`) the metadata, configuration, statistics and index
messages. Only tensors and names live here; what they mean is the data plane's. Refusals name the tensor
or field at fault, in the words of the HTTP codec (:mod:`service.http.oip_codec`).
"""

from __future__ import annotations

import math
import sys

import numpy as np

import cgan_contract as contract
from service.dataplane import describe
from service.errors import RequestError
from service.grpc.proto import grpc_service_pb2 as pb
from service.grpc.proto import model_config_pb2 as config_pb
from service.models import LoadedModel
from service.oip import DATATYPES, INPUTS, MAX_DIM, OPTIONAL_INPUTS, SEED_PARAMETER, shown_shape
from service.requests import TensorRequest

_ALL_INPUTS = {**INPUTS, **OPTIONAL_INPUTS}
_NUMPY = {"FP32": np.dtype("<f4"), "INT64": np.dtype("<i8")}
#: Which typed ``contents`` field carries each datatype (when ``raw_input_contents`` is not used).
_CONTENTS = {"FP32": "fp32_contents", "INT64": "int64_contents"}
_IMAGE_DATATYPE = DATATYPES["uint8"]


def model_name(name: str, field: str = "name") -> str:
    if not name:
        raise RequestError(f"{field}: a model name is required", field)
    if not contract.valid_model_name(name):
        raise RequestError(f"{field}: {name[:64]!r} is not a valid model name", field)
    return name


def model_version(version: str, field: str = "version") -> int | None:
    """A version string: empty for the newest loaded one, else a positive integer (``"2"``, not ``"2.0"``)."""
    if not version:
        return None
    if not (version.isascii() and version.isdigit()) or len(version) > 18 or int(version) < 1:
        raise RequestError(f"{field}: {version[:32]!r} is not a model version (a positive integer)", field)
    return int(version)


def infer_request(request: pb.ModelInferRequest) -> TensorRequest:
    """The domain request of a ``ModelInferRequest``; :class:`RequestError` names the part at fault."""
    name = model_name(request.model_name, "model_name")
    version = model_version(request.model_version, "model_version")
    inputs, raw = request.inputs, request.raw_input_contents
    if raw and len(raw) != len(inputs):
        detail = (
            f"raw_input_contents: {len(raw)} entries for {len(inputs)} inputs; give one per input, in order"
        )
        raise RequestError(detail, "raw_input_contents")
    tensors: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(inputs):
        where = f"inputs[{i}]"
        if tensor.name not in _ALL_INPUTS:
            detail = f"{where}.name: unknown input {tensor.name[:64]!r}; the model takes {sorted(INPUTS)}"
            raise RequestError(detail, f"{where}.name")
        if tensor.name in tensors:
            raise RequestError(f"{where}.name: input {tensor.name!r} is given twice", f"{where}.name")
        tensors[tensor.name] = _tensor(tensor, raw[i] if raw else None, i)
    if contract.INPUT_LABEL not in tensors:
        raise RequestError(f"inputs: the {contract.INPUT_LABEL!r} input (INT64 [N]) is required", "inputs")
    for i, output in enumerate(request.outputs):
        if output.name != contract.OUTPUT_IMAGE:
            where = f"outputs[{i}].name"
            detail = f"{where}: unknown output {output.name[:64]!r}; the model has {contract.OUTPUT_IMAGE!r}"
            raise RequestError(detail, where)
    return TensorRequest(
        labels=tensors[contract.INPUT_LABEL],
        z=tensors.get(contract.INPUT_NOISE),
        codes=tensors.get(contract.INPUT_CODES),
        seed=_seed(request),
        model=name,
        version=version,
        encode=pixels,
        media_type="application/grpc",
    )


def _tensor(tensor: pb.ModelInferRequest.InferInputTensor, raw: bytes | None, index: int) -> np.ndarray:
    name = tensor.name
    want = _ALL_INPUTS[name]
    if tensor.datatype != want:
        raise RequestError(f"{name}: datatype {tensor.datatype[:16]!r}; the model takes {want}", name)
    shape = list(tensor.shape)
    if any(d < 0 for d in shape):
        raise RequestError(f"{name}: shape {shape[:8]} has a negative dimension", name)
    count = math.prod(shape)
    if any(d > MAX_DIM for d in shape) or count > MAX_DIM:  # 0 elements yet no array has that shape
        raise RequestError(f"{name}: shape {shown_shape(shape)} is too large", name)
    dtype = _NUMPY[want]
    contents = getattr(tensor.contents, _CONTENTS[want])
    if raw is not None:
        if tensor.HasField("contents"):
            raise RequestError(f"{name}: give contents or raw_input_contents, not both", name)
        if len(raw) != count * dtype.itemsize:
            detail = (
                f"{name}: {len(raw)} bytes in raw_input_contents[{index}]; {want} {shape[:8]} is "
                f"{count * dtype.itemsize} bytes"
            )
            raise RequestError(detail, name)
        array = np.frombuffer(raw, dtype=dtype).reshape(shape)
        return array.astype(dtype.newbyteorder("="), copy=sys.byteorder != "little")
    if not tensor.HasField("contents"):
        raise RequestError(f"{name}: no data (give raw_input_contents, or contents.{_CONTENTS[want]})", name)
    if len(contents) != count:
        detail = (
            f"{name}: {len(contents)} values in contents.{_CONTENTS[want]}, shape {shape[:8]} needs {count}"
        )
        raise RequestError(detail, name)
    return np.asarray(contents, dtype=dtype.newbyteorder("=")).reshape(shape)


def _seed(request: pb.ModelInferRequest) -> int | None:
    """The ``seed`` parameter (int64 or uint64) within the contract's bound."""
    if SEED_PARAMETER not in request.parameters:
        return None
    parameter = request.parameters[SEED_PARAMETER]
    kind = parameter.WhichOneof("parameter_choice")
    seed = getattr(parameter, kind) if kind in ("int64_param", "uint64_param") else None
    if seed is not None:
        try:
            contract.check_seed(seed)
            return seed
        except ValueError:
            pass
    raise RequestError(f"seed: the seed parameter must be an integer in 0..{contract.MAX_SEED}", "seed")


def pixels(model: LoadedModel, seed: int | None, images: np.ndarray) -> bytes:
    """The ``image`` output's raw bytes (row-major uint8), made on the generating thread."""
    return np.ascontiguousarray(images, dtype=np.uint8).tobytes()


def infer_response(
    model: LoadedModel, seed: int | None, request_id: str, count: int, body: bytes
) -> pb.ModelInferResponse:
    """``count`` images of ``model`` as the ``image`` output in ``raw_output_contents``; the seed used (the
    caller's or a random one) is echoed as the ``seed`` parameter, as over HTTP."""
    response = pb.ModelInferResponse(
        model_name=model.name,
        model_version=str(model.version),
        id=request_id,
        outputs=[
            pb.ModelInferResponse.InferOutputTensor(
                name=contract.OUTPUT_IMAGE, datatype=_IMAGE_DATATYPE, shape=[count, *model.card.image_shape]
            )
        ],
        raw_output_contents=[body],
    )
    if seed is not None:
        response.parameters[SEED_PARAMETER].int64_param = seed
    return response


# --- the descriptions -----------------------------------------------------------------------------------


def server_metadata(server: describe.Server) -> pb.ServerMetadataResponse:
    return pb.ServerMetadataResponse(name=server.name, version=server.version, extensions=server.extensions)


def model_metadata(found: describe.ModelMetadata) -> pb.ModelMetadataResponse:
    def tensor(t: describe.Tensor) -> pb.ModelMetadataResponse.TensorMetadata:
        return pb.ModelMetadataResponse.TensorMetadata(name=t.name, datatype=t.datatype, shape=t.shape)

    return pb.ModelMetadataResponse(
        name=found.name,
        versions=found.versions,
        platform=found.platform,
        inputs=[tensor(t) for t in found.inputs],
        outputs=[tensor(t) for t in found.outputs],
    )


def model_config(found: describe.ModelConfig) -> pb.ModelConfigResponse:
    def reshape(t: describe.ConfigTensor) -> config_pb.ModelTensorReshape | None:
        return None if t.reshape is None else config_pb.ModelTensorReshape(shape=t.reshape)

    def datatype(t: describe.ConfigTensor) -> int:
        return config_pb.DataType.Value(f"TYPE_{t.datatype}")

    policy = config_pb.ModelVersionPolicy(
        specific=config_pb.ModelVersionPolicy.Specific(versions=found.versions)
    )
    return pb.ModelConfigResponse(
        config=config_pb.ModelConfig(
            name=found.name,
            platform=found.platform,
            backend=found.backend,
            version_policy=policy,
            max_batch_size=found.max_batch_size,
            input=[
                config_pb.ModelInput(
                    name=t.name, data_type=datatype(t), dims=t.dims, reshape=reshape(t), optional=t.optional
                )
                for t in found.inputs
            ],
            output=[
                config_pb.ModelOutput(name=t.name, data_type=datatype(t), dims=t.dims, reshape=reshape(t))
                for t in found.outputs
            ],
        )
    )


def statistics(found: list[describe.ModelStats]) -> pb.ModelStatisticsResponse:
    def duration(d: describe.Duration) -> pb.StatisticDuration:
        return pb.StatisticDuration(count=d.count, ns=d.ns)

    return pb.ModelStatisticsResponse(
        model_stats=[
            pb.ModelStatistics(
                name=s.name,
                version=s.version,
                inference_count=s.inference_count,
                execution_count=s.execution_count,
                inference_stats=pb.InferStatistics(
                    success=duration(s.success),
                    fail=duration(s.fail),
                    queue=pb.StatisticDuration(),
                    compute_input=pb.StatisticDuration(),
                    compute_infer=duration(s.compute_infer),
                    compute_output=pb.StatisticDuration(),
                    cache_hit=pb.StatisticDuration(),
                    cache_miss=pb.StatisticDuration(),
                ),
            )
            for s in found
        ]
    )


def repository_index(entries: list[describe.IndexEntry]) -> pb.RepositoryIndexResponse:
    return pb.RepositoryIndexResponse(
        models=[
            pb.RepositoryIndexResponse.ModelIndex(
                name=e.name, version=e.version, state=e.state, reason=e.reason
            )
            for e in entries
        ]
    )
