"""Ours against the model servers a user would pick instead: one run, the same model, the same work.

    python -m bench.load.peer_load             # conv + dense, n=16 and n=1, 8 s rows (~10 min on 2 cores)
    python -m bench.load.peer_load --quick     # 3 s rows, n=16 only, no naive peer (a smoke run)
    python -m bench.load.peer_load --fake --quick --no-naive   # the tests' tiny ONNX model (what CI runs)
    python -m bench.load.peer_load --layouts --only '*/n16/raw*' --only '*/n16/ours*/png'   # our layouts

The work, for every target: ``n`` images of label 9 from seed 1 (image i from seed 1 + i, the contract's
rule), answered as image bytes. Models: the bundled default (conv, ``service/bundled/mnist-5k-cgan-conv``:
ours and raw serve its default version, the INT8 twin under PRECISION=auto; the peers its FP32 v1)
and the article's dense generator (``bench/load/service_load.py``'s cached model). One server at a time on
127.0.0.1, each loaded with ``wrk -t1 -c32`` (``bench/wrk_report.lua``):

* **raw**: in this process, no HTTP: ``service.dataplane.images_now`` (noise + onnxruntime + PNG) for n
  images, best of one caller with every core's onnxruntime threads and one caller per core with one thread
  each: the model's in-process rate on this machine, the reference the service is held to.
* **ours**: ``python -m service`` as deployed (default settings), as ``/generate`` PNG and .npy, as Open
  Inference Protocol ``/v2/models/{name}/infer`` with JSON and with binary output, and as the same protocol
  over gRPC (``v2-grpc``: ``ModelInfer`` on GRPC_PORT, driven by ``h2load -c32 -m1`` over h2c, since wrk
  speaks only HTTP/1.1; skipped with a line when h2load is not installed, ``apt-get install nghttp2-client``).
* **kserve** (``bench/peers/kserve_app.py``, in ``.venv-kserve``): a ``kserve.Model`` over the v2 protocol.
  ``docs``: as KServe's docs write one (one worker, JSON, onnxruntime's default threads, KServe's logging);
  ``best``: two worker processes with one onnxruntime thread each, binary output, logging not configured.
* **bentoml** (``bench/peers/bentoml_app.py``, in ``.venv-bentoml``): a ``@bentoml.service``. ``docs``: one
  worker, a numpy return value (JSON), defaults; ``best``: two workers, one onnxruntime thread each, ``.npy``
  bytes, no access log.
* **naive** (``bench/peers/naive_app.py``): FastAPI + Keras ``model.predict`` + Pillow, for both archs.
* **floor** (``bench/peers/floor_app.py``): FastAPI answering a constant PNG; a reference line, not a goal.

Each peer is compared with our row of the same form (JSON with JSON, binary with binary). A peer whose
virtual environment is missing is skipped with a line saying so. CPU % and RSS are summed over the server's
process group (peers with workers run several processes). Writes ``bench/results/peer_load.json``.
"""

from __future__ import annotations

import argparse
import fnmatch
import functools
import io
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.harness import (  # noqa: E402
    CACHE,
    HOST,
    REPO,
    ProcSampler,
    Server,
    bench_model,
    fake_models_dir,
    fmt,
    free_port,
    grpc_frame,
    have_h2load,
    in_process,
    machine,
    markdown_table,
    module_server,
    run_h2load,
    run_wrk,
    service_server,
    settle,
    write_json,
)
from service.config import Settings  # noqa: E402

LABEL, SEED = 9, 1
PEERS = REPO / "bench" / "peers"
CONV = "mnist-5k-cgan-conv"
#: The trainer command for a run of the default conv architecture, for the naive peer's Keras file: its speed
#: depends on the layers, not on the weights, so a few steps do (the bundle ships no Keras checkpoint).
CONV_RUN = "train --dataset mnist-5k --steps 20 --name conv-arch --out {out} --work-dir {work} --quiet"


# ---------------------------------------------------------------------------------------------- forms


@dataclass(frozen=True)
class Form:
    """How a target is asked for the work and how its answer is decoded back into images."""

    name: str
    path: str  # {model} is the served model's name
    body: str  # {n}, {labels}

    def request(self, model: str, n: int) -> tuple[str, str]:
        labels = json.dumps([LABEL] * n)
        return self.path.format(model=model), self.body.format(n=n, labels=labels, label=LABEL, seed=SEED)


