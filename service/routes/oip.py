"""Open Inference Protocol (KServe v2): health, server and model metadata, inference (JSON or binary
tensors) and the extensions clients call (model configuration, statistics, the repository index), for
tooling that speaks it (``tritonclient``, KServe, Seldon, OpenVINO clients). The same protocol over gRPC is
:mod:`service.grpc`; both answer from the same data plane.

Inference is the data plane's: the wire format is :mod:`service.http.oip_codec`, the images come from
:func:`service.dataplane.tensors`, batched with /generate. Metadata, configuration, statistics and the index
are :mod:`service.dataplane.describe`'s, rendered here in the JSON Triton's HTTP endpoints answer. Errors
are the protocol's ``{"error": ...}``.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from service import dataplane, oip
from service.dataplane import describe, served_model
from service.dataplane.resolve import resolve_model
from service.errors import RequestError
from service.http import oip_codec
from service.http.errors import error_responses
from service.http.middleware import GuardedRoute
from service.http.oip_codec import InferenceRequest, InferenceResponse
from service.http.schemas import ModelName, version_digits
from service.routes.deps import RuntimeDep

router = APIRouter(prefix="/v2", tags=["open inference protocol"], route_class=GuardedRoute)

NamePath = Annotated[ModelName, Path(description="Model name.")]
VersionPath = Annotated[
    int, BeforeValidator(version_digits), Path(ge=1, description="Model version (one of the loaded ones).")
]


class ServerMetadata(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"name": "cgan-synth", "version": "0.1.0", "extensions": oip.EXTENSIONS}]
        }
    )

    name: str
    version: str
    extensions: list[str]


class Live(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"live": True}]})

    live: bool


class Ready(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"ready": True}]})

    ready: bool


class ModelReady(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "mnist-cgan", "ready": True}]})

    name: str
    ready: bool


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "mnist-cgan",
                    "versions": ["3", "2"],
                    "platform": oip.PLATFORM,
                    "inputs": [
                        {"name": "z", "datatype": "FP32", "shape": [-1, 100]},
                        {"name": "label", "datatype": "INT64", "shape": [-1]},
                    ],
                    "outputs": [{"name": "image", "datatype": "UINT8", "shape": [-1, 28, 28, 1]}],
                }
            ]
        }
    )

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


def _metadata(found: describe.ModelMetadata) -> ModelMetadata:
    return ModelMetadata(
        name=found.name,
        versions=found.versions,
        platform=found.platform,
        inputs=[TensorMetadata(name=x.name, datatype=x.datatype, shape=x.shape) for x in found.inputs],
        outputs=[TensorMetadata(name=x.name, datatype=x.datatype, shape=x.shape) for x in found.outputs],
    )


# --- the extensions: model configuration, statistics, the repository index (Triton's JSON) ----------------


class Reshape(BaseModel):
    shape: list[int]


class ConfigOutput(BaseModel):
    name: str
    data_type: str = Field(examples=["TYPE_FP32"])
    dims: list[int]
    reshape: Reshape | None = None


class ConfigInput(ConfigOutput):
    #: The request may leave it out: ``z`` (the seed parameter stands in), ``codes`` (the seed's codes).
    optional: bool = False


class Specific(BaseModel):
    versions: list[int]


class VersionPolicy(BaseModel):
    specific: Specific


class ModelConfig(BaseModel):
    """A model version's configuration, as Triton's ``.../config`` writes it (its ``ModelConfig``)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "mnist-cgan",
                    "platform": oip.PLATFORM,
                    "backend": "onnxruntime",
                    "version_policy": {"specific": {"versions": [3, 2]}},
                    "max_batch_size": 1024,
                    "input": [
                        {"name": "z", "data_type": "TYPE_FP32", "dims": [100], "optional": True},
                        {"name": "label", "data_type": "TYPE_INT64", "dims": [1], "reshape": {"shape": []}},
                    ],
                    "output": [{"name": "image", "data_type": "TYPE_UINT8", "dims": [28, 28, 1]}],
                }
            ]
        }
    )

    name: str
    platform: str
    backend: str
    version_policy: VersionPolicy
    max_batch_size: int
    input: list[ConfigInput]
    output: list[ConfigOutput]


def _config_tensor(tensor: describe.ConfigTensor, kind: type[ConfigOutput]) -> ConfigOutput:
    reshape = None if tensor.reshape is None else Reshape(shape=tensor.reshape)
    fields = {"optional": tensor.optional} if kind is ConfigInput else {}
    return kind(
        name=tensor.name, data_type=f"TYPE_{tensor.datatype}", dims=tensor.dims, reshape=reshape, **fields
    )


def _config(found: describe.ModelConfig) -> ModelConfig:
    return ModelConfig(
        name=found.name,
        platform=found.platform,
        backend=found.backend,
        version_policy=VersionPolicy(specific=Specific(versions=found.versions)),
        max_batch_size=found.max_batch_size,
        input=[_config_tensor(t, ConfigInput) for t in found.inputs],  # type: ignore[misc]
        output=[_config_tensor(t, ConfigOutput) for t in found.outputs],
    )


