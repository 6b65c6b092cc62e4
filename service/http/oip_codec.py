"""The Open Inference Protocol's (KServe v2) inference wire format: the JSON form and the binary tensor
extension, both ways. Only tensors and their names live here; what they mean is the data plane's.

A request body is a JSON header, optionally followed by raw tensor bytes: the
``Inference-Header-Content-Length`` HTTP header says where the JSON ends, and each input that travels as
bytes says its size in ``parameters.binary_data_size``, in input order. Outputs travel as bytes when the
output asks for ``binary_data`` or the request sets ``binary_data_output`` (what ``tritonclient`` does by
default); the response then carries the same header and ``binary_data_size``. Tensors are little-endian,
row-major.
"""

from __future__ import annotations

import contextlib
import math
import sys
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

import cgan_contract as contract
from service.errors import RequestError
from service.models import LoadedModel
from service.oip import DATATYPES, INPUTS, OPTIONAL_INPUTS, SEED_PARAMETER
from service.requests import TensorRequest

HEADER_LENGTH = "Inference-Header-Content-Length"
_NUMPY = {"FP32": np.dtype("<f4"), "INT64": np.dtype("<i8"), "UINT8": np.dtype("u1")}
_ALL_INPUTS = {**INPUTS, **OPTIONAL_INPUTS}


class BadRequest(RequestError):
    """Binary framing that does not add up (header length, tensor sizes): the body cannot be split."""

    status = 400


class UnsupportedEncoding(RequestError):
    status = 415


# --- the JSON header, as the protocol defines it (unknown keys are extensions we ignore) ----------------


class _Tensor(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    name: str = Field(max_length=256)
    shape: list[int]
    datatype: str = Field(max_length=16)
    parameters: dict[str, Any] | None = None
    data: list | None = None


class _Output(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    name: str = Field(max_length=256)
    parameters: dict[str, Any] | None = None


class InferenceRequest(BaseModel):
    """``POST /v2/models/{name}/infer``: ``label`` INT64 [N] and either ``z`` FP32 [N, latent_dim] or the
    request parameter ``seed`` (image i uses seed + i; random, and echoed back, when neither is given)."""

    model_config = ConfigDict(
        extra="ignore",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "id": "42",
                    "parameters": {"seed": 7},
                    "inputs": [{"name": "label", "shape": [2], "datatype": "INT64", "data": [3, 9]}],
                    "outputs": [{"name": "image"}],
                }
            ]
        },
    )

    id: str | None = Field(None, max_length=256)
    parameters: dict[str, Any] | None = None
    inputs: list[_Tensor] = Field(min_length=1, max_length=len(_ALL_INPUTS))
    outputs: list[_Output] | None = Field(None, max_length=1)


class ResponseOutput(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, Any] | None = None
    data: list[int] | None = None


class InferenceResponse(BaseModel):
    """The answer; with binary output the JSON is followed by the image bytes (``binary_data_size``)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model_name": "mnist-cgan",
                    "model_version": "3",
                    "id": "42",
                    "parameters": {"seed": 7},
                    "outputs": [{"name": "image", "datatype": "UINT8", "shape": [2, 28, 28, 1], "data": [0]}],
                }
            ]
        }
    )

    model_name: str
    model_version: str
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[ResponseOutput]


# --- decoding -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decoded:
    """A request's tensors by input name, its ``seed`` parameter, and how the caller wants the output."""

    tensors: dict[str, np.ndarray]
    seed: int | None
    request_id: str | None
    binary_output: bool

    def to_request(self, model: str, version: int | None) -> TensorRequest:
        """The domain request for model ``model`` (at ``version``), with the encoder of the response form
        the caller asked for (:func:`encode`)."""
        return TensorRequest(
            labels=self.tensors[contract.INPUT_LABEL],
            z=self.tensors.get(contract.INPUT_NOISE),
            codes=self.tensors.get(contract.INPUT_CODES),
            seed=self.seed,
            model=model,
            version=version,
            encode=partial(encode, self.request_id, self.binary_output),
            media_type="application/octet-stream" if self.binary_output else "application/json",
        )

    def headers(self, model: LoadedModel, body: bytes) -> dict[str, str]:
        """The answer's headers: the model and, for binary output, where its JSON ends."""
        headers = {"X-Model": model.name, "X-Model-Version": str(model.version)}
        if self.binary_output:
            images = binary_size(model, len(self.tensors[contract.INPUT_LABEL]))
            headers[HEADER_LENGTH] = str(len(body) - images)
        return headers


