"""Service settings, read once from the environment (variable names are the field names, upper-cased)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cgan_contract import valid_model_name

#: Request fields capped by a setting (field -> setting). The data plane enforces them; service.http.openapi
#: writes the same caps into the schema, so the documented and the enforced limit cannot drift apart.
LIMITS = {"n": "max_n", "nrow": "max_n", "per_label": "max_per_label", "steps": "max_n"}

#: The trained default models shipped inside the package (package data), served when MODELS_DIR has none.
BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"
#: The bundled model that is the default while only bundled models serve (the digits one, whatever else is
#: bundled later); see ``ModelRegistry.default_name``.
BUNDLED_DEFAULT_MODEL = "mnist-5k-cgan-conv"


def available_cores(cgroup_cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """Cores this process may use: its affinity mask (a container's cpuset), capped by a cgroup v2 CPU quota
    (``docker run --cpus``), which the affinity mask does not show."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity API
        cores = os.cpu_count() or 1
    try:
        quota, period = cgroup_cpu_max.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass  # no cgroup v2 quota to honour
    return max(1, cores)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", frozen=True)

    models_dir: Path = Path("models")
    #: Also serve the bundled models; a version in MODELS_DIR supersedes its bundled twin (see the registry).
    bundled_models: bool = True
    bundled_models_dir: Path = BUNDLED_DIR
    #: Model used when a request names none. Unset: the one model name MODELS_DIR serves; with none there,
    #: the bundled default (BUNDLED_DEFAULT_MODEL); with several there, none (requests name one). Derived
    #: from the served set alone, so every worker agrees (``ModelRegistry.default_name``).
    default_model: str | None = None
    #: Which loaded version of a model serves requests that name none (service.models.precision): auto (its
    #: gated INT8 twin where one is loaded, else the newest FP32 version), fp32, or int8.
    precision: Literal["auto", "fp32", "int8"] = "auto"
    #: The path prefix a proxy strips (``/api``): routes and the guard match the path below it.
    root_path: str = ""

    max_n: int = Field(1024, ge=1, le=65536)
    max_per_label: int = Field(10_000, ge=1)
    max_dataset_images: int = Field(100_000, ge=1)
    max_body_bytes: int = Field(16_384, ge=256)
    #: Open Inference Protocol inference bodies carry the noise tensor: 1024 x 100 floats is ~2 MB as JSON.
    max_infer_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    #: gRPC carries tensors as binary (raw or typed contents): MAX_N 1024 images' noise at latent 100 is
    #: 0.4 MB. grpc holds every message it receives before the service can count it against
    #: BODY_BUDGET_BYTES, so this times the RPCs a worker admits is the pod's gRPC memory term (SECURITY.md).
    grpc_max_message_bytes: int = Field(1024 * 1024, ge=1024)
    #: Requests generating at once; more wait in a queue of MAX_QUEUE, beyond that 429. Admitted /generate
    #: requests are what one batch can hold: 8 a core lets the cheap dense model's batches amortise their
    #: fixed costs (0.66x -> ~1.0x the raw model at 32 connections) and changes nothing for the conv default
    #: (BENCHMARKS.md, "Both cores"); runs of RUN_MAX_IMAGES keep their memory small.
    max_concurrency: int = Field(default_factory=lambda: 8 * available_cores(), ge=1)
    max_queue: int = Field(64, ge=0)
    retry_after_seconds: int = Field(1, ge=1)
    #: A request queued longer than this for a slot gets 503 with Retry-After (like Triton's queue policy);
    #: 0 means no limit.
    queue_timeout_seconds: float = Field(10.0, ge=0)

    #: Connection limits of ``python -m service`` (service.http.connections): request line plus headers at
    #: most this many bytes (431 beyond), arriving within HEADER_TIMEOUT_SECONDS of the connection opening or
    #: going idle (408/close), the body within BODY_TIMEOUT_SECONDS after the headers (408), and a response
    #: write the client does not read for SEND_TIMEOUT_SECONDS closes the connection (frees its slot).
    max_header_bytes: int = Field(16_384, ge=1024)
    header_timeout_seconds: float = Field(10.0, gt=0)
    body_timeout_seconds: float = Field(10.0, gt=0)
    send_timeout_seconds: float = Field(30.0, gt=0)

    #: model.onnx / model.json larger than this are refused (on their size, unread); reads, and the scan's
    #: lookups of the model directories, slower than the timeout are abandoned (refused or skipped as
    #: "timeout"; one hung read or stat never holds up other models, scans or shutdown).
    max_model_bytes: int = Field(512 * 1024 * 1024, ge=1024)
    model_read_timeout_seconds: float = Field(30.0, gt=0)

    #: Processes of ``python -m service`` sharing its port (service.workers); 0 means one per available
    #: core. Each loads every model and runs its own lanes; MAX_CONCURRENCY and MAX_QUEUE are the
    #: service's and are shared out among them. One process cannot keep two cores busy when a request's
    #: HTTP and encoding (Python, under one GIL) cost more than its model run (BENCHMARKS.md).
    workers: int = Field(0, ge=0)
    #: With several workers, each listens on its own socket bound with SO_REUSEPORT, so the kernel spreads
    #: new connections over them evenly; 0: one socket shared by all, where whichever worker wakes first
    #: takes the connection (keep-alive clients then load one worker: BENCHMARKS.md, "Both cores").
    reuse_port: bool = True
    #: Cores this process plans its lanes and their threads for; 0 means every available core. Set for
    #: each worker to its share; an operator sets WORKERS instead.
    worker_cores: int = Field(0, ge=0)
    #: Batches of /generate requests run at once, each on its own thread (see service.batching);
    #: 0 means one per core of this process (``worker_cores``).
    model_lanes: int = Field(0, ge=0)
    #: onnxruntime intra-op threads per session; 0 means one per available core for a lone run (/dataset
    #: streams) and the cores shared out over the lanes for /generate (one each with the default lanes).
    ort_intra_op_threads: int = Field(0, ge=0)
    #: Spinning ORT threads burn the cores the event loop and PNG encoder need on small batches.
    ort_allow_spinning: bool = False
    dataset_batch: int = Field(1024, ge=1, le=65536)
    #: Images per onnxruntime run at most: larger batches (merged /generate requests, /dataset chunks) run
    #: in pieces of this size. Past ~64 images the conv generator's activations outgrow the core's caches
    #: and every image costs up to a third more (BENCHMARKS.md, "Both cores"); pieces keep the
    #: fewer hops and noise calls of batching without that. 0: one run per batch.
    run_max_images: int = Field(64, ge=0)
    #: /generate requests arriving together share one model run, up to this many images in all.
    batch_max_images: int = Field(1024, ge=1)
    png_compress_level: int = Field(1, ge=0, le=9)

    #: The Open Inference Protocol over gRPC listens on this port (on the HTTP --host, in every worker);
    #: 0 turns it off.
    grpc_port: int = Field(8001, ge=0, le=65535)

    api_token: SecretStr | None = None
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    #: Versions of each model kept loaded (the newest K), so requests can pin an older one.
    model_versions: int = Field(2, ge=1, le=64)
    #: Seconds between MODELS_DIR scans; 0 turns hot reload off.
    reload_interval: float = Field(2.0, ge=0)
    #: After SIGTERM, seconds of answering /readyz 503 while still serving, so load balancers stop routing.
    shutdown_drain_seconds: float = Field(2.0, ge=0)
    #: Then, at most this many seconds for in-flight requests before they are cancelled.
    shutdown_grace_seconds: float = Field(8.0, ge=0)
    #: Bytes of request bodies one process holds at once (each worker its own), reserved as a body is
    #: declared or arrives, before admission, and kept until its request ends; beyond it 429 with
    #: Retry-After. 16 MiB a worker keeps the pod's HTTP worst case ~400 MiB under its 1 GiB limit
    #: (SECURITY.md, "Memory model", where the sum is) and holds eight 2 MB JSON inference bodies (1024
    #: images' noise: MAX_CONCURRENCY's share of a 2-core pod) at once.
    body_budget_bytes: int = Field(16 * 1024 * 1024, ge=2048)

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("root_path")
    @classmethod
    def _prefix(cls, value: str) -> str:
        value = value.rstrip("/")
        if value and (not value.startswith("/") or "//" in value):
            raise ValueError(f"ROOT_PATH {value!r} must be empty or a path like /api")
        return value

    @field_validator("default_model")
    @classmethod
    def _model_name(cls, value: str | None) -> str | None:
        if value is not None and not valid_model_name(value):
            raise ValueError(f"DEFAULT_MODEL {value!r} is not a valid model name")
        return value

    @field_validator("api_token")
    @classmethod
    def _blank_token_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        # An empty API_TOKEN= in a compose file means "no auth", not "the empty string is the token".
        if value is not None and not value.get_secret_value().strip():
            return None
        return value

    @model_validator(mode="after")
    def _budget_holds_a_body(self) -> Settings:
        # A gzip body is held with its inflated copy (each up to the limit) while it is decompressed.
        # Large bodies may use seven eighths of it (the rest stays for small ones: admission.BodyBudget).
        largest = 2 * max(self.max_body_bytes, self.max_infer_body_bytes)
        usable = self.body_budget_bytes - self.body_budget_bytes // 8
        if usable < largest:
            raise ValueError(
                f"BODY_BUDGET_BYTES ({self.body_budget_bytes}) must hold the largest body and its inflated "
                f"copy in the seven eighths large bodies may use ({usable} bytes): "
                f"2 x max(MAX_BODY_BYTES, MAX_INFER_BODY_BYTES) = {largest}"
            )
        return self

    @property
    def model_roots(self) -> list[tuple[Path, str]]:
        """``(directory, source)`` the registry scans, in order of precedence at equal version numbers."""
        roots = [(self.models_dir, "models_dir")]
        if self.bundled_models:
            roots.append((self.bundled_models_dir, "bundled"))
        return roots

    @property
    def worker_count(self) -> int:
        return self.workers or available_cores()

    def for_worker(self) -> Settings:
        """One worker's settings: its share of the admission limits and of the cores for its lanes."""
        count = self.worker_count
        return self.model_copy(
            update={
                "max_concurrency": math.ceil(self.max_concurrency / count),
                "max_queue": math.ceil(self.max_queue / count),
                "worker_cores": max(1, available_cores() // count),
            }
        )

    @property
    def cores(self) -> int:
        """Cores this process plans its lanes for: its worker's share, or every available core."""
        return self.worker_cores or available_cores()

    @property
    def lanes(self) -> int:
        return self.model_lanes or self.cores

    @property
    def intra_op_threads(self) -> int:
        """Threads of the session a lone caller runs on (archive streams, bulk jobs, the warm-up): every
        core, so that one long stream is not held to a worker's share while the others idle."""
        return self.ort_intra_op_threads or available_cores()

    @property
    def lane_threads(self) -> int:
        """Threads of the session the /generate lanes share (onnxruntime sessions are thread-safe)."""
        return self.ort_intra_op_threads or max(1, self.cores // self.lanes)
