"""Open Inference Protocol (KServe v2) health and model metadata, for tooling that speaks it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

import cgan_contract as contract
from service.dataplane import served_model
from service.http.errors import error_responses
from service.http.middleware import GuardedRoute
from service.http.schemas import ModelName
from service.routes.deps import RuntimeDep

router = APIRouter(prefix="/v2", tags=["open inference protocol"], route_class=GuardedRoute)

_DATATYPES = {"float32": "FP32", "int64": "INT64", "uint8": "UINT8"}

NamePath = Annotated[ModelName, Path(description="Model name.")]


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
                    "versions": ["3"],
                    "platform": "onnxruntime",
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
        name=spec.name, datatype=_DATATYPES[spec.dtype], shape=[-1 if d is None else d for d in spec.shape]
    )


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


@router.get("/models/{name}", response_model=ModelMetadata, responses=error_responses(404, 422))
async def model_metadata(name: NamePath, runtime: RuntimeDep) -> ModelMetadata:
    """Model metadata: served version, platform and tensor signature."""
    model = served_model(runtime, name)
    return ModelMetadata(
        name=model.name,
        versions=[str(model.version)],
        platform="onnxruntime",
        inputs=[_tensor(t) for t in model.card.inputs],
        outputs=[_tensor(t) for t in model.card.outputs],
    )


@router.get("/models/{name}/ready", response_model=ModelReady, responses=error_responses(404, 422))
async def model_ready(name: NamePath, runtime: RuntimeDep) -> ModelReady:
    """Model ready: loaded and warmed."""
    return ModelReady(name=served_model(runtime, name).name, ready=True)
