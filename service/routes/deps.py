"""Dependencies shared by the routers, as ``Annotated`` aliases; nothing else."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.runtime import Runtime


# `async def` on purpose: FastAPI runs a plain `def` dependency in a worker thread, a thread hop per request.
async def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
