"""The data plane: what the service does for a request, whichever protocol carried it (KServe's shape).

Every protocol's schema builds a domain request with its ``to_request()`` (:mod:`service.requests`: an
:class:`ImageRequest`, a :class:`TensorRequest` from the Open Inference Protocol, an :class:`ArchiveRequest`)
and the route calls :func:`images`, :func:`tensors` or :func:`archive`; the benchmarks and the tests call
the same functions (:func:`images_now` and :func:`tensors_now` are :func:`images` and :func:`tensors`
without the batcher). There is one way from a
request to bytes::

    ImageRequest  -> images.prepare()          (limits, model, version, label, seeds, codes)  -> Job
    TensorRequest -> tensors.prepare_tensors() (limits, model, version, labels, z | seeds)    -> Job
    Job -> jobs.run_jobs() (batched by the Batcher, or alone: images_now, tensors_now)
        -> the format's encoder -> bytes

    ArchiveRequest -> datasets.archive() (limits, model, labels, seed, codes, order, part) -> DatasetPlan
                   -> the format's writer, batch by batch as the archive streams

A :class:`Job` is one small type for every request: labels, seeds or the caller's noise ``z``, style codes
(the caller's, else each image's seed's: the contract's rule), truncation and min_confidence. A traversal
is a job whose images repeat their row's seed. Every image, here or in an archive, comes from
:meth:`service.models.LoadedModel.generate`; ``min_confidence`` makes a job (or an archive's plan) pick its
seeds with :func:`service.filtering.select`. Formats are looked up in :mod:`service.formats`. Refusals are
:class:`~service.errors.RequestError` s that name the field at fault; the HTTP layer only maps them to
status codes.

Modules: :mod:`.resolve` (model, version, label, seed, limits, controls), :mod:`.jobs`, :mod:`.images`,
:mod:`.tensors`, :mod:`.datasets`.
"""

from service.dataplane.datasets import Archive, archive
from service.dataplane.images import Images, images, images_now, prepare
from service.dataplane.jobs import Job, run_jobs
from service.dataplane.resolve import loaded_versions, served_model
from service.dataplane.tensors import Tensors, prepare_tensors, tensors, tensors_now
from service.errors import RequestError
from service.requests import ArchiveRequest, ImageRequest, TensorRequest

__all__ = [
    "Archive",
    "ArchiveRequest",
    "ImageRequest",
    "Images",
    "Job",
    "RequestError",
    "TensorRequest",
    "Tensors",
    "archive",
    "images",
    "images_now",
    "loaded_versions",
    "prepare",
    "prepare_tensors",
    "run_jobs",
    "served_model",
    "tensors",
    "tensors_now",
]