class Duration(BaseModel):
    count: int
    ns: int


class InferStats(BaseModel):
    success: Duration
    fail: Duration
    queue: Duration
    compute_input: Duration
    compute_infer: Duration
    compute_output: Duration
    cache_hit: Duration
    cache_miss: Duration


class ModelStats(BaseModel):
    name: str
    version: str
    last_inference: int
    inference_count: int
    execution_count: int
    inference_stats: InferStats
    batch_stats: list[dict[str, Any]]
    memory_usage: list[dict[str, Any]]


class Statistics(BaseModel):
    """Counts and cumulative times (ns) per loaded model version since the service started, summed over
    the workers, from the counters ``/metrics`` exposes (``success``/``fail``: requests answered or failed
    by the version; ``inference_count``: images; ``execution_count``/``compute_infer``: model runs).
    ``queue``, ``compute_input``, ``compute_output`` and ``last_inference`` are not measured (0)."""

    model_stats: list[ModelStats]


_ZERO = Duration(count=0, ns=0)


def _statistics(found: list[describe.ModelStats]) -> Statistics:
    def duration(d: describe.Duration) -> Duration:
        return Duration(count=d.count, ns=d.ns)

    return Statistics(
        model_stats=[
            ModelStats(
                name=s.name,
                version=s.version,
                last_inference=0,
                inference_count=s.inference_count,
                execution_count=s.execution_count,
                inference_stats=InferStats(
                    success=duration(s.success),
                    fail=duration(s.fail),
                    queue=_ZERO,
                    compute_input=_ZERO,
                    compute_infer=duration(s.compute_infer),
                    compute_output=_ZERO,
                    cache_hit=_ZERO,
                    cache_miss=_ZERO,
                ),
                batch_stats=[],
                memory_usage=[],
            )
            for s in found
        ]
    )


class IndexRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    ready: bool = Field(False, description="Only the versions that are ready.")


class IndexEntry(BaseModel):
    name: str
    version: str
    state: str = Field(examples=["READY", "UNAVAILABLE"])
    reason: str | None = Field(None, description="Why a version is unavailable (the loader's reason code).")


_ERRORS = partial(error_responses, oip=True)


@router.get("", response_model=ServerMetadata)
async def server_metadata() -> ServerMetadata:
    """Server metadata: name, version and the protocol extensions supported."""
    server = describe.server()
    return ServerMetadata(name=server.name, version=server.version, extensions=server.extensions)


@router.get("/health/live", response_model=Live)
async def live() -> Live:
    """Live: the process answers HTTP."""
    return Live(live=True)


@router.get(
    "/health/ready", response_model=Ready, responses={503: {"model": Ready, "description": "Not ready."}}
)
async def ready(runtime: RuntimeDep) -> JSONResponse:
    """Ready, as /readyz."""
    is_ready = runtime.readiness()[0]
    return JSONResponse({"ready": is_ready}, status_code=200 if is_ready else 503)


@router.get("/models/stats", response_model=Statistics)
async def statistics(runtime: RuntimeDep) -> Statistics:
    """Statistics of every loaded model version. (Before `/models/{name}`, which would take `stats`.)"""
    return _statistics(describe.statistics(runtime))


@router.get("/models/{name}", response_model=ModelMetadata, responses=_ERRORS(404, 422))
async def model_metadata(name: NamePath, runtime: RuntimeDep) -> ModelMetadata:
    """Model metadata: loaded versions, platform and the newest version's tensor signature."""
    return _metadata(describe.model_metadata(runtime, name))


@router.get("/models/{name}/versions/{version}", response_model=ModelMetadata, responses=_ERRORS(404, 422))
async def model_version_metadata(name: NamePath, version: VersionPath, runtime: RuntimeDep) -> ModelMetadata:
    """Model metadata with this version's tensor signature; 404 when it is not loaded."""
    return _metadata(describe.model_metadata(runtime, name, version))


@router.get("/models/{name}/ready", response_model=ModelReady, responses=_ERRORS(404, 422))
async def model_ready(name: NamePath, runtime: RuntimeDep) -> ModelReady:
    """Model ready: loaded and warmed."""
    return ModelReady(name=served_model(runtime, name).name, ready=True)


@router.get("/models/{name}/versions/{version}/ready", response_model=ModelReady, responses=_ERRORS(404, 422))
async def model_version_ready(name: NamePath, version: VersionPath, runtime: RuntimeDep) -> ModelReady:
    """This version loaded and warmed; 404 when it is not loaded."""
    return ModelReady(name=served_model(runtime, name, version).name, ready=True)


def _inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema with its ``$defs`` written in place: these schemas are not registered under
    ``components/schemas``, so a ``$ref`` there would dangle and no client could read the body's shape."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(defs[node["$ref"].rsplit("/", 1)[1]])
            return {key: inline(value) for key, value in node.items()}
        return [inline(value) for value in node] if isinstance(node, list) else node

    return inline(schema)


