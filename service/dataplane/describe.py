"""What the service says about itself and its models, whichever protocol asks (the Open Inference Protocol
over HTTP, :mod:`service.routes.oip`, and over gRPC, :mod:`service.grpc`): server and model metadata, a
model's configuration, its statistics and the repository index. Plain values; each protocol renders them.

Statistics come from the Prometheus families ``/metrics`` exposes, read through the same collector (summed
over every worker when WORKERS > 1), so the protocol's counts and the scrape's can never disagree:

* ``success`` / ``fail``: ``cgan_model_request_duration_seconds{outcome}`` count and sum: requests that
  reached the model version (``/generate``, inference over HTTP and gRPC) and were answered, or failed
  there (a run or an encoder that raised, a filtered request whose candidates ran out), with their time in
  the data plane. Requests refused before a version was chosen (a bad label, an unknown model) are not
  a version's; they are counted by route in ``cgan_http_requests_total``.
* ``inference_count``: ``cgan_images_generated_total`` (images; the protocol counts batch items).
* ``execution_count`` and ``compute_infer``: ``cgan_inference_duration_seconds`` count and sum (model runs,
  which the batcher shares between requests, and their time, noise generation included).
* Not measured, so zero: ``queue``, ``compute_input``, ``compute_output``, ``last_inference``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cgan_contract as contract
from service import __version__, oip
from service.dataplane.resolve import loaded_versions, served_model

if TYPE_CHECKING:
    from service.runtime import Runtime

#: The model state names of the protocol's repository index (Triton's).
READY, UNAVAILABLE = "READY", "UNAVAILABLE"


@dataclass(frozen=True)
class Server:
    name: str
    version: str
    extensions: list[str]


@dataclass(frozen=True)
class Tensor:
    """A tensor of the model's signature: its protocol datatype (``FP32``) and shape (-1: the batch)."""

    name: str
    datatype: str
    shape: list[int]


@dataclass(frozen=True)
class ModelMetadata:
    name: str
    #: The loaded versions, newest first.
    versions: list[str]
    platform: str
    inputs: list[Tensor]
    outputs: list[Tensor]


@dataclass(frozen=True)
class ConfigTensor:
    """A tensor in a model configuration: its dims without the batch dimension (a tensor that is only the
    batch, ``label`` [N], is dims [1] reshaped to [], as Triton writes it), and whether a request may
    leave it out (``z`` for the seed parameter, ``codes`` for the seed's codes)."""

    name: str
    datatype: str
    dims: list[int]
    reshape: list[int] | None = None
    optional: bool = False


@dataclass(frozen=True)
class ModelConfig:
    name: str
    platform: str
    backend: str
    #: MAX_N: the images one request may ask for; requests arriving together share a run (the batcher).
    max_batch_size: int
    #: The loaded versions, newest first (the protocol's ``version_policy: specific``).
    versions: list[int]
    inputs: list[ConfigTensor]
    outputs: list[ConfigTensor]


@dataclass(frozen=True)
class Duration:
    count: int = 0
    ns: int = 0


@dataclass(frozen=True)
class ModelStats:
    name: str
    version: str
    inference_count: int
    execution_count: int
    success: Duration
    fail: Duration
    compute_infer: Duration


@dataclass(frozen=True)
class IndexEntry:
    name: str
    version: str
    state: str
    #: Why a version is not ready: the loader's reason code (``corrupt``, ``sha256``, ...).
    reason: str = ""


def server() -> Server:
    return Server(oip.SERVER_NAME, __version__, list(oip.EXTENSIONS))


def _tensor(spec: contract.TensorSpec) -> Tensor:
    return Tensor(spec.name, oip.DATATYPES[spec.dtype], [-1 if d is None else d for d in spec.shape])


def model_metadata(runtime: Runtime, name: str, version: int | None = None) -> ModelMetadata:
    """The loaded versions and the signature of ``version`` (the newest when None); 404 when not loaded."""
    model = served_model(runtime, name, version)
    return ModelMetadata(
        name=model.name,
        versions=[str(v) for v in loaded_versions(runtime, model.name)],
        platform=oip.PLATFORM,
        inputs=[_tensor(t) for t in model.card.inputs],
        outputs=[_tensor(t) for t in model.card.outputs],
    )


