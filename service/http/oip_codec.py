"""The Open Inference Protocol's (KServe v2) inference wire format: the JSON form and the binary tensor
extension, both ways. Only tensors and their names live here; what they mean is the data plane's.

A request body is a JSON header, optionally followed by raw tensor bytes: the
``Inference-Header-Content-Length`` HTTP header says where the JSON ends, and each input that travels as
bytes says its size in ``parameters.binary_data_size``, in input order. Outputs travel as bytes when the
output asks for ``binary_data`` or the request sets ``binary_data_output`` (what ``tritonclient`` does by
default); the response then carries the same header and ``binary_data_size``. Tensors are little-endian,
row-major.

What a body may cost before it is refused is bounded before any JSON parser runs (:func:`decode`): the
header's arrays, objects and values are counted (``bytes.count``, no parse) against what the model's inputs
can hold for MAX_N images, so a nested-list "bomb" is refused at once; the header is then parsed without
the tensors' ``data``, every input's datatype and shape are checked against the model
(:class:`Signature`), and only then is ``data`` read, with the element count known to be the model's.
"""

from __future__ import annotations

import contextlib
import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import orjson
import pydantic_core
from pydantic import BaseModel, ConfigDict, Field, ValidationError

import cgan_contract as contract
from service.errors import RequestError
from service.models import LoadedModel
from service.oip import DATATYPES, INPUTS, MAX_DIM, OPTIONAL_INPUTS, SEED_PARAMETER, shown_shape
from service.requests import TensorRequest

HEADER_LENGTH = "Inference-Header-Content-Length"
_NUMPY = {"FP32": np.dtype("<f4"), "INT64": np.dtype("<i8"), "UINT8": np.dtype("u1")}
_ALL_INPUTS = {**INPUTS, **OPTIONAL_INPUTS}
#: Dimensions a shape may have (the model's inputs have one or two).
MAX_RANK = 8
#: ASCII digits only: ``str.isdigit`` takes "²" and "٣", which ``int`` then refuses or reads.
_BYTE_COUNT = re.compile(r"[0-9]{1,18}")
#: Arrays, objects and commas a header may have beyond its tensors' values: its own structure, the
#: parameters a client sends (seed, binary_data_size, ...) and brackets or commas inside its strings
#: (``id`` and names are at most 256 characters).
_HEADER_SLACK = 2048


class BadRequest(RequestError):
    """Binary framing that does not add up (header length, tensor sizes): the body cannot be split."""

    status = 400


class UnsupportedEncoding(RequestError):
    status = 415


# --- the JSON header, as the protocol defines it (unknown keys are extensions we ignore) ----------------


class _TensorHeader(BaseModel):
    """An input without its ``data``: what is checked before the data is read."""

    model_config = ConfigDict(extra="ignore", strict=True)

    name: str = Field(max_length=256)
    shape: list[int] = Field(max_length=MAX_RANK)
    datatype: str = Field(max_length=16)
    parameters: dict[str, Any] | None = None


class _Tensor(_TensorHeader):
    data: list | None = None