_INFER_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        # The binary form is this JSON followed by raw bytes, which OpenAPI cannot describe as one schema.
        "description": "The JSON form; or (binary tensor extension) this JSON, "
        "`Inference-Header-Content-Length` bytes long, followed by the raw bytes of each input that gives "
        "`parameters.binary_data_size`.",
        "content": {
            "application/json": {"schema": _inline_schema(InferenceRequest)},
        },
    }
}
_INFER_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The images: JSON, or a JSON header of `Inference-Header-Content-Length` bytes "
        "followed by the image bytes when binary output was asked for.",
        "content": {
            "application/json": {"schema": _inline_schema(InferenceResponse)},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    },
    **_ERRORS(400, 401, 404, 413, 415, 422, 429, 503),
}


async def _infer(request: Request, name: str, version: int | None) -> Response:
    runtime = request.app.state.runtime
    # The model first: the body is checked against what it takes before its tensors' data is read.
    model = resolve_model(runtime, name, version)
    decoded = oip_codec.decode(
        await request.body(),
        request.headers.get(oip_codec.HEADER_LENGTH),
        request.headers.get("content-encoding"),
        oip_codec.Signature.of(model, runtime.settings.max_n),
    )
    result = await dataplane.tensors(runtime, decoded.to_request(name, version))
    return Response(
        result.body, media_type=result.media_type, headers=decoded.headers(result.model, result.body)
    )


@router.post(
    "/models/{name}/infer",
    response_class=Response,
    responses=_INFER_RESPONSES,
    openapi_extra=_INFER_DOC,
    summary="Inference (newest loaded version)",
)
async def infer(name: NamePath, request: Request) -> Response:
    """`label` INT64 [N] and `z` FP32 [N, latent_dim] or parameter `seed` (and, for a model with style
    codes, `codes` FP32 [N, k]; from the seed when absent) -> `image` UINT8 [N, H, W, C]."""
    return await _infer(request, name, None)


@router.post(
    "/models/{name}/versions/{version}/infer",
    response_class=Response,
    responses=_INFER_RESPONSES,
    openapi_extra=_INFER_DOC,
    summary="Inference (a pinned version)",
)
async def infer_version(name: NamePath, version: VersionPath, request: Request) -> Response:
    """As `/v2/models/{name}/infer`, on this loaded version; 404 (listing the loaded ones) otherwise."""
    return await _infer(request, name, version)


@router.get(
    "/models/{name}/config",
    response_model=ModelConfig,
    response_model_exclude_none=True,
    responses=_ERRORS(404, 422),
)
async def model_config(name: NamePath, runtime: RuntimeDep) -> ModelConfig:
    """Model configuration (newest loaded version): inputs, outputs, max batch size, platform, versions."""
    return _config(describe.model_config(runtime, name))


@router.get(
    "/models/{name}/versions/{version}/config",
    response_model=ModelConfig,
    response_model_exclude_none=True,
    responses=_ERRORS(404, 422),
)
async def model_version_config(name: NamePath, version: VersionPath, runtime: RuntimeDep) -> ModelConfig:
    """This loaded version's configuration; 404 when it is not loaded."""
    return _config(describe.model_config(runtime, name, version))


@router.get("/models/{name}/stats", response_model=Statistics, responses=_ERRORS(404, 422))
async def model_statistics(name: NamePath, runtime: RuntimeDep) -> Statistics:
    """Statistics of every loaded version of this model."""
    return _statistics(describe.statistics(runtime, name))


@router.get("/models/{name}/versions/{version}/stats", response_model=Statistics, responses=_ERRORS(404, 422))
async def model_version_statistics(name: NamePath, version: VersionPath, runtime: RuntimeDep) -> Statistics:
    """Statistics of this loaded version; 404 when it is not loaded."""
    return _statistics(describe.statistics(runtime, name, version))


@router.post(
    "/repository/index",
    response_model=list[IndexEntry],
    response_model_exclude_none=True,
    responses=_ERRORS(401, 413, 422, 429, 503),
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": IndexRequest.model_json_schema()}},
        }
    },
)
async def repository_index(request: Request, runtime: RuntimeDep) -> list[IndexEntry]:
    """Every model version the service knows: loaded (READY) or refused at load (UNAVAILABLE, with the
    reason). The body may be empty (what tritonclient sends) or `{"ready": true}` for the ready ones only."""
    body = await request.body()
    try:
        asked = IndexRequest.model_validate_json(body) if body.strip() else IndexRequest()
    except ValidationError as e:
        first = e.errors()[0]
        if first.get("type") == "json_invalid":
            raise RequestError("body: the index request is not valid JSON", "body") from None
        field = ".".join(str(part) for part in first.get("loc", ())) or "body"
        raise RequestError(f"{field}: {first.get('msg', 'invalid')}", field) from None
    return [
        IndexEntry(name=e.name, version=e.version, state=e.state, reason=e.reason or None)
        for e in describe.repository_index(runtime, ready_only=asked.ready)
    ]