_V2 = '{{"inputs": [{{"name": "label", "datatype": "INT64", "shape": [{n}], "data": {labels}}}], '
FORMS = {
    "png": Form("png", "/generate", '{{"label": {label}, "n": {n}, "seed": {seed}, "format": "png"}}'),
    "npy": Form("npy", "/generate", '{{"label": {label}, "n": {n}, "seed": {seed}, "format": "npy"}}'),
    "v2-json": Form("v2-json", "/v2/models/{model}/infer", _V2 + '"parameters": {{"seed": {seed}}}}}'),
    "v2-binary": Form(
        "v2-binary",
        "/v2/models/{model}/infer",
        _V2 + '"parameters": {{"seed": {seed}}}, '
        '"outputs": [{{"name": "image", "parameters": {{"binary_data": true}}}}]}}',
    ),
    "bento-json": Form("bento-json", "/generate", '{{"label": {label}, "n": {n}, "seed": {seed}}}'),
    "bento-npy": Form("bento-npy", "/generate_npy", '{{"label": {label}, "n": {n}, "seed": {seed}}}'),
}
#: Which of our rows does the same work in the same form as a peer's (for the ratios).
SAME_FORM = {"v2-json": "v2-json", "v2-binary": "v2-binary", "bento-json": "v2-json", "bento-npy": "npy"}

#: The forms the raw model is measured in: each our form's work in this process (gRPC answers v2-binary's).
RAW_FORMS = ("png", "npy", "v2-json", "v2-binary")


def raw_call(runtime, model: str, form: str, n: int):
    """One in-process answer of ``n`` images in ``form``: the data plane without the batcher or HTTP, the
    same bytes the service sends (``images_now`` / ``tensors_now``)."""
    import numpy as np

    from service.dataplane import ImageRequest, TensorRequest, images_now, tensors_now
    from service.http import oip_codec

    if form in ("png", "npy"):
        request = ImageRequest(label=LABEL, n=n, seed=SEED, format=form)
        return functools.partial(images_now, runtime, request)
    binary = form == "v2-binary"
    tensor = TensorRequest(
        labels=np.full(n, LABEL, np.int64),
        seed=SEED,
        model=model,
        encode=functools.partial(oip_codec.encode, None, binary),
        media_type="application/octet-stream" if binary else "application/json",
    )
    return functools.partial(tensors_now, runtime, tensor)


#: The gRPC form: ModelInfer on the service's GRPC_PORT (not a wrk form: see grpc_request).
GRPC = "v2-grpc"
GRPC_PATH = "/inference.GRPCInferenceService/ModelInfer"
GRPC_HEADERS = ("content-type: application/grpc", "te: trailers")
#: The raw form each of our forms is held to: gRPC's answer is v2-binary's tensor bytes.
RAW_OF = {GRPC: "v2-binary"}


def grpc_request(model: str, n: int) -> bytes:
    """The gRPC form of the work: a ``ModelInferRequest`` (``label`` INT64 [n] in raw_input_contents, the
    ``seed`` parameter), framed for the wire, built with the real client's generated messages."""
    import numpy as np
    from tritonclient.grpc import service_pb2 as pb

    request = pb.ModelInferRequest(model_name=model)
    request.inputs.add(name="label", datatype="INT64", shape=[n])
    request.raw_input_contents.append(np.full(n, LABEL, "<i8").tobytes())
    request.parameters["seed"].int64_param = SEED
    return grpc_frame(request.SerializeToString())


