"""Prometheus metrics, one registry per app so that tests can build many apps in one process.

Under ``python -m service`` with several workers (``service.workers``) every process writes its samples to
PROMETHEUS_MULTIPROC_DIR and a scrape, answered by whichever worker takes it, sums them all: counters and
histograms add up, and each gauge says how its workers' values combine (``multiprocess_mode``).

That directory is the service's own (:func:`private_dir`): made fresh inside the one the operator gave, so
services sharing one never count, nor delete, each other's samples, nor anything else kept there.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

# The *_created series double the exposition size and no dashboard here reads them.
disable_created_metrics()

# Request latency spans a cached-size PNG (sub-millisecond) to a 100k-image dataset stream (tens of seconds).
_REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_INFERENCE_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "cgan_http_requests_total",
            "HTTP requests by route and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "cgan_http_request_duration_seconds",
            "Time from request start to the last body byte sent.",
            ["route", "method"],
            buckets=_REQUEST_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "cgan_http_requests_in_flight",
            "Requests being handled now.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.rejected = Counter(
            "cgan_http_requests_rejected_total",
            "Requests refused before any work: overload (429) or an oversized body (413).",
            ["reason"],
            registry=r,
        )
        self.inference_seconds = Histogram(
            "cgan_inference_duration_seconds",
            "onnxruntime run time per batch, noise generation included.",
            ["model", "version"],
            buckets=_INFERENCE_BUCKETS,
            registry=r,
        )
        self.images = Counter(
            "cgan_images_generated_total",
            "Images produced by the generator.",
            ["model", "version"],
            registry=r,
        )
        #: The Open Inference Protocol's statistics (service.dataplane.describe) read these three.
        self.model_requests = Histogram(
            "cgan_model_request_duration_seconds",
            "Requests that reached a model version (/generate, inference over HTTP and gRPC), by outcome "
            "(success, fail): from the data plane taking the request to its encoded answer.",
            ["model", "version", "outcome"],
            buckets=_REQUEST_BUCKETS,
            registry=r,
        )
        self.load_refusals = Counter(
            "cgan_model_load_refusals_total",
            "Model versions refused at load (corrupt, incomplete or off-contract).",
            ["model", "reason"],
            registry=r,
        )
        self.scan_skips = Counter(
            "cgan_model_scan_skips_total",
            "Entries of the model roots a scan skipped: a lookup that did not answer within "
            "MODEL_READ_TIMEOUT_SECONDS (timeout: once per stall), or a name beside the version "
            "directories that is not ASCII digits (version_name: once per entry).",
            ["reason"],
            registry=r,
        )
        self.model_info = Gauge(
            "cgan_model_info",
            "A model version loaded, pinnable by requests (value 1); the newest per model serves by default.",
            ["model", "version", "sha256"],
            registry=r,
            multiprocess_mode="livemax",
        )
        #: Set by the runtime (``Runtime.publish_ready``); with workers, 1 only when every worker is ready.
        self.ready = Gauge(
            "cgan_ready", "1 when /readyz answers 200.", registry=r, multiprocess_mode="livemin"
        )

    def model_served(self, name: str, version: int, sha256: str, served: bool) -> None:
        info = self.model_info.labels(name, str(version), sha256)
        if served:
            info.set(1)
        elif shared_dir():
            info.set(0)  # a series cannot leave the workers' shared files; 0 says "no longer served"
        else:
            self.model_info.remove(name, str(version), sha256)

    def collect(self) -> Iterator[Metric]:
        """Every family as a scrape sees it: this process's, or every worker's summed when they share a
        directory (what /metrics exposes; the protocol's statistics read it too)."""
        if not shared_dir():
            return self.registry.collect()
        return MultiProcessCollector(None).collect()

    def exposition(self) -> bytes:
        """The Prometheus text of this process, or of every worker when they share a directory."""
        if not shared_dir():
            return generate_latest(self.registry)
        every_worker = CollectorRegistry()
        MultiProcessCollector(every_worker)
        return generate_latest(every_worker)


def shared_dir() -> str | None:
    """The directory workers share their samples through; None for a lone process."""
    return os.environ.get(_ENV)


_ENV = "PROMETHEUS_MULTIPROC_DIR"


@contextlib.contextmanager
def private_dir(always: bool) -> Iterator[str | None]:
    """PROMETHEUS_MULTIPROC_DIR, while the service runs, as a directory of its own: made inside the one
    given (other services may be given it too), or in the temp dir when none was and ``always`` (a
    supervisor's workers need one; a lone process needs none). Set in the environment (the workers inherit
    it, and each process's metrics find it when they are built), then removed with the samples its processes
    wrote there, and the variable put back. Only ``*.db`` files are deleted, and only there: a file someone
    else put in it keeps the directory. :class:`OSError` when it cannot be made.

    Fresh each run, so no earlier run's samples are summed into this one's (prometheus_client's rule: an
    empty directory before the processes start) without wiping a directory that is not ours.
    """
    given = os.environ.get(_ENV)
    if given is None and not always:
        yield None
        return
    made = Path(tempfile.mkdtemp(prefix="cgan-metrics-", dir=given))
    os.environ[_ENV] = str(made)
    try:
        yield str(made)
    finally:
        if given is None:
            del os.environ[_ENV]
        else:
            os.environ[_ENV] = given
        for samples in made.glob("*.db"):
            samples.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            made.rmdir()
