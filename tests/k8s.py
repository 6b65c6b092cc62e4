"""The manifests under deploy/ as the tests see them: rendered objects (an InferenceService read as the pod
KServe makes of it, tests/kserve_pod.py), custom resources validated against their vendored CRD schemas
(tests/schemas), the facts the manifests must agree with (taken from their sources: the app's routes, its
settings, the Dockerfile), and the checks, each a function returning the problems it finds. Shared by
tests/test_k8s.py, test_kserve.py and test_monitoring.py; a plain module, so no test module imports
another (only tests use it, so it stays here rather than in cgan_testing/).
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests import kserve_pod

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"


def _kustomizations(kind: str) -> list[str]:
    found = []
    for path in DEPLOY.rglob("kustomization.yaml"):
        if yaml.safe_load(path.read_text()).get("kind", "Kustomization") == kind:
            found.append(path.parent.relative_to(DEPLOY).as_posix())
    return sorted(found)


#: Every directory under deploy/ holding a kustomization that renders (k8s/base, k8s/overlays/*, k8s/bulk,
#: kserve), named relative to deploy/; components are rendered through the kustomizations that include them.
KUSTOMIZATIONS = _kustomizations("Kustomization")
COMPONENTS = _kustomizations("Component")
OVERLAYS = [k for k in KUSTOMIZATIONS if k.startswith("k8s/overlays/")]
#: The KServe and Prometheus Operator CRD schemas custom resources are validated against.
SCHEMAS = ROOT / "tests" / "schemas"
#: The one place images are named with a registry and a version; and the overlay that runs the images
#: built on the laptop instead (its own `images:`, tag `local`).
IMAGES = "k8s/components/images"
LOCAL_IMAGES = "k8s/overlays/dev"
#: Oldest Kubernetes we support (Job backoffLimitPerIndex is GA from 1.33) and the newest schema we have.
K8S_VERSIONS = ("1.33", "1.37")

KUBECTL = shutil.which("kubectl")
if KUBECTL is None and os.environ.get("CI"):
    raise RuntimeError("kubectl is missing on a CI machine: tests/test_k8s.py cannot render the manifests")

Obj = dict[str, Any]


# --- sources of truth --------------------------------------------------------------------------------------


@functools.cache
def openapi() -> Obj:
    from fastapi.testclient import TestClient

    from service.app import create_app

    old = os.environ.get("MODELS_DIR")
    os.environ["MODELS_DIR"] = str(ROOT / "deploy" / "no-models-here")  # empty: starts, not ready
    try:
        with TestClient(create_app()) as client:
            response = client.get("/openapi.json")
    finally:
        if old is None:
            del os.environ["MODELS_DIR"]
        else:
            os.environ["MODELS_DIR"] = old
    assert response.status_code == 200
    return response.json()


def health_routes() -> tuple[set[str], set[str]]:
    """(liveness, readiness) GET paths of the app: open health routes; readiness ones can answer 503."""
    live, ready = set(), set()
    for path, ops in openapi()["paths"].items():
        op = ops.get("get")
        if op is None or "{" in path or op.get("security") or not re.search(r"health|live|ready", path):
            continue
        (ready if "503" in op.get("responses", {}) else live).add(path)
    return live, ready


def dockerfile_stage(target: str) -> str:
    text = (ROOT / "Dockerfile").read_text()
    match = re.search(rf"^FROM \S+ AS {target}\n(.*?)(?=^FROM |\Z)", text, flags=re.M | re.S)
    assert match, f"Dockerfile has no stage {target!r}"
    return match.group(1)


def image_port() -> int:
    """The HTTP port the service image listens on: its CMD's --port, which its EXPOSE must list."""
    stage = dockerfile_stage("service")
    exposed = {int(p) for p in re.findall(r"^EXPOSE (\d+)", stage, flags=re.M)}
    cmd = re.search(r"^CMD (\[.*\])", stage, flags=re.M)
    assert cmd, "the service stage has no CMD"
    args = yaml.safe_load(cmd.group(1))
    port = int(args[args.index("--port") + 1])
    # The gRPC port may be exposed too (it is not on the command line: GRPC_PORT sets it).
    assert port in exposed <= {port, grpc_port()}, f"Dockerfile EXPOSE {exposed} but CMD --port {port}"
    return port


def grpc_port() -> int:
    """The port of the Open Inference Protocol over gRPC: GRPC_PORT's default (service/config.py)."""
    from service.config import Settings

    return int(Settings.model_fields["grpc_port"].default)


def api_ports() -> set[int]:
    return {image_port(), grpc_port()}


def image_uid() -> int:
    users = re.findall(r"^USER (\d+)", dockerfile_stage("service"), flags=re.M)
    assert users, "the service image sets no numeric USER"
    return int(users[-1].split(":")[0])