def _config_tensor(spec: contract.TensorSpec, optional: bool = False) -> ConfigTensor:
    dims = [-1 if d is None else d for d in spec.shape[1:]]  # the first dimension is the batch
    datatype = oip.DATATYPES[spec.dtype]
    if not dims:
        return ConfigTensor(spec.name, datatype, [1], [], optional)
    return ConfigTensor(spec.name, datatype, dims, None, optional)


def model_config(runtime: Runtime, name: str, version: int | None = None) -> ModelConfig:
    """The configuration of ``version`` (the newest when None); 404 when not loaded."""
    model = served_model(runtime, name, version)
    return ModelConfig(
        name=model.name,
        platform=oip.PLATFORM,
        backend="onnxruntime",
        max_batch_size=runtime.settings.max_n,
        versions=loaded_versions(runtime, model.name),
        inputs=[_config_tensor(t, optional=t.name != contract.INPUT_LABEL) for t in model.card.inputs],
        outputs=[_config_tensor(t) for t in model.card.outputs],
    )


def statistics(runtime: Runtime, name: str | None = None, version: int | None = None) -> list[ModelStats]:
    """Per loaded model version (all of them; ``name``'s; or that one version, 404 when not loaded), its
    counts and times since the service started, summed over the workers (see the module docstring)."""
    if name is None:
        wanted = [(n, v) for n in sorted(runtime.registry.loaded) for v in loaded_versions(runtime, n)]
    elif version is None:
        served_model(runtime, name)
        wanted = [(name, v) for v in loaded_versions(runtime, name)]
    else:
        served_model(runtime, name, version)
        wanted = [(name, version)]
    totals = _totals(runtime.metrics.collect())

    def of(sample: str, n: str, v: int, outcome: str | None = None) -> float:
        return totals.get((sample, n, str(v), outcome), 0.0)

    def duration(family: str, n: str, v: int, outcome: str | None = None) -> Duration:
        return Duration(
            round(of(f"{family}_count", n, v, outcome)), round(of(f"{family}_sum", n, v, outcome) * 1e9)
        )

    requests, runs = "cgan_model_request_duration_seconds", "cgan_inference_duration_seconds"
    return [
        ModelStats(
            name=n,
            version=str(v),
            inference_count=round(of("cgan_images_generated_total", n, v)),
            execution_count=round(of(f"{runs}_count", n, v)),
            success=duration(requests, n, v, "success"),
            fail=duration(requests, n, v, "fail"),
            compute_infer=duration(runs, n, v),
        )
        for n, v in wanted
    ]


_READ = {
    "cgan_model_request_duration_seconds_count",
    "cgan_model_request_duration_seconds_sum",
    "cgan_inference_duration_seconds_count",
    "cgan_inference_duration_seconds_sum",
    "cgan_images_generated_total",
}


def _totals(families: Iterable) -> dict[tuple[str, str, str, str | None], float]:
    """``(sample name, model, version, outcome)`` -> value, summed (workers' files hold one series each)."""
    totals: dict[tuple[str, str, str, str | None], float] = defaultdict(float)
    for family in families:
        for sample in family.samples:
            if sample.name in _READ:
                labels = sample.labels
                key = (sample.name, labels.get("model", ""), labels.get("version", ""), labels.get("outcome"))
                totals[key] += sample.value
    return totals


def repository_index(runtime: Runtime, ready_only: bool = False) -> list[IndexEntry]:
    """Every model version the service knows of: the loaded ones (READY) and the refused ones
    (UNAVAILABLE, with the loader's reason), by name then newest version first. Versions older than the
    newest MODEL_VERSIONS of a name are neither loaded nor listed."""
    entries = {
        (name, str(version)): IndexEntry(name, str(version), READY)
        for name, versions in runtime.registry.loaded.items()
        for version in versions
    }
    if not ready_only:
        for key, reason in runtime.registry.refusals.items():
            *_, name, version = key.split("/")  # "<name>/<version>", "bundled/<name>/<version>"
            entries.setdefault((name, version), IndexEntry(name, version, UNAVAILABLE, reason))

    def order(entry: IndexEntry) -> tuple[str, int, str]:
        number = int(entry.version) if entry.version.isdecimal() else -1
        return entry.name, -number, entry.version

    return sorted(entries.values(), key=order)
