"""KServe (deploy/kserve): the ServingRuntime and the InferenceService validate against KServe's own CRD
schemas (tests/schemas, strict), and the pod KServe would make of them (tests/kserve_pod.py) passes the checks
the Deployment passes (tests/k8s.py): locked down, probes on the app's routes, the API token from a Secret,
the models mounted read-only where MODELS_DIR points, drains never cut short, HTTP and gRPC admitted to API
clients only, images from the one images: list. check_kserve adds what KServe itself needs of them.

As in tests/test_k8s.py, each check is broken once on purpose below and must notice.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest

from tests import kserve_pod
from tests.k8s import (
    KUBECTL,
    Obj,
    check_api_token,
    check_custom_resources,
    check_kserve,
    check_models_volume,
    check_pinned_images,
    check_pod_security,
    check_probes,
    check_released_images,
    check_rollout,
    check_service_routing,
    find,
    one,
    render,
    serve,
    validate_custom,
    workloads,
)

pytestmark = pytest.mark.skipif(
    KUBECTL is None, reason="kubectl is not installed: the Kubernetes manifests cannot be rendered"
)

KSERVE = "kserve"
CHECKS = [
    check_custom_resources,
    check_kserve,
    check_pod_security,
    check_probes,
    check_service_routing,
    check_api_token,
    check_models_volume,
    check_rollout,
    check_pinned_images,
    check_released_images,
]


@pytest.mark.parametrize("check", CHECKS)
def test_kserve(check):
    assert check(render(KSERVE)) == []


def test_kserve_replaces_the_deployment():
    objs = render(KSERVE)
    assert not find(objs, "Deployment") and not find(objs, "Service")
    assert {where for where, _ in workloads(objs)} == {"InferenceService/cgan-synth", "Job/cgan-trainer"}


def test_the_pod_gets_the_models_volume_as_kserve_mounts_it():
    _, pod, c = serve(render(KSERVE))
    assert c["name"] == kserve_pod.CONTAINER
    mount = next(m for m in c["volumeMounts"] if m["name"] == kserve_pod.PVC_VOLUME)
    assert mount == {"name": kserve_pod.PVC_VOLUME, "mountPath": "/mnt/models", "readOnly": True}
    volume = next(v for v in pod["volumes"] if v["name"] == kserve_pod.PVC_VOLUME)
    assert volume["persistentVolumeClaim"] == {"claimName": "cgan-models"}


def test_the_runtime_is_valid_cluster_scoped_too():
    runtime = one(render(KSERVE), "ServingRuntime", "cgan-synth")
    runtime["kind"] = "ClusterServingRuntime"
    del runtime["metadata"]["namespace"]
    assert validate_custom(runtime) == []


def test_schema_validation_is_strict():
    runtime = one(render(KSERVE), "ServingRuntime", "cgan-synth")
    runtime["spec"]["supportedModelFormat"] = runtime["spec"].pop("supportedModelFormats")
    assert any("supportedModelFormat" in p for p in validate_custom(runtime)), validate_custom(runtime)


def _isvc(objs: list[Obj]) -> Obj:
    return one(objs, "InferenceService", "cgan-synth")


def _predictor(objs: list[Obj]) -> Obj:
    return _isvc(objs)["spec"]["predictor"]


def _runtime(objs: list[Obj]) -> Obj:
    return one(objs, "ServingRuntime", "cgan-synth")["spec"]


def _container(objs: list[Obj]) -> Obj:
    return _runtime(objs)["containers"][0]


def _config(objs: list[Obj]) -> Obj:
    return next(o for o in find(objs, "ConfigMap") if o["metadata"]["name"].startswith("cgan-serve-config"))


def _extra_runtime(objs: list[Obj]) -> None:
    extra = copy.deepcopy(one(objs, "ServingRuntime", "cgan-synth"))
    extra["metadata"]["name"] = "cgan-synth-old"
    objs.append(extra)


# One way to break the rendered KServe objects per check: each must be noticed.
BREAKAGES: dict[str, tuple[Callable[[list[Obj]], list[str]], Callable[[list[Obj]], None]]] = {
    "misspelt runtime field": (
        check_custom_resources,
        lambda o: _runtime(o).update(protocolVersion=_runtime(o).pop("protocolVersions")),
    ),
    "misspelt storageUri": (
        check_custom_resources,
        lambda o: _predictor(o)["model"].update(storageURI=_predictor(o)["model"].pop("storageUri")),
    ),
    "replicas as a string": (check_custom_resources, lambda o: _predictor(o).update(minReplicas="two")),
    "misspelt metadata": (
        check_custom_resources,
        lambda o: _isvc(o)["metadata"].update(annotation=_isvc(o)["metadata"].pop("annotations")),
    ),
    "Knative mode": (
        check_kserve,
        lambda o: _isvc(o)["metadata"]["annotations"].update({"serving.kserve.io/deploymentMode": "Knative"}),
    ),
    "runtime misnamed": (check_kserve, lambda o: _predictor(o)["model"].update(runtime="cgan")),
    "a runtime nobody runs": (check_kserve, _extra_runtime),
    "disabled runtime": (check_kserve, lambda o: _runtime(o).update(disabled=True)),
    "model format the runtime lacks": (
        check_kserve,
        lambda o: _predictor(o)["model"].update(modelFormat={"name": "onnx", "version": "1"}),
    ),
    "protocol v1": (check_kserve, lambda o: _predictor(o)["model"].update(protocolVersion="v1")),
    "runtime without gRPC": (check_kserve, lambda o: _runtime(o).update(protocolVersions=["v2"])),
    "models downloaded": (
        check_kserve,
        lambda o: _predictor(o)["model"].update(storageUri="s3://models/cgan-synth"),
    ),
    "gRPC port first": (check_kserve, lambda o: _container(o)["ports"].reverse()),
    "gRPC port not named h2c": (check_kserve, lambda o: _container(o)["ports"][1].update(name="grpc-v2")),
    "one replica": (check_kserve, lambda o: _predictor(o).update(minReplicas=1)),
    "no PDB": (check_kserve, lambda o: o.remove(one(o, "PodDisruptionBudget", "cgan-serve"))),
    "writable root": (
        check_pod_security,
        lambda o: _container(o)["securityContext"].update(readOnlyRootFilesystem=False),
    ),
    "runtime runs as root": (
        check_pod_security,
        lambda o: _container(o)["securityContext"].update(runAsUser=0),
    ),
    "sa token": (check_pod_security, lambda o: _predictor(o).pop("automountServiceAccountToken")),
    "capability added": (
        check_pod_security,
        lambda o: _container(o)["securityContext"]["capabilities"].update(add=["NET_RAW"]),
    ),
    "no CPU limit": (check_pod_security, lambda o: _container(o)["resources"]["limits"].pop("cpu")),
    "readiness on /healthz": (
        check_probes,
        lambda o: _container(o)["readinessProbe"]["httpGet"].update(path="/healthz"),
    ),
    "pods the NetworkPolicy misses": (
        check_service_routing,
        lambda o: _runtime(o)["labels"].update({"app.kubernetes.io/component": "predictor"}),
    ),
    "literal token": (
        check_api_token,
        lambda o: _container(o)["env"].__setitem__(0, {"name": "API_TOKEN", "value": "s3cr3t"}),
    ),
    "writable models": (
        check_models_volume,
        lambda o: _isvc(o)["metadata"]["annotations"].update({kserve_pod.READONLY_ANNOTATION: "false"}),
    ),
    "MODELS_DIR not the mount": (
        check_models_volume,
        lambda o: _config(o)["data"].update(MODELS_DIR="/models"),
    ),
    "rollout drops a pod": (
        check_rollout,
        lambda o: _predictor(o)["deploymentStrategy"]["rollingUpdate"].update(maxUnavailable=1),
    ),
    "grace too short": (check_rollout, lambda o: _predictor(o).update(terminationGracePeriodSeconds=10)),
    "unpinned image": (
        check_pinned_images,
        lambda o: _container(o).update(image="cgan-synth/service:latest"),
    ),
    "image from elsewhere": (
        check_released_images,
        lambda o: _container(o).update(image="docker.io/someone/cgan-synth:0.1.0"),
    ),
}


@pytest.mark.parametrize("breakage", BREAKAGES)
def test_checks_catch_broken_kserve_objects(breakage):
    check, breaks = BREAKAGES[breakage]
    objs = render(KSERVE)
    assert check(copy.deepcopy(objs)) == [], "the check must pass before the breakage"
    breaks(objs)
    assert check(objs), f"{check.__name__} did not notice: {breakage}"