def grpc_statuses(server: Server) -> dict[str, float]:
    """ModelInfer answers by status, as the service counts them (h2load sees every gRPC answer as 200)."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(server.url + "/metrics", timeout=10).text
    return {
        s.labels["status"]: s.value
        for f in text_string_to_metric_families(text)
        if f.name == "cgan_http_requests"
        for s in f.samples
        if s.name.endswith("_total") and s.labels.get("route") == GRPC_PATH
    }


def decode(form: str, response) -> object:
    """The images in a response (uint8 ``[n, H, W, 1]`` or ``[n, H, W]``), or None for a PNG."""
    import numpy as np

    if form == "png":
        return None
    if form in ("npy", "bento-npy"):
        return np.load(io.BytesIO(response.content))
    if form == "bento-json":
        return np.array(response.json(), dtype=np.uint8)
    if form == "v2-binary":
        head = int(response.headers["Inference-Header-Content-Length"])
        meta = json.loads(response.content[:head])
        return np.frombuffer(response.content[head:], np.uint8).reshape(meta["outputs"][0]["shape"])
    out = response.json()["outputs"][0]
    return np.array(out["data"], dtype=np.uint8).reshape(out["shape"])


# ---------------------------------------------------------------------------------------------- targets


#: Other ways to run our server on the same cores (``--layouts``): what "ours" (the default) is chosen over.
LAYOUTS = (
    ("1proc-2lanes", {"WORKERS": "1"}, "1 process x 2 lanes x 1 ORT thread (the default before workers)"),
    ("1proc-1lane", {"WORKERS": "1", "MODEL_LANES": "1"}, "1 process x 1 lane x 2 ORT threads"),
    ("2w-2lanes", {"WORKERS": "2", "MODEL_LANES": "2"}, "2 workers x 2 lanes x 1 ORT thread"),
    ("2w-conc8", {"WORKERS": "2", "MAX_CONCURRENCY": "8"}, "default, MAX_CONCURRENCY=8 (4 a worker)"),
    ("2w-conc16", {"WORKERS": "2", "MAX_CONCURRENCY": "16"}, "default, MAX_CONCURRENCY=16 (8 a worker)"),
    ("2w-whole-runs", {"WORKERS": "2", "RUN_MAX_IMAGES": "0"}, "default, RUN_MAX_IMAGES=0 (one run a batch)"),
)


@dataclass
class Target:
    """One server configuration: how to start it, where it is ready, which forms it answers."""

    name: str  # ours, kserve-docs, ...
    forms: list[str]
    config: str  # what the configuration is, for the table
    start: object  # (model) -> Server, or None when skipped
    ready_path: str = "/readyz"
    check: bool = True  # its images must equal ours (not the naive peer: other weights, other noise)
    skipped: str | None = None


@dataclass
class Model:
    arch: str
    models_dir: Path
    name: str
    onnx: Path
    keras: Path | None = None
    rows: list[dict] = field(default_factory=list)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rows: list[dict] = []
        self.notes: list[str] = []

    def log(self, message: str) -> None:
        print(f"# {message}", file=sys.stderr, flush=True)

    def wanted(self, row_id: str) -> bool:
        return not self.args.only or any(fnmatch.fnmatch(row_id, p) for p in self.args.only)

    # -------------------------------------------------------------------------------------- targets

    def targets(self) -> list[Target]:
        a = self.args
        defaults = Settings()
        worker = defaults.for_worker()
        ours = Target(
            "ours",
            ["png", "npy", "v2-json", "v2-binary", *([GRPC] if have_h2load() else [])],
            f"python -m service, default settings: {defaults.worker_count} workers x {worker.lanes} lane(s)"
            f" x {worker.lane_threads} ORT thread(s)",
            lambda m: service_server(m.models_dir, m.name, env={"BUNDLED_MODELS": "0"}),
        )
        out = [ours]
        if not have_h2load():
            self.notes.append(f"ours {GRPC} skipped: no h2load (apt-get install nghttp2-client)")
        for name, env, text in LAYOUTS if a.layouts else ():
            out.append(
                Target(
                    f"ours-{name}",
                    ["png"],
                    text,
                    lambda m, env=env: service_server(
                        m.models_dir, m.name, env={"BUNDLED_MODELS": "0", **env}
                    ),
                )
            )
        kserve_py = Path(a.kserve_venv) / "bin" / "python"
        for config, extra, form, text in (
            ("docs", [], "v2-json", "1 worker, JSON, ORT default threads, KServe logging"),
            (
                "best",
                ["--workers", "2", "--ort-threads", "1", "--configure_logging", "false"],
                "v2-binary",
                "2 workers x 1 ORT thread, binary output, no access log",
            ),
        ):

            def start(m: Model, extra=extra) -> Server:
                port = free_port()
                argv = [str(kserve_py), str(PEERS / "kserve_app.py"), "--model-path", str(m.onnx)]
                argv += ["--model_name", m.name, "--http_port", str(port), "--enable_grpc", "false"]
                argv += ["--ping-timeout", "120", *extra]
                return Server("kserve", argv, port)

            target = Target(f"kserve-{config}", [form], text, start, "/v2/models/{model}/ready")
            if not kserve_py.exists():
                target.skipped = f"no {a.kserve_venv} (see bench/README.md, peer_load)"
            out.append(target)
        bentoml = Path(a.bentoml_venv) / "bin" / "bentoml"
        for config, env, form, text in (
            ("docs", {}, "bento-json", "1 worker, numpy -> JSON, ORT default threads, access log"),
            (
                "best",
                {"PEER_WORKERS": "2", "PEER_ORT_THREADS": "1", "PEER_ACCESS_LOG": "0"},
                "bento-npy",
                "2 workers x 1 ORT thread, .npy bytes, no access log",
            ),
        ):

            def start(m: Model, env=env) -> Server:
                port = free_port()
                argv = [str(bentoml), "serve", "bentoml_app:Generator", "--working-dir", str(PEERS)]
                argv += ["--host", HOST, "--port", str(port)]
                return Server("bentoml", argv, port, {"PEER_MODEL": str(m.onnx), **env})

            target = Target(f"bentoml-{config}", [form], text, start)
            if not bentoml.exists():
                target.skipped = f"no {a.bentoml_venv} (see bench/README.md, peer_load)"
            out.append(target)
        naive = Target(
            "naive",
            ["png"],
            "FastAPI + Keras model.predict + Pillow",
            lambda m: module_server(
                "bench.peers.naive_app",
                "naive",
                env={"NAIVE_MODEL": str(m.keras), "TF_CPP_MIN_LOG_LEVEL": "3"},
            ),
            check=False,
        )
        if a.no_naive:
            naive.skipped = "--no-naive"
        out.append(naive)
        return out

    # -------------------------------------------------------------------------------------- rows

    def wrk_row(self, server: Server, model: Model, target: Target, form: str, n: int) -> dict:
        a = self.args
        settle(server)
        duration = a.naive_duration if target.name == "naive" else a.duration
        row_id = f"{model.arch}/n{n}/{target.name}/{form}"
        load0 = os.getloadavg()[0]
        if form == GRPC:
            self.log(f"{row_id}: h2load -c{a.connections} -m1 -D{duration:g} (h2c)")
            before = grpc_statuses(server)
            url = f"http://{HOST}:{server.grpc_port}{GRPC_PATH}"
            with ProcSampler(server.pid, 0.2) as sampler:
                report = run_h2load(
                    url,
                    grpc_request(model.name, n),
                    headers=GRPC_HEADERS,
                    duration=duration,
                    connections=a.connections,
                )
            after = grpc_statuses(server)
            # gRPC errors come as HTTP 200; 499s are the streams h2load cancels when its time is up.
            failed = sum(v - before.get(k, 0) for k, v in after.items() if k not in ("200", "499"))
            report["non2xx"] += round(failed)
            report["rps"] = (report["ok"] - failed) / report["seconds"]
        else:
            path, body = FORMS[form].request(model.name, n)
            self.log(f"{row_id}: wrk -t1 -c{a.connections} -d{duration:g}s")
            with ProcSampler(server.pid, 0.2) as sampler:
                report = run_wrk(
                    server.url + path,
                    body=body,
                    duration=duration,
                    connections=a.connections,
                    timeout=a.timeout,
                )
        return {
            "id": row_id,
            "arch": model.arch,
            "n": n,
            "target": target.name,
            "form": form,
            "config": target.config,
            "rps": report["rps"],
            "p50_ms": report["p50_ms"],
            "p99_ms": report["p99_ms"],
            "non2xx": report["non2xx"],
            "timeouts": report["timeouts"] + report["socket_errors"],
            "cpu_percent": sampler.cpu_percent,
            "rss_mb": sampler.rss_max,
            "load": (load0, os.getloadavg()[0]),
        }

    def preflight(self, server: Server, model: Model, target: Target, form: str) -> None:
        """One small request: a broken server fails loudly, and a peer must return our very images."""
        import httpx
        import numpy as np

        from cgan_contract import request_seeds, runner

        if form == GRPC:
            got = self._grpc_images(server, model, 2)
        else:
            path, body = FORMS[form].request(model.name, 2)
            response = httpx.post(
                server.url + path, content=body, headers={"Content-Type": "application/json"}, timeout=120
            )
            if response.status_code != 200:
                raise RuntimeError(f"{target.name} {form}: {response.status_code} {response.text[:300]}")
            got = decode(form, response)
        if not target.check or got is None:
            return
        # Ours answers from the version the service serves by default (the INT8 twin under PRECISION=auto),
        # a peer from the FP32 file it was given: each is checked against its own graph.
        onnx = served_onnx(model) if target.name.startswith("ours") else model.onnx
        if self._expected.get(onnx) is None:
            session = runner.open_session(onnx, threads=1)
            latent = next(i.shape[1] for i in session.get_inputs() if i.name == "z")
            labels = np.full(2, LABEL, np.int64)
            self._expected[onnx] = runner.generate(session, labels, request_seeds(SEED, 2), latent)
        want = self._expected[onnx]
        if not np.array_equal(np.asarray(got).reshape(want.shape), want):
            raise RuntimeError(
                f"{target.name} {form}: its images differ from the contract's for the same seed"
            )

    _expected: dict = {}

    def _grpc_images(self, server: Server, model: Model, n: int) -> object:
        """The work over gRPC with tritonclient.grpc, once, timed: the row's preflight and the one call
        the notes show next to the same call over HTTP with binary output."""
        import time as clock

        import numpy as np
        import tritonclient.grpc as triton
        import tritonclient.http as triton_http

        labels = np.full(n, LABEL, np.int64)
        with triton.InferenceServerClient(f"{HOST}:{server.grpc_port}") as client:
            label = triton.InferInput("label", [n], "INT64")
            label.set_data_from_numpy(labels)
            client.infer(model.name, [label], parameters={"seed": SEED})  # connect and warm
            started = clock.perf_counter()
            result = client.infer(model.name, [label], parameters={"seed": SEED})
            grpc_ms = (clock.perf_counter() - started) * 1e3
        http = triton_http.InferenceServerClient(f"{HOST}:{server.port}")
        try:
            label = triton_http.InferInput("label", [n], "INT64")
            label.set_data_from_numpy(labels, binary_data=True)
            wanted = [triton_http.InferRequestedOutput("image", binary_data=True)]
            http.infer(model.name, [label], outputs=wanted, parameters={"seed": SEED})
            started = clock.perf_counter()
            http.infer(model.name, [label], outputs=wanted, parameters={"seed": SEED})
            http_ms = (clock.perf_counter() - started) * 1e3
        finally:
            http.close()
        self.notes.append(
            f"{model.arch}: one ModelInfer of {n} images, tritonclient.grpc {grpc_ms:.1f} ms; the same "
            f"with tritonclient.http, binary output, {http_ms:.1f} ms (one warm call each)"
        )
        return result.as_numpy("image")

    def run_target(self, model: Model, target: Target) -> None:
        a = self.args
        forms = [
            f for f in target.forms if any(self.wanted(f"{model.arch}/n{n}/{target.name}/{f}") for n in a.n)
        ]
        if not forms:
            return
        if target.skipped:
            self.notes.append(f"{model.arch}: {target.name} skipped: {target.skipped}")
            self.log(self.notes[-1])
            return
        if target.name == "naive" and model.keras is None:
            self.notes.append(f"{model.arch}: naive skipped: no Keras generator for this model")
            return
        server = target.start(model)
        with server:
            started = time.perf_counter()
            server.wait_ready(target.ready_path.format(model=model.name), timeout=a.start_timeout)
            self.log(f"{model.arch}: {target.name} ready in {time.perf_counter() - started:.1f}s")
            for form in forms:
                self.preflight(server, model, target, form)
            warm_path, warm_body = FORMS[forms[0]].request(model.name, max(a.n))
            run_wrk(server.url + warm_path, body=warm_body, duration=1, connections=a.connections)
            for n in a.n:
                for form in forms:
                    if self.wanted(f"{model.arch}/n{n}/{target.name}/{form}"):
                        self.rows.append(self.wrk_row(server, model, target, form, n))

    def run_raw(self, model: Model) -> None:
        """The model in this process, no HTTP, answering in each form (its encoding included, the request
        parsing and the server left out): best of all cores on one caller and one caller per core."""
        from service.config import available_cores

        cores = available_cores()
        layouts = ((1, cores), (cores, 1))  # (callers, onnxruntime threads each)
        if not any(self.wanted(f"{model.arch}/n{n}/raw/{f}") for n in self.args.n for f in RAW_FORMS):
            return
        runtimes = {threads: in_process(model.models_dir, model.name, threads) for _, threads in layouts}
        for n in self.args.n:
            for form in RAW_FORMS:
                if not self.wanted(f"{model.arch}/n{n}/raw/{form}"):
                    continue
                best = None
                for callers, threads in layouts:
                    call = raw_call(runtimes[threads], model.name, form, n)
                    for _ in range(5):
                        call()
                    cpu0, t0 = time.process_time(), time.perf_counter()
                    times = _drive(call, callers, self.args.duration)
                    wall = time.perf_counter() - t0
                    flat = sorted(x for ts in times for x in ts)
                    row = {
                        "id": f"{model.arch}/n{n}/raw/{form}",
                        "arch": model.arch,
                        "n": n,
                        "target": "raw",
                        "form": form,
                        "config": f"in-process, {callers} caller(s) x {threads} ORT thread(s)",
                        "rps": len(flat) / wall,
                        "p50_ms": statistics.median(flat) * 1e3,
                        "p99_ms": flat[int(0.99 * (len(flat) - 1))] * 1e3,
                        "non2xx": 0,
                        "timeouts": 0,
                        "cpu_percent": 100 * (time.process_time() - cpu0) / wall,
                        "rss_mb": None,
                        "load": (os.getloadavg()[0],) * 2,
                    }
                    self.log(f"{row['id']} {row['config']}: {row['rps']:.1f} req/s")
                    if best is None or row["rps"] > best["rps"]:
                        best = row
                self.rows.append(best)

    def run_floor(self) -> None:
        if not self.wanted("floor/n16/floor/png"):
            return
        with module_server("bench.peers.floor_app", "floor") as server:
            server.wait_ready()
            path, body = FORMS["png"].request("", 16)
            run_wrk(server.url + path, body=body, duration=1, connections=self.args.connections)
            floor = Target("floor", ["png"], "FastAPI, constant PNG (reference only)", None)
            model = Model("floor", Path(), "", Path())
            self.rows.append(self.wrk_row(server, model, floor, "png", 16))

    # -------------------------------------------------------------------------------------- report

    def find(self, arch: str, n: int, target: str, form: str | None = None) -> dict | None:
        return next(
            (
                r
                for r in self.rows
                if r["arch"] == arch and r["n"] == n and r["target"] == target and form in (None, r["form"])
            ),
            None,
        )

    def goals(self) -> list[list[object]]:
        """Issue #30's goals: every form at >= 0.95x the raw model in that form with both cores busy, and the
        default (INT8) model's images/s at n=16 against the peers' best serving the FP32 file; the earlier
        rounds' peer and naive targets, retired as structural, stay as context rows."""
        out: list[list[object]] = []
        cores = self.cores
        archs = sorted({r["arch"] for r in self.rows if r["target"] == "ours"})
        for arch in archs:
            for n in self.args.n:
                for form in (*RAW_FORMS, GRPC):
                    ours = self.find(arch, n, "ours", form)
                    raw = self.find(arch, n, "raw", RAW_OF.get(form, form))
                    if ours is None:
                        continue
                    if raw and raw["rps"]:
                        ratio = ours["rps"] / raw["rps"]
                        what = f"{arch} n={n}: ours {form} vs the raw model in that form"
                        result = "pass" if ratio >= 0.95 else "miss"
                        out.append([what, fmt(ratio, 2) + "x", ">= 0.95x", result])
                    if ours["cpu_percent"] is not None:
                        busy = ours["cpu_percent"] / (100 * cores)
                        what = f"{arch} n={n}: ours {form}, server CPU ({cores} cores)"
                        value = f"{ours['cpu_percent']:.0f}% ({busy:.0%} of all)"
                        out.append([what, value, ">= 70% of all", "pass" if busy >= 0.7 else "miss"])
            for n in self.args.n:
                for peer, target in (("kserve", 1.8), ("bentoml", 2.5)):
                    configs = [
                        r
                        for r in self.rows
                        if r["arch"] == arch and r["n"] == n and r["target"].startswith(peer)
                    ]
                    if not configs:
                        continue
                    better = max(configs, key=lambda r: r["rps"])
                    mine = self.find(arch, n, "ours", SAME_FORM[better["form"]])
                    if mine is None or not better["rps"]:
                        continue
                    ratio = mine["rps"] / better["rps"]
                    lower = mine["p99_ms"] < better["p99_ms"]
                    what = (
                        f"{arch} n={n}: ours {mine['form']} (default version) vs {better['target']} "
                        f"{better['form']} (FP32) images/s (p99 {fmt(mine['p99_ms'], 0)} vs "
                        f"{fmt(better['p99_ms'], 0)} ms)"
                    )
                    if n == 16:
                        result = "pass" if ratio >= target and lower else "miss"
                        out.append([what, fmt(ratio, 2) + "x", f">= {target}x, lower p99", result])
                    else:
                        out.append([what, fmt(ratio, 2) + "x", "(context)", "-"])
                    if per_cpu(mine) and per_cpu(better):
                        what = f"{arch} n={n}: the same, per CPU-second"
                        out.append([what, fmt(per_cpu(mine) / per_cpu(better), 2) + "x", "(context)", "-"])
            for n in self.args.n:
                grpc, binary = self.find(arch, n, "ours", GRPC), self.find(arch, n, "ours", "v2-binary")
                if grpc and binary and binary["rps"]:
                    what = (
                        f"{arch} n={n}: ours v2-grpc vs ours v2-binary (p99 {fmt(grpc['p99_ms'], 0)} vs "
                        f"{fmt(binary['p99_ms'], 0)} ms)"
                    )
                    out.append([what, fmt(grpc["rps"] / binary["rps"], 2) + "x", "(context)", "-"])
            naive, ours = self.find(arch, 16, "naive"), self.find(arch, 16, "ours", "png")
            if naive and ours and naive["rps"]:
                what = f"{arch} n=16: ours png vs naive Keras peer (50x retired by #30)"
                out.append([what, fmt(ours["rps"] / naive["rps"], 1) + "x", "(context)", "-"])
        return out

    @property
    def cores(self) -> int:
        """The cores of the machine the rows were measured on (a saved run's, under --report)."""
        from service.config import available_cores

        return int(self.meta.get("cpus_affinity") or available_cores())

    meta: dict = {}

    def report(self, meta: dict) -> None:
        self.meta = meta
        print()
        load = [r["load"] for r in self.rows]
        span = (
            (min(x for pair in load for x in pair), max(x for pair in load for x in pair)) if load else (0, 0)
        )
        print(
            f"### Ours vs peers ({meta['cpus_affinity']} CPUs, {meta.get('cpu_model', '?')}, wrk -t1 "
            f"-c{self.args.connections} (v2-grpc: h2load -c{self.args.connections} -m1, h2c), "
            f"{self.args.duration:g} s per row; "
            f"load average {span[0]:.1f}-{span[1]:.1f})"
        )
        print()
        order = {
            "raw": 0,
            "ours": 1,
            "kserve-docs": 2,
            "kserve-best": 3,
            "bentoml-docs": 4,
            "bentoml-best": 5,
        }
        rows = sorted(
            self.rows, key=lambda r: (r["arch"] == "floor", r["arch"], -r["n"], order.get(r["target"], 9))
        )
        print(
            markdown_table(
                [
                    "model",
                    "n",
                    "target",
                    "form",
                    "req/s",
                    "images/s",
                    "p50 ms",
                    "p99 ms",
                    "non-2xx/errors",
                    "CPU %",
                    "req/CPU-s",
                    "RSS MB",
                    "load",
                ],
                [
                    [
                        r["arch"],
                        r["n"],
                        r["target"],
                        r["form"],
                        fmt(r["rps"]),
                        fmt(r["rps"] * r["n"], 0),
                        fmt(r["p50_ms"], 1),
                        fmt(r["p99_ms"], 1),
                        f"{r['non2xx']}/{r['timeouts']}",
                        fmt(r["cpu_percent"], 0),
                        fmt(per_cpu(r)),
                        fmt(r["rss_mb"], 0),
                        f"{r['load'][1]:.1f}",
                    ]
                    for r in rows
                ],
            )
        )
        print()
        print("Configurations:")
        for name, text in sorted({(r["target"], r["config"]) for r in self.rows}):
            print(f"- {name}: {text}")
        for note in self.notes:
            print(f"- {note}")
        goals = self.goals()
        if goals:
            print()
            print(markdown_table(["goal", "value", "target", "result"], goals))
        floor = self.find("floor", 16, "floor")
        if floor:
            print()
            print(
                f"Reference only: the empty endpoint (floor) answers {fmt(floor['rps'])} req/s at p99 "
                f"{fmt(floor['p99_ms'], 1)} ms; no model run fits in its request."
            )
        path = write_json(
            self.args.json_name, {"meta": meta, "rows": self.rows, "goals": goals, "notes": self.notes}
        )
        print()
        print(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")


def per_cpu(row: dict) -> float | None:
    """Requests per CPU-second of the server (the in-process loop for raw): what a shared machine distorts
    least, since each server gets whatever CPU share the other jobs leave it."""
    return row["rps"] / (row["cpu_percent"] / 100) if row.get("cpu_percent") else None


def _drive(call, callers: int, seconds: float) -> list[list[float]]:
    """``call()`` in a loop on ``callers`` threads for ``seconds``; each thread's call times."""
    times: list[list[float]] = [[] for _ in range(callers)]
    stop = time.perf_counter() + seconds

    def loop(mine: list[float]) -> None:
        while time.perf_counter() < stop and len(mine) < 1_000_000:
            t = time.perf_counter()
            call()
            mine.append(time.perf_counter() - t)

    threads = [threading.Thread(target=loop, args=(ts,)) for ts in times]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return times


# ---------------------------------------------------------------------------------------------- models


def served_onnx(model: Model) -> Path:
    """The graph ``python -m service`` answers with for ``model`` by default (the default settings' pick)."""
    return _served_onnx(model.models_dir, model.name)


@functools.cache
def _served_onnx(models_dir: Path, name: str) -> Path:
    import cgan_contract as contract
    from service.dataplane.resolve import resolve_model

    return resolve_model(in_process(models_dir, name), name, None).path / contract.MODEL_FILE


def conv_keras() -> Path | None:
    """A Keras generator of the default conv architecture (a few steps, cached), for the naive peer."""
    keras_file = CACHE / "naive" / "conv-arch.keras"
    if keras_file.exists():
        return keras_file
    run_dir = CACHE / "runs" / "conv-arch"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    if not (run_dir / "run.json").exists():
        argv = [
            sys.executable,
            "-m",
            "trainer",
            *CONV_RUN.format(out=CACHE / "models-arch", work=CACHE / "runs").split(),
        ]
        print(f"# training a conv run for the naive peer: {' '.join(argv[1:])}", file=sys.stderr, flush=True)
        subprocess.run(argv, cwd=REPO, check=True, timeout=1800, env=env)
    argv = [sys.executable, "-m", "bench.peers.naive_app", "--export", str(run_dir), str(keras_file)]
    subprocess.run(argv, cwd=REPO, check=True, timeout=600, env=env)
    return keras_file


def dense_keras() -> Path:
    keras_file = CACHE / "naive" / "bench-dense.keras"
    if not keras_file.exists():
        argv = [
            sys.executable,
            "-m",
            "bench.peers.naive_app",
            "--export",
            str(CACHE / "runs" / "bench"),
            str(keras_file),
        ]
        subprocess.run(
            argv, cwd=REPO, check=True, timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        )
    return keras_file


def models(args: argparse.Namespace) -> list[Model]:
    import cgan_contract as contract
    from service.config import BUNDLED_DIR

    def newest(root: Path, name: str) -> Path:
        """The newest FP32 version's graph: what the trainer exports and a peer's user would deploy (ours
        serves the model's default, its gated INT8 twin under PRECISION=auto, as deployed)."""
        versions = [d for _, d in contract.version_dirs(root / name)]
        fp32 = [d for d in versions if contract.read_card(d).precision == "fp32"]
        return (fp32 or versions)[-1] / contract.MODEL_FILE

    if args.fake:
        root, name = fake_models_dir()
        return [Model("fake", root, name, newest(root, name))]
    out = []
    for arch in args.models:
        if arch == "conv":
            keras = None if args.no_naive else conv_keras()
            out.append(Model("conv", BUNDLED_DIR, CONV, newest(BUNDLED_DIR, CONV), keras))
        else:
            root, name = bench_model()
            keras = None if args.no_naive else dense_keras()
            out.append(Model("dense", root, name, newest(root, name), keras))
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="3 s rows, n=16 only")
    p.add_argument("--duration", type=float, help="seconds per row (8; 3 with --quick)")
    p.add_argument("--naive-duration", type=float, help="seconds per naive row (default max(--duration, 10))")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--timeout", type=float, default=30.0, help="wrk per-request timeout, s (30)")
    p.add_argument("--models", default="conv,dense", help="conv,dense (default both)")
    p.add_argument("--n", help="images per request, e.g. 16,1 (default; 16 with --quick)")
    p.add_argument("--fake", action="store_true", help="the tests' tiny ONNX model instead (no TensorFlow)")
    p.add_argument("--no-naive", action="store_true", help="skip the naive Keras peer (it loads TensorFlow)")
    p.add_argument("--layouts", action="store_true", help="also our server in the other LAYOUTS (png rows)")
    p.add_argument("--kserve-venv", default=str(REPO / ".venv-kserve"))
    p.add_argument("--bentoml-venv", default=str(REPO / ".venv-bentoml"))
    p.add_argument("--start-timeout", type=float, default=300.0, help="seconds a server may take to be ready")
    p.add_argument("--only", action="append", default=[], metavar="GLOB", help="row ids, e.g. 'conv/n16/*'")
    p.add_argument("--json-name", default="peer_load.json", help="file name under bench/results/")
    p.add_argument("--report", metavar="JSON", help="print the tables of a saved run again; measures nothing")
    args = p.parse_args(argv)
    args.duration = args.duration or (3.0 if args.quick else 8.0)
    args.naive_duration = args.naive_duration or max(args.duration, 10.0)
    args.n = [int(x) for x in (args.n or ("16" if args.quick else "16,1")).split(",")]
    args.models = [m for m in args.models.split(",") if m]
    if unknown := set(args.models) - {"conv", "dense"}:
        p.error(f"--models: unknown {sorted(unknown)}; choose conv, dense")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bench = Bench(args)
    if args.report:
        saved = json.loads(Path(args.report).read_text())
        bench.rows, bench.notes = saved["rows"], saved["notes"]
        args.n = sorted({r["n"] for r in bench.rows}, reverse=True)
        args.json_name = Path(args.report).name
        bench.report(saved["meta"])
        return 0
    meta = machine()
    meta["argv"] = sys.argv
    started = time.perf_counter()
    for model in models(args):
        bench.run_raw(model)
        for target in bench.targets():
            bench.run_target(model, target)
    bench.run_floor()
    meta["wall_s"] = time.perf_counter() - started
    meta["loadavg_at_end"] = os.getloadavg()
    bench.report(meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
