"""The Kubernetes manifests (deploy/) render, validate, and say what the service really does.

Every kustomization under deploy/ (k8s/base, k8s/overlays/*, k8s/bulk, kserve) is rendered with ``kubectl
kustomize`` and each object is validated offline: core kinds against the Kubernetes OpenAPI schemas
(``kubernetes-validate``), KServe's and the Prometheus Operator's against their vendored CRD schemas
(tests/schemas); strict either way, so an unknown or misspelt field fails. Then the facts that matter are
checked against their sources rather than against copies of them: probe paths against the FastAPI app's own
routes (``/openapi.json``), the ports against the Dockerfile's ``EXPOSE`` and ``CMD`` (and GRPC_PORT), the uid
against its ``USER``, every image against the one ``images:`` list that names them (k8s/components/images),
the Ingress example's backends against the Service. The checks live in tests/k8s.py; KServe's and
monitoring's own tests are tests/test_kserve.py and tests/test_monitoring.py.

Each check is a function returning the problems it finds; ``test_checks_catch_broken_manifests`` breaks a
rendered manifest in one way per check and asserts the check notices, so no check passes vacuously.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable

import pytest

from tests.k8s import (
    COMPONENTS,
    IMAGES,
    K8S_VERSIONS,
    KUBECTL,
    KUSTOMIZATIONS,
    LOCAL_IMAGES,
    OVERLAYS,
    ROOT,
    Obj,
    check_api_token,
    check_bulk_job,
    check_image_sources,
    check_images_from_one_place,
    check_ingress,
    check_models_volume,
    check_pinned_images,
    check_pod_security,
    check_probes,
    check_prod_availability,
    check_released_images,
    check_rollout,
    check_service_routing,
    crd_schema,
    deploy_sources,
    find,
    flag,
    health_routes,
    images_for,
    one,
    pvc_mounts,
    render,
    serve,
    validate_custom,
    workloads,
)

PLATFORM = "k8s/overlays/platform"

pytestmark = pytest.mark.skipif(
    KUBECTL is None, reason="kubectl is not installed: the Kubernetes manifests cannot be rendered"
)


# --- tests -------------------------------------------------------------------------------------------------


def test_layout():
    wanted = {"k8s/base", "k8s/bulk", "k8s/overlays/dev", "k8s/overlays/prod", PLATFORM, "kserve"}
    assert wanted <= set(KUSTOMIZATIONS), KUSTOMIZATIONS
    assert {IMAGES, "k8s/components/ingress", "monitoring"} <= set(COMPONENTS), COMPONENTS


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_renders_and_validates(kustomization):
    import kubernetes_validate

    objs = render(kustomization)
    assert objs
    for obj in objs:
        if crd_schema(obj["apiVersion"], obj["kind"]) is not None:
            assert validate_custom(obj) == []  # KServe's and the Prometheus Operator's kinds
            continue
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)  # raises on any schema error
    namespaces = {o["metadata"].get("namespace") for o in objs if o["kind"] != "Namespace"}
    assert namespaces == {"cgan-synth"}, namespaces


def test_validation_rejects_a_misspelt_field():
    import kubernetes_validate

    deployment = one(render("k8s/overlays/prod"), "Deployment", "cgan-serve")
    c = deployment["spec"]["template"]["spec"]["containers"][0]
    c["securityContext"]["readOnlyRootFileSystem"] = c["securityContext"].pop("readOnlyRootFilesystem")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)


def test_health_routes_come_from_the_app():
    live, ready = health_routes()
    assert live and ready, (live, ready)
    assert not live & ready


def test_every_pod_is_locked_down():
    seen = set()
    for kustomization in KUSTOMIZATIONS:
        objs = render(kustomization)
        assert check_pod_security(objs) == [], kustomization
        seen |= {where for where, _ in workloads(objs)}
    assert {
        "Deployment/cgan-serve",
        "Job/cgan-trainer",
        "Job/cgan-bulk",
        "InferenceService/cgan-synth",
    } <= seen


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize(
    "check", [check_probes, check_service_routing, check_api_token, check_models_volume, check_rollout]
)
def test_overlay(overlay, check):
    assert check(render(overlay)) == []


@pytest.mark.parametrize("overlay", ["k8s/overlays/prod", PLATFORM])
def test_prod(overlay):
    objs = render(overlay)
    assert check_prod_availability(objs) == []
    assert not find(objs, "Secret"), "prod must not ship the API token; it is created out of band"


@pytest.mark.parametrize("kustomization", [k for k in KUSTOMIZATIONS if k not in ("k8s/base", LOCAL_IMAGES)])
def test_deployed_images_are_pinned(kustomization):
    assert check_pinned_images(render(kustomization)) == []


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_images_come_from_one_place(kustomization):
    objs = render(kustomization)
    if kustomization == "k8s/base":  # not applied alone: its images are still bare names
        assert {c["image"] for _, pod in workloads(objs) for c in pod["containers"]} <= {
            e["name"] for e in images_for(IMAGES)
        }
        return
    assert check_images_from_one_place(objs, images_for(kustomization)) == []


def test_image_sources():
    assert check_image_sources(deploy_sources()) == []


def test_ingress_example():
    assert check_ingress(render(PLATFORM)) == []


def test_dev_is_one_replica():
    objs = render("k8s/overlays/dev")
    deployment, _, c = serve(objs)
    assert deployment["spec"]["replicas"] == 1
    assert not find(objs, "HorizontalPodAutoscaler") and not find(objs, "PodDisruptionBudget")
    ref = {v["name"]: v for v in c["env"]}["API_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert find(objs, "Secret", ref["name"]), "the dev token Secret is not the one the Deployment reads"


def test_bulk_indexed_job():
    assert check_bulk_job(render("k8s/bulk")) == []


def test_bulk_job_runs_the_real_cli():
    # The BULK-CLI line is the generator's own command line: its script, flags the parser accepts, and
    # no --shard/--all/--ray, so each pod writes the shard of its JOB_COMPLETION_INDEX.
    import tomllib

    from service import bulk

    c = one(render("k8s/bulk"), "Job", "cgan-bulk")["spec"]["template"]["spec"]["containers"][0]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert c["command"] == ["cgan-bulk"] and scripts["cgan-bulk"] == "service.bulk:main"
    args = bulk.parser().parse_args(c["args"])
    assert args.shard is None and not args.all and args.ray is None
    assert args.version is not None, "pin --version: pods started at different times must use one version"


# One way to break the rendered manifests per check: each must be noticed.
def _serve_container(objs: list[Obj]) -> Obj:
    return serve(objs)[2]


def _token(objs: list[Obj]) -> Obj:
    return {v["name"]: v for v in _serve_container(objs)["env"]}["API_TOKEN"]


def _trainer(objs: list[Obj]) -> Obj:
    return one(objs, "Job", "cgan-trainer")["spec"]["template"]["spec"]


def _bulk(objs: list[Obj]) -> Obj:
    return one(objs, "Job", "cgan-bulk")["spec"]


def _ingress(objs: list[Obj], name: str = "cgan-serve") -> Obj:
    return one(objs, "Ingress", name)


def _backend_port(objs: list[Obj], name: str) -> Obj:
    return _ingress(objs, name)["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"]


def _set_mount_readonly(pod: Obj, claim: str, value: bool) -> None:
    c = pod["containers"][0]
    mount, volume = pvc_mounts(pod, c)[claim]
    mount["readOnly"] = value
    volume["persistentVolumeClaim"]["readOnly"] = value


BREAKAGES: dict[str, tuple[str, Callable[[list[Obj]], list[str]], Callable[[list[Obj]], None]]] = {
    "root": (
        "k8s/overlays/prod",
        check_pod_security,
        lambda o: _trainer(o)["securityContext"].update(runAsUser=0),
    ),
    "writable root": (
        "k8s/bulk",
        check_pod_security,
        lambda o: _bulk(o)["template"]["spec"]["containers"][0]["securityContext"].update(
            readOnlyRootFilesystem=False
        ),
    ),
    "capability added": (
        "k8s/overlays/dev",
        check_pod_security,
        lambda o: _serve_container(o)["securityContext"]["capabilities"].update(add=["NET_ADMIN"]),
    ),
    "no seccomp": (
        "k8s/overlays/prod",
        check_pod_security,
        lambda o: serve(o)[1]["securityContext"].pop("seccompProfile"),
    ),
    "escalation": (
        "k8s/overlays/prod",
        check_pod_security,
        lambda o: _serve_container(o)["securityContext"].update(allowPrivilegeEscalation=True),
    ),
    "no memory limit": (
        "k8s/overlays/prod",
        check_pod_security,
        lambda o: _serve_container(o)["resources"]["limits"].pop("memory"),
    ),
    "sa token": (
        "k8s/bulk",
        check_pod_security,
        lambda o: _bulk(o)["template"]["spec"].pop("automountServiceAccountToken"),
    ),
    "readiness on /healthz": (
        "k8s/overlays/prod",
        check_probes,
        lambda o: _serve_container(o)["readinessProbe"]["httpGet"].update(path="/healthz"),
    ),
    "liveness on /readyz": (
        "k8s/overlays/prod",
        check_probes,
        lambda o: _serve_container(o)["livenessProbe"]["httpGet"].update(path="/readyz"),
    ),
    "startup on a made-up path": (
        "k8s/overlays/dev",
        check_probes,
        lambda o: _serve_container(o)["startupProbe"]["httpGet"].update(path="/health"),
    ),
    "probe on the wrong port": (
        "k8s/overlays/prod",
        check_probes,
        lambda o: _serve_container(o)["livenessProbe"]["httpGet"].update(port=8080),
    ),
    "containerPort 8080": (
        "k8s/overlays/prod",
        check_probes,
        lambda o: _serve_container(o)["ports"][0].update(containerPort=8080),
    ),
    "service targets 8080": (
        "k8s/overlays/prod",
        check_service_routing,
        lambda o: one(o, "Service", "cgan-serve")["spec"]["ports"][0].update(targetPort=8080),
    ),
    "gRPC not admitted": (
        "k8s/overlays/prod",
        check_service_routing,
        lambda o: one(o, "NetworkPolicy", "cgan-serve")["spec"]["ingress"][0]["ports"].pop(),
    ),
    "a port beyond the API admitted": (
        "k8s/overlays/dev",
        check_service_routing,
        lambda o: one(o, "NetworkPolicy", "cgan-serve")["spec"]["ingress"][0]["ports"].append({"port": 9090}),
    ),
    "gRPC Service port without h2c": (
        "k8s/overlays/prod",
        check_service_routing,
        lambda o: one(o, "Service", "cgan-serve")["spec"]["ports"][1].pop("appProtocol"),
    ),
    "no gRPC containerPort": (
        "k8s/overlays/prod",
        check_probes,
        lambda o: _serve_container(o)["ports"].pop(),
    ),
    "ingress from anywhere": (
        "k8s/overlays/prod",
        check_service_routing,
        lambda o: one(o, "NetworkPolicy", "cgan-serve")["spec"]["ingress"][0].pop("from"),
    ),
    "egress allowed": (
        "k8s/overlays/prod",
        check_service_routing,
        lambda o: one(o, "NetworkPolicy", "cgan-serve")["spec"].update(egress=[{}]),
    ),
    "no default deny": (
        "k8s/overlays/dev",
        check_service_routing,
        lambda o: o.remove(one(o, "NetworkPolicy", "cgan-default-deny-ingress")),
    ),
    "literal token": (
        "k8s/overlays/prod",
        check_api_token,
        lambda o: _token(o).update(value="s3cr3t") or _token(o).pop("valueFrom"),
    ),
    "real-looking token committed": (
        "k8s/overlays/dev",
        check_api_token,
        lambda o: find(o, "Secret")[0].update(data={"API_TOKEN": "czNjcjN0LXQwazNu"}),
    ),
    "optional token": (
        "k8s/overlays/prod",
        check_api_token,
        lambda o: _token(o)["valueFrom"]["secretKeyRef"].update(optional=True),
    ),
    "service writes models": (
        "k8s/overlays/prod",
        check_models_volume,
        lambda o: _set_mount_readonly(serve(o)[1], "cgan-models", False),
    ),
    "trainer cannot write": (
        "k8s/overlays/dev",
        check_models_volume,
        lambda o: _set_mount_readonly(_trainer(o), "cgan-models", True),
    ),
    "trainer exports elsewhere": (
        "k8s/overlays/prod",
        check_models_volume,
        lambda o: _trainer(o)["containers"][0]["args"].__setitem__(
            [a.startswith("--out") for a in _trainer(o)["containers"][0]["args"]].index(True), "--out=/tmp/m"
        ),
    ),
    "rolling update drops a pod": (
        "k8s/overlays/prod",
        check_rollout,
        lambda o: serve(o)[0]["spec"]["strategy"]["rollingUpdate"].update(maxUnavailable=1),
    ),
    "grace too short": (
        "k8s/overlays/dev",
        check_rollout,
        lambda o: serve(o)[1].update(terminationGracePeriodSeconds=10),
    ),
    "one replica minimum": (
        "k8s/overlays/prod",
        check_prod_availability,
        lambda o: one(o, "HorizontalPodAutoscaler", "cgan-serve")["spec"].update(minReplicas=1),
    ),
    "replicas in the manifest": (
        "k8s/overlays/prod",
        check_prod_availability,
        lambda o: serve(o)[0]["spec"].update(replicas=3),
    ),
    "no PDB": (
        "k8s/overlays/prod",
        check_prod_availability,
        lambda o: o.remove(one(o, "PodDisruptionBudget", "cgan-serve")),
    ),
    "PDB blocks drains": (
        "k8s/overlays/prod",
        check_prod_availability,
        lambda o: one(o, "PodDisruptionBudget", "cgan-serve")["spec"].update(maxUnavailable=2),
    ),
    "models RWO": (
        "k8s/overlays/prod",
        check_prod_availability,
        lambda o: one(o, "PersistentVolumeClaim", "cgan-models")["spec"].update(
            accessModes=["ReadWriteOnce"]
        ),
    ),
    "unpinned image": (
        "k8s/overlays/prod",
        check_pinned_images,
        lambda o: _trainer(o)["containers"][0].update(image="registry.example.com/cgan-synth/trainer:latest"),
    ),
    "image from elsewhere": (
        "k8s/bulk",
        check_released_images,
        lambda o: _bulk(o)["template"]["spec"]["containers"][0].update(image="ghcr.io/someone/cgan:0.1.0"),
    ),
    "ingress to a port the Service lacks": (
        PLATFORM,
        check_ingress,
        lambda o: _backend_port(o, "cgan-serve").update(name="https"),
    ),
    "gRPC ingress to the HTTP port": (
        PLATFORM,
        check_ingress,
        lambda o: _backend_port(o, "cgan-serve-grpc").update(name="http"),
    ),
    "gRPC ingress not marked GRPC": (
        PLATFORM,
        check_ingress,
        lambda o: _ingress(o, "cgan-serve-grpc")["metadata"]["annotations"].pop(
            "nginx.ingress.kubernetes.io/backend-protocol"
        ),
    ),
    "ingress without TLS": (PLATFORM, check_ingress, lambda o: _ingress(o)["spec"].pop("tls")),
    "ingress refuses inference bodies": (
        PLATFORM,
        check_ingress,
        lambda o: _ingress(o)["metadata"]["annotations"].update(
            {"nginx.ingress.kubernetes.io/proxy-body-size": "1m"}
        ),
    ),
    "not indexed": ("k8s/bulk", check_bulk_job, lambda o: _bulk(o).update(completionMode="NonIndexed")),
    "shard count disagrees": ("k8s/bulk", check_bulk_job, lambda o: _bulk(o).update(parallelism=8)),
    "bulk writes models": (
        "k8s/bulk",
        check_bulk_job,
        lambda o: _set_mount_readonly(_bulk(o)["template"]["spec"], "cgan-models", False),
    ),
}


@pytest.mark.parametrize("breakage", BREAKAGES)
def test_checks_catch_broken_manifests(breakage):
    kustomization, check, breaks = BREAKAGES[breakage]
    objs = render(kustomization)
    assert check(copy.deepcopy(objs)) == [], "the check must pass before the breakage"
    breaks(objs)
    assert check(objs), f"{check.__name__} did not notice: {breakage}"


# The same for the sources the images come from: a second place that sets a registry or a tag.
SOURCE_BREAKAGES: dict[str, Callable[[dict[str, list[Obj]]], None]] = {
    "an overlay sets images:": lambda s: s["k8s/overlays/prod/kustomization.yaml"][0].update(
        images=[{"name": "cgan-synth/service", "newTag": "0.2.0"}]
    ),
    "a manifest names a registry": lambda s: s["k8s/bulk/bulk-job.yaml"][0]["spec"]["template"]["spec"][
        "containers"
    ][0].update(image="registry.example.com/cgan-synth/service:0.1.0"),
}


@pytest.mark.parametrize("breakage", SOURCE_BREAKAGES)
def test_image_source_check_catches(breakage):
    sources = deploy_sources()
    assert check_image_sources(copy.deepcopy(sources)) == []
    SOURCE_BREAKAGES[breakage](sources)
    assert check_image_sources(sources), f"check_image_sources did not notice: {breakage}"


# --- the README says what the manifests say -------------------------------------------------------------


def readme_facts(text: str) -> dict[str, str]:
    """The figures the README's Kubernetes section quotes: the serving pods' CPU and memory, the bulk Job's
    model. Each is found by the sentence that states it, so a reworded sentence fails loudly, not silently."""
    sizing = re.search(
        r"Each pod requests and is limited to (\S+) CPUs.*?(\S+) of memory, limited to (\S+)\.", text, re.S
    )
    bulk = re.search(r"`cgan-bulk\s+--shards=\d+\s+--models-dir=/models\s+--model=(\S+?)\s", text)
    assert sizing and bulk, "README.md no longer states the pods' sizing or the bulk Job's command"
    return {"cpu": sizing[1], "memory_request": sizing[2], "memory_limit": sizing[3], "bulk_model": bulk[1]}


def manifest_facts() -> dict[str, str]:
    _, _, container = serve(render("k8s/overlays/prod"))
    resources = container["resources"]
    assert resources["requests"]["cpu"] == resources["limits"]["cpu"]
    (job,) = [obj for obj in render("k8s/bulk") if obj["kind"] == "Job"]
    (bulk,) = job["spec"]["template"]["spec"]["containers"]
    return {
        "cpu": str(resources["limits"]["cpu"]),
        "memory_request": resources["requests"]["memory"],
        "memory_limit": resources["limits"]["memory"],
        "bulk_model": flag(bulk, "--model"),
    }


def test_readme_quotes_the_manifests() -> None:
    assert readme_facts((ROOT / "README.md").read_text()) == manifest_facts()


def test_readme_check_can_fail() -> None:
    text = (ROOT / "README.md").read_text()
    assert readme_facts(text.replace("limited to 1Gi", "limited to 1.5Gi", 1)) != manifest_facts()
    assert readme_facts(text.replace("--model=mnist-5k-cgan-conv", "--model=mnist-5k", 1)) != manifest_facts()