def decode(body: bytes, header_length: str | None, content_encoding: str | None = None) -> Decoded:
    """Parse an inference request body; :class:`RequestError` (400/415/422) names the part at fault."""
    if content_encoding not in (None, "", "identity"):
        raise UnsupportedEncoding(
            f"Content-Encoding: {content_encoding!r} is not supported; send the body uncompressed",
            "Content-Encoding",
        )
    if header_length is None:
        split = len(body)
    elif header_length.isdigit() and int(header_length) <= len(body):
        split = int(header_length)
    else:
        detail = f"{HEADER_LENGTH}: {header_length!r} is not a byte count within the {len(body)}-byte body"
        raise BadRequest(detail, HEADER_LENGTH)
    try:
        request = InferenceRequest.model_validate_json(body[:split])
    except ValidationError as e:
        raise _invalid(e) from None
    binary = memoryview(body)[split:]
    tensors: dict[str, np.ndarray] = {}
    offset = 0
    for i, tensor in enumerate(request.inputs):
        where = f"inputs[{i}]"
        if tensor.name not in _ALL_INPUTS:
            detail = f"{where}.name: unknown input {tensor.name!r}; the model takes {sorted(INPUTS)}"
            raise RequestError(detail, f"{where}.name")
        if tensor.name in tensors:
            raise RequestError(f"{where}.name: input {tensor.name!r} is given twice", f"{where}.name")
        array, offset = _tensor(tensor, binary, offset)
        tensors[tensor.name] = array
    if offset != len(binary):
        detail = (
            f"body: {len(binary)} bytes of binary tensor data; the inputs' binary_data_size sum to {offset}"
        )
        raise BadRequest(detail, "body")
    if contract.INPUT_LABEL not in tensors:
        raise RequestError(f"inputs: the {contract.INPUT_LABEL!r} input (INT64 [N]) is required", "inputs")
    parameters = request.parameters or {}
    return Decoded(tensors, _seed(parameters), request.id, _binary_output(request, parameters))


def _invalid(error: ValidationError) -> RequestError:
    first = error.errors()[0]
    if first.get("type") == "json_invalid":
        # 422 like every other unparseable JSON body of this API; 400 is kept for broken binary framing.
        return RequestError("body: the inference request is not valid JSON", "body")
    loc = first.get("loc", ())
    field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or "body"
    return RequestError(f"{field}: {first.get('msg', 'invalid')}", field)


