"""Open Inference Protocol (KServe v2): health, server and model metadata, and inference (JSON or binary
tensors), for tooling that speaks it (``tritonclient``, KServe, Seldon, OpenVINO clients).

Inference is the data plane's: the wire format is :mod:`service.http.oip_codec`, the images come from
:func:`service.dataplane.tensors`, batched with /generate. Errors are the protocol's ``{"error": ...}``.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

import cgan_contract as contract
from service import dataplane
from service.dataplane import loaded_versions, served_model
from service.http import oip_codec
from service.http.errors import error_responses
from service.http.middleware import GuardedRoute
from service.http.oip_codec import InferenceRequest, InferenceResponse
from service.http.schemas import ModelName
from service.models import LoadedModel
from service.routes.deps import RuntimeDep
from service.runtime import Runtime

router = APIRouter(prefix="/v2", tags=["open inference protocol"], route_class=GuardedRoute)

NamePath = Annotated[ModelName, Path(description="Model name.")]
VersionPath = Annotated[int, Path(ge=1, description="Model version (one of the loaded ones).")]
PLATFORM = "onnxruntime_onnx"


class ServerMetadata(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"name": "cgan-synth", "version": "0.1.0", "extensions": oip_codec.EXTENSIONS}]
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
                    "platform": PLATFORM,
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


def _tensor(spec: contract.TensorSpec) -> TensorMetadata:
    return TensorMetadata(
        name=spec.name,
        datatype=oip_codec.DATATYPES[spec.dtype],
        shape=[-1 if d is None else d for d in spec.shape],
    )


def _metadata(runtime: Runtime, model: LoadedModel) -> ModelMetadata:
    return ModelMetadata(
        name=model.name,
        versions=[str(v) for v in loaded_versions(runtime, model.name)],
        platform=PLATFORM,
        inputs=[_tensor(t) for t in model.card.inputs],
        outputs=[_tensor(t) for t in model.card.outputs],
    )


_ERRORS = partial(error_responses, oip=True)


@router.get("", response_model=ServerMetadata)
async def server_metadata(request: Request) -> ServerMetadata:
    """Server metadata: name, version and the protocol extensions supported."""
    return ServerMetadata(name="cgan-synth", version=request.app.version, extensions=oip_codec.EXTENSIONS)


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


@router.get("/models/{name}", response_model=ModelMetadata, responses=_ERRORS(404, 422))
async def model_metadata(name: NamePath, runtime: RuntimeDep) -> ModelMetadata:
    """Model metadata: loaded versions, platform and the newest version's tensor signature."""
    return _metadata(runtime, served_model(runtime, name))


@router.get("/models/{name}/versions/{version}", response_model=ModelMetadata, responses=_ERRORS(404, 422))
async def model_version_metadata(name: NamePath, version: VersionPath, runtime: RuntimeDep) -> ModelMetadata:
    """Model metadata with this version's tensor signature; 404 when it is not loaded."""
    return _metadata(runtime, served_model(runtime, name, version))


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
    decoded = oip_codec.decode(
        await request.body(),
        request.headers.get(oip_codec.HEADER_LENGTH),
        request.headers.get("content-encoding"),
    )
    result = await dataplane.tensors(request.app.state.runtime, decoded.to_request(name, version))
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