# --- rendering ---------------------------------------------------------------------------------------------


@functools.cache
def _render(kustomization: str) -> str:
    out = subprocess.run(
        [KUBECTL, "kustomize", str(DEPLOY / kustomization)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, f"kubectl kustomize {kustomization} failed:\n{out.stderr}"
    return out.stdout


def compose(where: Path, resources: list[str], components: list[str]) -> list[Obj]:
    """Render a kustomization written in ``where`` over kustomizations and components of deploy/ (named
    relative to it), as an operator's own kustomization would include them."""
    rel = [os.path.relpath(DEPLOY / r, where) for r in resources]
    comps = [os.path.relpath(DEPLOY / c, where) for c in components]
    kustomization = {"namespace": "cgan-synth", "resources": rel, "components": comps}
    (where / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    out = subprocess.run([KUBECTL, "kustomize", str(where)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"kubectl kustomize {where} failed:\n{out.stderr}"
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def kustomization_file(kustomization: str) -> Obj:
    return yaml.safe_load((DEPLOY / kustomization / "kustomization.yaml").read_text())


def render(kustomization: str) -> list[Obj]:
    """A fresh copy of the rendered objects (tests may mutate it)."""
    return [doc for doc in yaml.safe_load_all(_render(kustomization)) if doc]


# --- custom resources: validated against the vendored CRD schemas (tests/schemas/README.md) -----------------


@functools.cache
def crd_schema(api_version: str, kind: str) -> Obj | None:
    """The vendored schema of a custom resource kind, closed as the API server applies it; None if we have
    none (a core kind: kubernetes-validate knows those)."""
    group, _, version = api_version.rpartition("/")
    path = SCHEMAS / f"{group}_{version}_{kind.lower()}.json"
    return _closed(json.loads(path.read_text())) if path.exists() else None


def _closed(schema: Obj) -> Obj:
    """The API server drops (``kubectl apply --validate=strict``: refuses) fields a structural schema does
    not declare; JSON Schema allows them unless told. anyOf/allOf/oneOf/not branches stay open: they only
    constrain fields the schema around them declares."""
    schema = dict(schema)
    if "properties" in schema:
        schema["properties"] = {name: _closed(s) for name, s in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema["additionalProperties"] = False
    if isinstance(schema.get("additionalProperties"), dict):
        schema["additionalProperties"] = _closed(schema["additionalProperties"])
    if isinstance(schema.get("items"), dict):
        schema["items"] = _closed(schema["items"])
    return schema


def validate_custom(obj: Obj) -> list[str]:
    """A custom resource's schema errors: its CRD's schema for the body; ObjectMeta's (the same for every
    kind, and only ``type: object`` in a CRD) for the metadata, through kubernetes-validate."""
    import jsonschema
    import kubernetes_validate

    where = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
    schema = crd_schema(obj.get("apiVersion", ""), obj.get("kind", ""))
    if schema is None:
        return [f"{where}: no vendored schema for {obj.get('apiVersion')} {obj.get('kind')}"]
    errors = jsonschema.Draft4Validator(schema).iter_errors(obj)
    problems = [f"{where}: {e.json_path}: {e.message}" for e in errors]
    as_core = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj.get("metadata", {})}
    try:
        kubernetes_validate.validate(as_core, K8S_VERSIONS[-1], strict=True)
    except kubernetes_validate.ValidationError as e:
        problems.append(f"{where}: metadata: {e.message}")
    return problems


def check_custom_resources(objs: list[Obj]) -> list[str]:
    """Schema errors of every rendered object we have a CRD schema for."""
    return [p for o in objs if crd_schema(o["apiVersion"], o["kind"]) is not None for p in validate_custom(o)]


def find(objs: list[Obj], kind: str, name: str | None = None) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objs: list[Obj], kind: str, name: str) -> Obj:
    found = find(objs, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def workloads(objs: list[Obj]) -> Iterator[tuple[str, Obj]]:
    """("Kind/name", pod spec) of every object that runs pods; for an InferenceService, the pod KServe makes
    of it and its runtime (an InferenceService whose runtime is not rendered yields none: check_kserve
    reports it)."""
    for o in objs:
        if o["kind"] == "InferenceService":
            runtime = kserve_pod.runtime_of(objs, o)
            if runtime is not None:
                yield f"InferenceService/{o['metadata']['name']}", kserve_pod.predictor_pod(o, runtime)
        elif o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"):
            yield f"{o['kind']}/{o['metadata']['name']}", o["spec"]["template"]["spec"]
        elif o["kind"] == "CronJob":
            yield f"CronJob/{o['metadata']['name']}", o["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        elif o["kind"] == "Pod":
            yield f"Pod/{o['metadata']['name']}", o["spec"]


def containers(pod: Obj) -> list[Obj]:
    return pod.get("initContainers", []) + pod["containers"]


def container_env(objs: list[Obj], container: Obj) -> dict[str, Any]:
    """The container's environment: ConfigMap envFrom values, then env (value or the valueFrom dict)."""
    env: dict[str, Any] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(one(objs, "ConfigMap", source["configMapRef"]["name"]).get("data", {}))
    for var in container.get("env", []):
        env[var["name"]] = var["value"] if "value" in var else var.get("valueFrom")
    return env


def pvc_mounts(pod: Obj, container: Obj) -> dict[str, tuple[Obj, Obj]]:
    """claimName -> (volumeMount, volume) for the container's PVC mounts."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    found = {}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "persistentVolumeClaim" in volume:
            found[volume["persistentVolumeClaim"]["claimName"]] = (mount, volume)
    return found


def all_args(container: Obj) -> list[str]:
    return [str(a) for a in container.get("command", []) + container.get("args", [])]


def flag(container: Obj, name: str) -> str | None:
    args = all_args(container)
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


#: The InferenceService that runs the API on KServe (deploy/kserve) instead of Deployment/cgan-serve.
ISVC = "cgan-synth"


def serve(objs: list[Obj]) -> tuple[Obj, Obj, Obj]:
    """(owner, pod spec, API container) of the API: Deployment/cgan-serve, or on KServe the InferenceService
    and the pod KServe makes of it."""
    if find(objs, "InferenceService"):
        isvc = one(objs, "InferenceService", ISVC)
        runtime = kserve_pod.runtime_of(objs, isvc)
        assert runtime is not None, "the InferenceService's runtime is not rendered"
        pod = kserve_pod.predictor_pod(isvc, runtime)
        return isvc, pod, pod["containers"][0]
    deployment = one(objs, "Deployment", "cgan-serve")
    pod = deployment["spec"]["template"]["spec"]
    return deployment, pod, pod["containers"][0]


def serve_labels(objs: list[Obj]) -> Obj:
    """The labels of the API's pods."""
    owner, _, _ = serve(objs)
    if owner["kind"] == "InferenceService":
        runtime = kserve_pod.runtime_of(objs, owner)
        assert runtime is not None
        return kserve_pod.predictor_labels(owner, runtime)
    return owner["spec"]["template"]["metadata"]["labels"]


def named_port(container: Obj, port: int | str) -> int | None:
    if isinstance(port, int):
        return port
    return next((p["containerPort"] for p in container.get("ports", []) if p.get("name") == port), None)


def labels_match(selector: Obj, labels: Obj) -> bool:
    assert not selector.get("matchExpressions"), "only matchLabels selectors are checked here"
    return bool(selector.get("matchLabels")) and selector["matchLabels"].items() <= labels.items()


def selects(selector: Obj, labels: Obj) -> bool:
    """A label selector (matchLabels and matchExpressions) matches these labels; an empty one matches all."""
    ops = {
        "In": lambda key, values: labels.get(key) in values,
        "NotIn": lambda key, values: labels.get(key) not in values,
        "Exists": lambda key, values: key in labels,
        "DoesNotExist": lambda key, values: key not in labels,
    }
    return selector.get("matchLabels", {}).items() <= labels.items() and all(
        ops[e["operator"]](e["key"], e.get("values", [])) for e in selector.get("matchExpressions", [])
    )


# --- checks: each returns the problems it finds ------------------------------------------------------------

SECRET_PLACEHOLDER = re.compile(r"placeholder|not-a-secret|change-?me", re.I)


def check_pod_security(objs: list[Obj]) -> list[str]:
    problems = []
    uid = image_uid()
    for where, pod in workloads(objs):
        ctx = pod.get("securityContext", {})
        if pod.get("automountServiceAccountToken") is not False:
            problems.append(f"{where}: mounts a service account token")
        for host in ("hostNetwork", "hostPID", "hostIPC"):
            if pod.get(host):
                problems.append(f"{where}: {host}")
        for c in containers(pod):
            at = f"{where}/{c['name']}"
            sc = c.get("securityContext", {})

            def get(key: str, sc: Obj = sc, ctx: Obj = ctx) -> Any:
                return sc.get(key, ctx.get(key))

            if get("runAsNonRoot") is not True:
                problems.append(f"{at}: runAsNonRoot is not true")
            if get("runAsUser") != uid:
                problems.append(f"{at}: runAsUser {get('runAsUser')} is not the image's uid {uid}")
            if (get("seccompProfile") or {}).get("type") != "RuntimeDefault":
                problems.append(f"{at}: seccomp profile is not RuntimeDefault")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{at}: allowPrivilegeEscalation is not false")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{at}: root filesystem is writable")
            if sc.get("privileged"):
                problems.append(f"{at}: privileged")
            caps = sc.get("capabilities", {})
            if caps.get("drop") != ["ALL"] or caps.get("add"):
                problems.append(f"{at}: capabilities are not drop [ALL] and add nothing")
            res = c.get("resources", {})
            for kind in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    if resource not in res.get(kind, {}):
                        problems.append(f"{at}: no {resource} {kind}")
    return problems


def check_probes(objs: list[Obj]) -> list[str]:
    problems = []
    live, ready = health_routes()
    port = image_port()
    _, pod, c = serve(objs)
    listening = [p["containerPort"] for p in c.get("ports", [])]
    # HTTP first: KServe routes its HTTP traffic to the first port, and it is the probes' port here.
    if listening[:1] != [port] or set(listening) != api_ports():
        problems.append(f"containerPorts {listening}, the service listens on {port} (HTTP) and {grpc_port()}")
    if flag(c, "--port") not in (None, str(port)):
        problems.append(f"container overrides --port {flag(c, '--port')}, probes expect {port}")
    wanted = {"startupProbe": live, "livenessProbe": live, "readinessProbe": ready}
    for probe, paths in wanted.items():
        get = c.get(probe, {}).get("httpGet")
        if get is None:
            problems.append(f"no {probe} httpGet")
            continue
        if get["path"] not in paths:
            problems.append(f"{probe} path {get['path']!r} is not one of the app's routes {sorted(paths)}")
        if named_port(c, get["port"]) != port:
            problems.append(f"{probe} port {get['port']!r} is not {port}")
    return problems


API_ACCESS = ("cgan-synth.io/api-access", "true")


def admits_api_clients(peer: Obj) -> bool:
    """A NetworkPolicy peer naming the namespaces or pods labelled cgan-synth.io/api-access=true."""
    key, value = API_ACCESS
    return any(
        peer.get(s, {}).get("matchLabels", {}).get(key) == value for s in ("namespaceSelector", "podSelector")
    )


def check_service_routing(objs: list[Obj]) -> list[str]:
    """The Service and the NetworkPolicy reach the pods on the ports they listen on (HTTP and gRPC), and
    nothing else: API clients get both ports, nothing gets another."""
    api = api_ports()
    owner, _, c = serve(objs)
    labels = serve_labels(objs)
    problems = _policy_problems(objs, labels, c, api)
    if owner["kind"] == "InferenceService":
        return problems  # KServe makes the Service from the runtime's ports: check_kserve checks those
    service = one(objs, "Service", "cgan-serve")
    if not service["spec"]["selector"].items() <= labels.items():
        problems.append("Service selector does not select the service pods")
    targets = set()
    for p in service["spec"]["ports"]:
        target = named_port(c, p.get("targetPort", p["port"]))
        targets.add(target)
        if target == grpc_port() and p.get("appProtocol") != "kubernetes.io/h2c":
            problems.append(f"Service port {p['name']} carries gRPC without appProtocol kubernetes.io/h2c")
    if targets != api:
        problems.append(
            f"Service targets ports {sorted(targets, key=str)}, the service listens on {sorted(api)}"
        )
    return problems


def _policy_problems(objs: list[Obj], labels: Obj, c: Obj, api: set[int]) -> list[str]:
    problems = []
    policies = [n for n in find(objs, "NetworkPolicy") if labels_match(n["spec"]["podSelector"], labels)]
    if not policies:
        problems.append("no NetworkPolicy selects the service pods")
    # Policies add up: one that restricts egress and allows none is a deny; any egress rule opens some.
    if policies and not any("Egress" in n["spec"].get("policyTypes", []) for n in policies):
        problems.append("no NetworkPolicy restricts the service pods' egress: they may open connections")
    admitted: set[int | None] = set()
    for n in policies:
        name = n["metadata"]["name"]
        if n["spec"].get("egress"):
            problems.append(f"NetworkPolicy/{name}: the service pods may open connections")
        for rule in n["spec"].get("ingress", []):
            if not rule.get("from"):
                problems.append(f"NetworkPolicy/{name}: ingress from anywhere")
            ports = {named_port(c, p.get("port")) for p in rule.get("ports", [])}
            if not ports or not ports <= api:
                problems.append(
                    f"NetworkPolicy/{name}: ingress ports {sorted(ports, key=str)}, not within {sorted(api)}"
                )
            if any(admits_api_clients(peer) for peer in rule.get("from", [])):
                admitted |= ports
    if admitted != api:
        problems.append(
            f"API clients (api-access label) reach ports {sorted(admitted, key=str)}, not {sorted(api)}"
        )
    deny_all = [
        n
        for n in find(objs, "NetworkPolicy")
        if n["spec"]["podSelector"] == {}
        and "Ingress" in n["spec"]["policyTypes"]
        and not n["spec"].get("ingress")
    ]
    if not deny_all:
        problems.append("no default-deny ingress NetworkPolicy for the namespace")
    return problems


def check_api_token(objs: list[Obj]) -> list[str]:
    problems = []
    _, _, c = serve(objs)
    token = {v["name"]: v for v in c.get("env", [])}.get("API_TOKEN")
    ref = (token or {}).get("valueFrom", {}).get("secretKeyRef")
    if ref is None or "value" in (token or {}):
        return ["API_TOKEN does not come from a Secret"]
    if ref.get("optional"):
        problems.append("API_TOKEN's Secret is optional: a missing Secret would silently turn auth off")
    for secret in find(objs, "Secret"):
        values = {**secret.get("stringData", {}), **secret.get("data", {})}
        for key, value in values.items():
            plain = value if key in secret.get("stringData", {}) else base64.b64decode(value).decode()
            if not SECRET_PLACEHOLDER.search(plain):
                problems.append(f"Secret/{secret['metadata']['name']} commits a value for {key}")
    generated = find(objs, "Secret", ref["name"])
    if generated and ref["key"] not in {**generated[0].get("data", {}), **generated[0].get("stringData", {})}:
        problems.append(f"Secret/{ref['name']} has no key {ref['key']}")
    return problems


def check_models_volume(objs: list[Obj]) -> list[str]:
    problems = []
    _, pod, c = serve(objs)
    mount, volume = pvc_mounts(pod, c).get("cgan-models", (None, None))
    if mount is None:
        return ["the service does not mount the models PVC"]
    # Either makes the mount read-only; KServe sets the mount's only.
    if mount.get("readOnly") is not True and volume["persistentVolumeClaim"].get("readOnly") is not True:
        problems.append("the service mounts the models volume writable")
    if container_env(objs, c).get("MODELS_DIR") != mount["mountPath"]:
        problems.append("the service's MODELS_DIR is not where the models volume is mounted")
    trainer = one(objs, "Job", "cgan-trainer")["spec"]["template"]["spec"]
    t = trainer["containers"][0]
    mount, volume = pvc_mounts(trainer, t).get("cgan-models", (None, None))
    if mount is None:
        return [*problems, "the trainer does not mount the models PVC"]
    if mount.get("readOnly") or volume["persistentVolumeClaim"].get("readOnly"):
        problems.append("the trainer mounts the models volume read-only")
    out = flag(t, "--out") or container_env(objs, t).get("MODELS_DIR")
    if out != mount["mountPath"]:
        problems.append(f"the trainer exports into {out}, the models volume is at {mount['mountPath']}")
    if flag(t, "--name") != container_env(objs, c).get("DEFAULT_MODEL"):
        problems.append("the trainer's --name is not the service's DEFAULT_MODEL")
    return problems


def check_rollout(objs: list[Obj]) -> list[str]:
    """Rolling updates never go below ready capacity, and SIGKILL never cuts the drain short."""
    problems = []
    owner, pod, c = serve(objs)
    if owner["kind"] == "InferenceService":
        strategy = owner["spec"]["predictor"].get("deploymentStrategy", {})
    else:
        strategy = owner["spec"].get("strategy", {})
    rolling = strategy.get("rollingUpdate", {})
    if strategy.get("type") != "RollingUpdate" or str(rolling.get("maxUnavailable")) not in ("0", "0%"):
        problems.append("rolling update may take a ready pod away first (maxUnavailable must be 0)")
    if str(rolling.get("maxSurge", "25%")) in ("0", "0%"):
        problems.append("maxSurge 0 with maxUnavailable 0 can never roll")
    from service.config import Settings

    defaults = Settings.model_fields
    env = container_env(objs, c)
    drain = float(env.get("SHUTDOWN_DRAIN_SECONDS", defaults["shutdown_drain_seconds"].default))
    grace = float(env.get("SHUTDOWN_GRACE_SECONDS", defaults["shutdown_grace_seconds"].default))
    period = pod.get("terminationGracePeriodSeconds", 30)
    if period <= drain + grace:
        problems.append(f"terminationGracePeriodSeconds {period} <= drain {drain} + grace {grace}")
    return problems


def check_prod_availability(objs: list[Obj]) -> list[str]:
    problems = []
    deployment, pod, c = serve(objs)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    hpas = [
        h
        for h in find(objs, "HorizontalPodAutoscaler")
        if h["spec"]["scaleTargetRef"]["kind"] == "Deployment"
        and h["spec"]["scaleTargetRef"]["name"] == "cgan-serve"
    ]
    if len(hpas) != 1:
        return ["prod needs exactly one HorizontalPodAutoscaler on Deployment/cgan-serve"]
    hpa = hpas[0]
    low = hpa["spec"].get("minReplicas", 1)
    if low < 2:
        problems.append(f"HPA minReplicas {low} < 2")
    if hpa["spec"]["maxReplicas"] <= low:
        problems.append("HPA cannot scale out (maxReplicas <= minReplicas)")
    if deployment["spec"].get("replicas", 2) < 2:
        problems.append("Deployment replicas < 2")
    if "replicas" in deployment["spec"]:
        problems.append("Deployment sets replicas: every apply would fight the HPA")
    for metric in hpa["spec"].get("metrics", []):
        resource = metric.get("resource", {}).get("name")
        if resource and resource not in c.get("resources", {}).get("requests", {}):
            problems.append(f"HPA scales on {resource} utilization, the pods request none")
    return problems + _spread_problems(objs, labels, low)


def _spread_problems(objs: list[Obj], labels: Obj, low: int) -> list[str]:
    """With at least ``low`` API pods: drains take one at a time, and pods on any node see the models."""
    problems = []
    pdbs = [p for p in find(objs, "PodDisruptionBudget") if labels_match(p["spec"]["selector"], labels)]
    if len(pdbs) != 1:
        problems.append("prod needs one PodDisruptionBudget selecting the service pods")
    else:
        spec = pdbs[0]["spec"]
        if "maxUnavailable" in spec:
            if not 0 < int(spec["maxUnavailable"]) < low:
                problems.append(f"PDB maxUnavailable {spec['maxUnavailable']} does not keep a pod up")
        elif not 0 < int(spec.get("minAvailable", 0)) < low:
            problems.append(
                f"PDB minAvailable {spec.get('minAvailable')} keeps none up or blocks every drain"
            )
    models = one(objs, "PersistentVolumeClaim", "cgan-models")
    if "ReadWriteMany" not in models["spec"]["accessModes"]:
        problems.append("the models PVC is not ReadWriteMany: pods on other nodes cannot mount it")
    return problems


def check_kserve(objs: list[Obj]) -> list[str]:
    """The InferenceService runs our runtime as we mean it: what KServe's webhook and controller would refuse
    or do otherwise only on a cluster (runtime, format, protocol, storage, ports), and prod's availability."""
    problems = []
    isvc = one(objs, "InferenceService", ISVC)
    mode = isvc["metadata"].get("annotations", {}).get("serving.kserve.io/deploymentMode")
    if mode not in ("Standard", "RawDeployment"):
        problems.append(
            f"deployment mode {mode!r}: Knative serves one port (no gRPC beside HTTP), scales to 0"
        )
    predictor = isvc["spec"]["predictor"]
    model = predictor.get("model", {})
    kinds = ("ServingRuntime", "ClusterServingRuntime")
    runtimes = {r["metadata"]["name"] for kind in kinds for r in find(objs, kind)}
    if unused := runtimes - {model.get("runtime")}:
        problems.append(f"runtimes no InferenceService runs (nothing checks them): {sorted(unused)}")
    runtime = kserve_pod.runtime_of(objs, isvc)
    if runtime is None:
        return [*problems, f"the model's runtime {model.get('runtime')!r} is not rendered"]
    spec = runtime["spec"]
    if spec.get("disabled"):
        problems.append("the runtime is disabled")
    wanted = model.get("modelFormat", {})
    if not any(
        f["name"] == wanted.get("name") and f.get("version") in (None, wanted.get("version"))
        for f in spec.get("supportedModelFormats", [])
    ):
        problems.append(f"the runtime does not support the model's format {wanted}")
    if model.get("protocolVersion") != "v2":
        problems.append(
            f"the model asks for protocol {model.get('protocolVersion')!r}; the service speaks v2"
        )
    if not {"v2", "grpc-v2"} <= set(spec.get("protocolVersions", [])):
        problems.append(f"the runtime declares protocols {spec.get('protocolVersions')}, not v2 and grpc-v2")
    if kserve_pod.parse_pvc_uri(model.get("storageUri", "")) is None:
        problems.append(
            f"storageUri {model.get('storageUri')!r} is not pvc://: KServe would copy the models once at"
            " start (an init container, with egress) and never see a new version"
        )
    ports = next((c.get("ports", []) for c in spec["containers"] if c["name"] == kserve_pod.CONTAINER), [])
    if [p["containerPort"] for p in ports[:1]] != [image_port()]:
        problems.append(f"the runtime's first port is not HTTP ({image_port()}): KServe sends HTTP to it")
    if [p["containerPort"] for p in ports if p.get("name") == "h2c"] != [grpc_port()]:
        problems.append(
            f"no port named h2c is the gRPC port {grpc_port()}: KServe would not serve it as gRPC"
        )
    low = predictor.get("minReplicas", 1)
    if low < 2:
        problems.append(f"minReplicas {low} < 2")
    if predictor.get("maxReplicas", low) <= low:
        problems.append("the predictor cannot scale out (maxReplicas <= minReplicas)")
    return problems + _spread_problems(objs, serve_labels(objs), low)


#: The labels the Prometheus Operator gives the pods of a Prometheus (or PrometheusAgent) it runs.
PROMETHEUS_POD = {"app.kubernetes.io/name": "prometheus"}


def check_monitoring(objs: list[Obj]) -> list[str]:
    """Prometheus scrapes every API pod, once, on the port and path the app serves its metrics on without a
    token; the NetworkPolicy lets it; Grafana's sidecar finds the dashboard."""
    problems = []
    _, _, c = serve(objs)
    labels = serve_labels(objs)
    monitors = [m for m in find(objs, "PodMonitor") if selects(m["spec"]["selector"], labels)]
    # A ServiceMonitor reaches the pods through a Service that selects them: a second scrape of each pod.
    services = [s for s in find(objs, "Service") if s["spec"].get("selector", {}).items() <= labels.items()]
    doubles = [
        m
        for m in find(objs, "ServiceMonitor")
        if any(selects(m["spec"]["selector"], s["metadata"].get("labels", {})) for s in services)
    ]
    if len(monitors) != 1 or doubles:
        return [
            f"{len(monitors)} PodMonitors and {len(doubles)} ServiceMonitors scrape the API pods: want one"
        ]
    endpoints = monitors[0]["spec"].get("podMetricsEndpoints", [])
    if len(endpoints) != 1:
        problems.append(f"the PodMonitor has {len(endpoints)} endpoints, want the HTTP port's")
    for ep in endpoints:
        port = named_port(c, ep["port"]) if "port" in ep else ep.get("portNumber")
        if port != image_port():
            problems.append(
                f"the PodMonitor scrapes port {ep.get('port', port)!r}, not the HTTP port {image_port()}"
            )
        path = ep.get("path", "/metrics")
        op = openapi()["paths"].get(path, {}).get("get")
        if op is None or op.get("security") or "metrics" not in path:
            problems.append(f"the PodMonitor scrapes {path!r}, not an open metrics route of the app")
        if ep.get("scheme", "http").lower() != "http":
            problems.append(f"the PodMonitor scrapes over {ep['scheme']}; the pods serve plain HTTP")
    admitted = [
        n
        for n in find(objs, "NetworkPolicy")
        if labels_match(n["spec"]["podSelector"], labels)
        for rule in n["spec"].get("ingress", [])
        if image_port() in {named_port(c, p.get("port")) for p in rule.get("ports", [])}
        # A rule for Prometheus' pods by their labels, not one that admits it if its namespace is labelled
        and any(
            peer.get("podSelector") and selects(peer["podSelector"], PROMETHEUS_POD) for peer in rule["from"]
        )
    ]
    if not admitted:
        problems.append(f"no NetworkPolicy admits Prometheus' pods ({PROMETHEUS_POD}) to port {image_port()}")
    dashboards = [
        m for m in find(objs, "ConfigMap") if m["metadata"].get("labels", {}).get("grafana_dashboard") == "1"
    ]
    if not any(key.endswith(".json") for m in dashboards for key in m.get("data", {})):
        problems.append("no ConfigMap labelled grafana_dashboard=1 holds a dashboard (.json)")
    return problems


def _bytes(size: str) -> int:
    """An nginx size (``4m``, ``512k``, ``100``) in bytes."""
    number, unit = re.fullmatch(r"(\d+)([kKmMgG]?)", size).groups()  # type: ignore[union-attr]
    return int(number) * 1024 ** " kmg".index(unit.lower() or " ")


def check_ingress(objs: list[Obj]) -> list[str]:
    """Each Ingress reaches the API's Service on the port for its protocol (gRPC on the h2c port, marked
    GRPC for nginx; HTTP on the HTTP port), behind TLS, and lets the largest request the service takes
    through."""
    problems = []
    _, _, c = serve(objs)
    from service.config import Settings

    largest = Settings.model_fields["max_infer_body_bytes"].default
    ingresses = find(objs, "Ingress")
    if not ingresses:
        return ["no Ingress"]
    for ing in ingresses:
        name, spec = ing["metadata"]["name"], ing["spec"]
        annotations = ing["metadata"].get("annotations", {})
        grpc = annotations.get("nginx.ingress.kubernetes.io/backend-protocol", "HTTP").upper() == "GRPC"
        hosts = {r.get("host") for r in spec.get("rules", [])}
        tls = {h for t in spec.get("tls", []) for h in t.get("hosts", [])}
        if None in hosts or not hosts <= tls:
            problems.append(f"Ingress/{name}: hosts {sorted(hosts - tls, key=str)} without TLS")
        if _bytes(annotations.get("nginx.ingress.kubernetes.io/proxy-body-size", "1m")) < largest:
            problems.append(f"Ingress/{name}: bodies up to MAX_INFER_BODY_BYTES ({largest}) are refused")
        for rule in spec.get("rules", []):
            for path in rule.get("http", {}).get("paths", []):
                backend = path["backend"]["service"]
                found = find(objs, "Service", backend["name"])
                ports = found[0]["spec"]["ports"] if found else []
                wanted = backend["port"].get("name") or backend["port"].get("number")
                port = next((p for p in ports if wanted in (p.get("name"), p["port"])), None)
                target = None if port is None else named_port(c, port.get("targetPort", port["port"]))
                if target != (grpc_port() if grpc else image_port()):
                    kind = "gRPC" if grpc else "HTTP"
                    problems.append(
                        f"Ingress/{name}: {kind} goes to {backend['name']}:{wanted} (pod port {target})"
                    )
    return problems


def check_pinned_images(objs: list[Obj]) -> list[str]:
    problems = []
    for where, pod in workloads(objs):
        for c in containers(pod):
            image = c["image"]
            tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else None
            if "@sha256:" not in image and tag in (None, "latest", "local"):
                problems.append(f"{where}/{c['name']}: image {image} is not pinned")
    return problems


def image_refs(entries: list[Obj]) -> dict[str, str]:
    """What a kustomize `images:` list turns each image name into."""
    refs = {}
    for entry in entries:
        name = entry.get("newName", entry["name"])
        if "digest" in entry:
            refs[entry["name"]] = f"{name}@{entry['digest']}"
        else:
            refs[entry["name"]] = f"{name}:{entry['newTag']}" if "newTag" in entry else name
    return refs


def images_for(kustomization: str) -> list[Obj]:
    """The `images:` entries a kustomization's images should come from."""
    return kustomization_file(LOCAL_IMAGES if kustomization == LOCAL_IMAGES else IMAGES)["images"]


def check_images_from_one_place(objs: list[Obj], entries: list[Obj]) -> list[str]:
    """Every container runs an image an `images:` entry made, so one edit there sets registry and version."""
    made = set(image_refs(entries).values())
    return [
        f"{where}/{c['name']}: image {c['image']} does not come from an images: entry {sorted(made)}"
        for where, pod in workloads(objs)
        for c in containers(pod)
        if c["image"] not in made
    ]


def check_released_images(objs: list[Obj]) -> list[str]:
    """check_images_from_one_place against the release images (all but overlays/dev)."""
    return check_images_from_one_place(objs, images_for(IMAGES))


def _image_fields(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "image" and isinstance(value, str):
                yield value
            else:
                yield from _image_fields(value)
    elif isinstance(node, list):
        for value in node:
            yield from _image_fields(value)


def deploy_sources() -> dict[str, list[Obj]]:
    """Every YAML file under deploy/, relative to it: its documents."""
    return {
        p.relative_to(DEPLOY).as_posix(): [d for d in yaml.safe_load_all(p.read_text()) if d]
        for p in sorted(DEPLOY.rglob("*.yaml"))
    }


def check_image_sources(sources: dict[str, list[Obj]]) -> list[str]:
    """Manifests name images by their bare names only, and only the images component (and the dev overlay,
    for `:local`) turns them into references: a registry or a tag anywhere else is a second place to edit."""
    problems = []
    names = {e["name"] for e in kustomization_file(IMAGES)["images"]}
    allowed = {f"{IMAGES}/kustomization.yaml", f"{LOCAL_IMAGES}/kustomization.yaml"}
    for path, docs in sources.items():
        for doc in docs:
            if path.endswith("kustomization.yaml"):
                if doc.get("images") and path not in allowed:
                    problems.append(f"{path}: sets images: (only {sorted(allowed)} may)")
                continue
            for image in _image_fields(doc):
                if image not in names:
                    problems.append(f"{path}: image {image} is not one of the bare names {sorted(names)}")
    return problems


def check_bulk_job(objs: list[Obj]) -> list[str]:
    problems = []
    job = one(objs, "Job", "cgan-bulk")
    spec = job["spec"]
    pod = spec["template"]["spec"]
    c = pod["containers"][0]
    if spec.get("completionMode") != "Indexed":
        problems.append("the bulk Job is not Indexed")
    shards = flag(c, "--shards")
    counts = {spec.get("completions"), spec.get("parallelism")} | ({int(shards)} if shards else set())
    if len(counts) != 1 or None in counts:
        problems.append(f"completions, parallelism and --shards disagree: {counts}")
    if "cgan-synth/service" not in c["image"]:
        problems.append(f"the bulk Job runs {c['image']}, not the service image")
    mounts = pvc_mounts(pod, c)
    if "cgan-models" not in mounts or mounts["cgan-models"][0].get("readOnly") is not True:
        problems.append("the bulk Job does not mount the models read-only")
    outs = [m for claim, (m, _) in mounts.items() if claim != "cgan-models" and not m.get("readOnly")]
    if len(outs) != 1 or flag(c, "--out") != outs[0]["mountPath"]:
        problems.append("the bulk Job's --out is not its writable output volume")
    return problems