class _Output(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    name: str = Field(max_length=256)
    parameters: dict[str, Any] | None = None


class _RequestHeader(BaseModel):
    """What :func:`decode` parses first: the request with its inputs' ``data`` left unread."""

    model_config = ConfigDict(extra="ignore", strict=True)

    id: str | None = Field(None, max_length=256)
    parameters: dict[str, Any] | None = None
    inputs: list[_TensorHeader] = Field(min_length=1, max_length=len(_ALL_INPUTS))
    outputs: list[_Output] | None = Field(None, max_length=1)


class InferenceRequest(BaseModel):
    """``POST /v2/models/{name}/infer``: ``label`` INT64 [N] and either ``z`` FP32 [N, latent_dim] or the
    request parameter ``seed`` (image i uses seed + i; random, and echoed back, when neither is given).
    (The documented schema; :func:`decode` parses it in two steps, the ``data`` last.)"""

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
class Signature:
    """What the model a request is for takes, to check the request against before its data is read: each
    input's dimensions after N (``label`` none, ``z`` ``(latent_dim,)``, ``codes`` ``(k,)`` for a model
    with style codes) and N's bound, MAX_N. The data plane checks the same again on the decoded tensors."""

    model: str
    version: int
    max_n: int
    inputs: Mapping[str, tuple[int, ...]]

    @classmethod
    def of(cls, model: LoadedModel, max_n: int) -> Signature:
        card = model.card
        inputs = {contract.INPUT_LABEL: (), contract.INPUT_NOISE: (card.latent_dim,)}
        if card.codes:
            inputs[contract.INPUT_CODES] = (len(card.codes),)
        return cls(model.name, model.version, max_n, inputs)

    @property
    def values(self) -> int:
        """The most numbers a request's tensors can carry: MAX_N of every input."""
        return self.max_n * sum(math.prod(dims) for dims in self.inputs.values())

    @property
    def containers(self) -> int:
        """The most arrays their data can take: one row per image for every input of two dimensions."""
        return self.max_n * len(self.inputs)


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


def decode(
    body: bytes,
    header_length: str | None,
    content_encoding: str | None = None,
    signature: Signature | None = None,
) -> Decoded:
    """Parse an inference request body for the model ``signature`` describes (without one, only the
    protocol's own rules and generic bounds are checked); :class:`RequestError` (400/415/422) names the part
    at fault."""
    if content_encoding not in (None, "", "identity"):
        raise UnsupportedEncoding(
            f"Content-Encoding: {content_encoding[:64]!r} is not supported; send the body uncompressed",
            "Content-Encoding",
        )
    if header_length is None:
        split = len(body)
    elif _BYTE_COUNT.fullmatch(header_length) and int(header_length) <= len(body):
        split = int(header_length)
    else:
        shown = header_length if len(header_length) <= 32 else header_length[:32] + "..."
        detail = f"{HEADER_LENGTH}: {shown!r} is not a byte count within the {len(body)}-byte body"
        raise BadRequest(detail, HEADER_LENGTH)
    header = body[:split]
    if signature is not None:
        _check_size(header, signature)
    try:
        request = _RequestHeader.model_validate_json(header)
    except ValidationError as e:
        raise _invalid(e) from None
    names: list[str] = []
    for i, tensor in enumerate(request.inputs):
        where = f"inputs[{i}]"
        if tensor.name not in _ALL_INPUTS:
            detail = f"{where}.name: unknown input {tensor.name!r}; the model takes {sorted(INPUTS)}"
            raise RequestError(detail, f"{where}.name")
        if tensor.name in names:
            raise RequestError(f"{where}.name: input {tensor.name!r} is given twice", f"{where}.name")
        names.append(tensor.name)
    # The label first: its N is what the other inputs' first dimension must be.
    label = next((t.shape for t in request.inputs if t.name == contract.INPUT_LABEL), None)
    for tensor in sorted(request.inputs, key=lambda t: t.name != contract.INPUT_LABEL):
        _check_shape(tensor, signature, label[0] if label else None)
    # Every shape is the model's: the data, if any, is now read, holding at most what the model takes.
    # (A binary request, what tritonclient sends, has no "data" key: its header is parsed once.)
    data = _data(header, request) if b'"data"' in header else None
    binary = memoryview(body)[split:]
    tensors: dict[str, np.ndarray] = {}
    offset = 0
    for i, tensor in enumerate(request.inputs):
        array, offset = _tensor(tensor, None if data is None else data[i], binary, offset)
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


def _check_size(header: bytes, signature: Signature) -> None:
    """Refuse a header with more arrays, objects or values than a request for this model can have, before
    any parser builds them: a nested-list bomb costs a few ``bytes.count`` passes, not a parse."""
    containers = header.count(b"[") + header.count(b"{")
    most = signature.containers + _HEADER_SLACK
    if containers > most:
        detail = (
            f"body: {containers} arrays and objects in the JSON; a request for {signature.model!r} "
            f"(at most MAX_N = {signature.max_n} images) has at most {most}"
        )
        raise RequestError(detail, "body")
    values = header.count(b",") + 1
    most = signature.values + _HEADER_SLACK
    if values > most:
        detail = (
            f"body: {values} values in the JSON; a request for {signature.model!r} "
            f"(at most MAX_N = {signature.max_n} images) has at most {most}"
        )
        raise RequestError(detail, "body")


def _check_shape(tensor: _TensorHeader, signature: Signature | None, n: int | None) -> None:
    """The input's datatype and shape, against the model's for ``n`` labels (the label's own N; ``n`` is
    None without a label), or generic bounds without a model. The words are the data plane's."""
    name, shape = tensor.name, tensor.shape
    want = _ALL_INPUTS[name]
    if tensor.datatype != want:
        raise RequestError(f"{name}: datatype {tensor.datatype[:16]!r}; the model takes {want}", name)
    if any(d < 0 for d in shape):
        raise RequestError(f"{name}: shape {shown_shape(shape)} has a negative dimension", name)
    if signature is None:
        if any(d > MAX_DIM for d in shape) or math.prod(shape) > MAX_DIM:
            raise RequestError(f"{name}: shape {shown_shape(shape)} is too large", name)
        return
    dims = signature.inputs.get(name)
    if dims is None:  # the only optional input: codes
        detail = f"{name}: model {signature.model!r} v{signature.version} has no style codes"
        raise RequestError(detail, name)
    if shape and shape[0] > signature.max_n:
        raise RequestError(f"{name}: at most MAX_N ({signature.max_n}) images per request", name)
    if name == contract.INPUT_LABEL:
        if len(shape) != 1:
            raise RequestError(f"{name}: must be {want} [N], got {want} {shown_shape(shape)}", name)
        return
    rows = shape[0] if n is None or not shape else n
    if shape != [rows, *dims]:
        detail = f"{name}: must be {want} {[rows, *dims]} for {rows} labels, got {want} {shown_shape(shape)}"
        raise RequestError(detail, name)


def _size_of(tensor: _TensorHeader) -> Any:
    return (tensor.parameters or {}).get("binary_data_size")


def _data(header: bytes, request: _RequestHeader) -> list[Any]:
    """Each input's ``data`` (None where absent), from a second parse of a header already checked."""
    # The same parser as the first pass (pydantic's), so both read duplicate keys and numbers alike.
    parsed = pydantic_core.from_json(header)
    inputs = parsed.get("inputs") if isinstance(parsed, dict) else None
    if not isinstance(inputs, list) or len(inputs) != len(request.inputs):
        raise RequestError("inputs: the inference request's inputs could not be read", "inputs")
    return [entry.get("data") if isinstance(entry, dict) else None for entry in inputs]


def _tensor(tensor: _TensorHeader, data: Any, binary: memoryview, offset: int) -> tuple[np.ndarray, int]:
    name = tensor.name
    want = _ALL_INPUTS[name]
    dtype = _NUMPY[want]
    count = math.prod(tensor.shape)
    size = _size_of(tensor)
    if size is not None:
        if data is not None:
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
    if data is None:
        raise RequestError(f"{name}: no data (give data, or binary_data_size and the bytes)", name)
    if not isinstance(data, list):
        raise RequestError(f"{name}: data must be a list", name)
    try:
        values = np.asarray(data)
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
