"""Thin HTTP routers, one per resource: each turns a request into a data-plane call and its answer into a
response. No generating, limits or model lookup happens here (see :mod:`service.dataplane`)."""

from service.routes import dataset, docs, generate, health, metrics, models, oip, ui

#: Every router the app mounts, in order.
ROUTERS = [r.router for r in (generate, dataset, health, oip, models, metrics, docs, ui)]