def _tensor(tensor: _Tensor, binary: memoryview, offset: int) -> tuple[np.ndarray, int]:
    name = tensor.name
    want = _ALL_INPUTS[name]
    if tensor.datatype != want:
        raise RequestError(f"{name}: datatype {tensor.datatype!r}; the model takes {want}", name)
    if any(d < 0 for d in tensor.shape):
        raise RequestError(f"{name}: shape {tensor.shape} has a negative dimension", name)
    dtype = _NUMPY[want]
    count = math.prod(tensor.shape)
    size = (tensor.parameters or {}).get("binary_data_size")
    if size is not None:
        if tensor.data is not None:
            raise RequestError(f"{name}: give data or binary_data_size, not both", name)
        if isinstance(size, bool) or not isinstance(size, int) or size != count * dtype.itemsize:
            detail = (
                f"{name}: binary_data_size {size!r}; {want} {tensor.shape} is {count * dtype.itemsize} bytes"
            )
            raise RequestError(detail, name)
        if offset + size > len(binary):
            raise BadRequest(f"{name}: the body ends inside this tensor's binary data", name)
        array = np.frombuffer(binary[offset : offset + size], dtype=dtype).reshape(tensor.shape)
        return array.astype(dtype.newbyteorder("="), copy=sys.byteorder != "little"), offset + size
    if tensor.data is None:
        raise RequestError(f"{name}: no data (give data, or binary_data_size and the bytes)", name)
    try:
        values = np.asarray(tensor.data)
    except ValueError:
        raise RequestError(f"{name}: data is ragged", name) from None
    kinds = "iu" if want == "INT64" else "iuf"
    if values.size and values.dtype.kind not in kinds:
        kind = "integers" if want == "INT64" else "numbers"
        raise RequestError(f"{name}: data must be {kind} for {want}", name)
    if values.size != count:
        raise RequestError(f"{name}: {values.size} values in data, shape {tensor.shape} needs {count}", name)
    if want == "INT64" and values.size and (values.min() < -(2**63) or values.max() >= 2**63):
        raise RequestError(f"{name}: data out of INT64 range", name)
    return values.astype(dtype.newbyteorder("=")).reshape(tensor.shape), offset


def _seed(parameters: dict[str, Any]) -> int | None:
    """The ``seed`` parameter: an integer within the contract's bound (whether the seeds of all the request's
    images fit is the data plane's to say, once it knows how many there are)."""
    seed = parameters.get(SEED_PARAMETER)
    if seed is None:
        return None
    if isinstance(seed, int) and not isinstance(seed, bool):
        with contextlib.suppress(ValueError):
            contract.check_seed(seed)
            return seed
    raise RequestError(f"seed: the seed parameter must be an integer in 0..{contract.MAX_SEED}", "seed")


def _binary_output(request: InferenceRequest, parameters: dict[str, Any]) -> bool:
    default = parameters.get("binary_data_output") is True
    if not request.outputs:
        return default
    (output,) = request.outputs
    if output.name != contract.OUTPUT_IMAGE:
        detail = f"outputs[0].name: unknown output {output.name!r}; the model has {contract.OUTPUT_IMAGE!r}"
        raise RequestError(detail, "outputs[0].name")
    output_parameters = output.parameters or {}
    if "classification" in output_parameters:
        raise RequestError("outputs[0].parameters.classification: not supported", "outputs[0].parameters")
    binary = output_parameters.get("binary_data")
    return default if binary is None else binary is True


# --- encoding -----------------------------------------------------------------------------------------


def binary_size(model: LoadedModel, n: int) -> int:
    """Bytes of the ``image`` output for ``n`` images: what follows the JSON in a binary response."""
    return n * math.prod(model.card.image_shape)


def encode(
    request_id: str | None, binary: bool, model: LoadedModel, seed: int | None, images: np.ndarray
) -> bytes:
    """The response body for ``[n, H, W, C]`` uint8 images: JSON, then the image bytes when ``binary``."""
    output: dict[str, Any] = {
        "name": contract.OUTPUT_IMAGE,
        "datatype": DATATYPES["uint8"],
        "shape": list(images.shape),
    }
    pixels = np.ascontiguousarray(images, dtype=np.uint8)
    if binary:
        output["parameters"] = {"binary_data_size": pixels.nbytes}
    else:
        output["data"] = pixels.reshape(-1)
    header: dict[str, Any] = {"model_name": model.name, "model_version": str(model.version)}
    if request_id is not None:
        header["id"] = request_id
    if seed is not None:
        header["parameters"] = {SEED_PARAMETER: seed}
    header["outputs"] = [output]
    encoded = orjson.dumps(header, option=orjson.OPT_SERIALIZE_NUMPY)
    return encoded + pixels.tobytes() if binary else encoded
