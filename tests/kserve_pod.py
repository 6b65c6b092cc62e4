"""What KServe makes of an InferenceService's predictor in its Standard deployment mode, offline: the pod it
runs and the labels it puts on it, so the checks written for our Deployment's pod (tests/k8s.py) read the
pod KServe would run, not the two objects it is made from.

Follows KServe v0.20 (the schemas in tests/schemas): ``buildPodSpec`` / ``MergeServingRuntimeAndInference
ServiceSpecs`` (pkg/controller/v1beta1/inferenceservice/components/predictor.go, .../utils/utils.go) merge the
model's container fields over the runtime's ``kserve-container`` and the predictor's pod fields over the
runtime's; the storage injector (pkg/webhook/admission/pod/storage_initializer_injector.go) mounts a
``pvc://claim[/path]`` storageUri straight into that container at /mnt/models, read-only unless the
annotation ``storage.kserve.io/readonly`` is "false". The merges are simplified (later fields win, env and
volumes merge by name, args add up) to what our manifests use.
"""

from __future__ import annotations

import copy
from typing import Any

Obj = dict[str, Any]

#: The runtime container the model's fields and the storage mount go to
#: (constants.InferenceServiceContainerName).
CONTAINER = "kserve-container"
#: Where KServe mounts the storageUri (constants.DefaultModelLocalMountPath).
MODELS_MOUNT = "/mnt/models"
#: The pod volume a pvc:// storageUri becomes (constants.PvcSourceMountName).
PVC_VOLUME = "kserve-pvc-source"
READONLY_ANNOTATION = "storage.kserve.io/readonly"
#: Model fields that pick and feed the runtime; the rest of ``model`` is a container patch.
_MODEL_FIELDS = {"modelFormat", "runtime", "runtimeVersion", "protocolVersion", "storageUri", "storage"}
_RUNTIME_KINDS = ("ServingRuntime", "ClusterServingRuntime")


def runtime_of(objs: list[Obj], isvc: Obj) -> Obj | None:
    """The rendered (Cluster)ServingRuntime the predictor's model names; a namespaced one wins (KServe's
    GetServingRuntime)."""
    name = isvc["spec"]["predictor"].get("model", {}).get("runtime")
    for kind in _RUNTIME_KINDS:
        for o in objs:
            if o["kind"] == kind and o["metadata"]["name"] == name:
                return o
    return None


def parse_pvc_uri(uri: str) -> tuple[str, str] | None:
    """(claim, path in it) of a ``pvc://`` URI (utils.ParsePvcURI), else None."""
    if not uri.startswith("pvc://"):
        return None
    claim, _, path = uri.removeprefix("pvc://").partition("/")
    return claim, path


def predictor_labels(isvc: Obj, runtime: Obj) -> Obj:
    """The predictor pod's labels: runtime < InferenceService < predictor, then KServe's own."""
    name = isvc["metadata"]["name"]
    return {
        **runtime["spec"].get("labels", {}),
        **isvc["metadata"].get("labels", {}),
        **isvc["spec"]["predictor"].get("labels", {}),
        "serving.kserve.io/inferenceservice": name,
        "component": "predictor",
        "app": f"isvc.{name}-predictor",
    }


def predictor_pod(isvc: Obj, runtime: Obj) -> Obj:
    """The predictor's pod spec (the predictor's extension fields, e.g. minReplicas, are left in: harmless to
    the checks and not worth a list of KServe's field names)."""
    predictor = isvc["spec"]["predictor"]
    model = predictor.get("model", {})
    pod = {k: copy.deepcopy(v) for k, v in predictor.items() if k != "model"}
    pod["volumes"] = _by_name(runtime["spec"].get("volumes", []), predictor.get("volumes", []))
    pod["containers"] = []
    for container in copy.deepcopy(runtime["spec"]["containers"]):
        if container["name"] == CONTAINER:
            container = _merge_container(
                container, {k: v for k, v in model.items() if k not in _MODEL_FIELDS}
            )
            _mount_storage(isvc, model.get("storageUri", ""), pod, container)
        pod["containers"].append(container)
    pod["containers"] += copy.deepcopy(predictor.get("containers", []))
    return pod


def _merge_container(base: Obj, patch: Obj) -> Obj:
    merged = {**base, **patch}
    if "env" in patch:
        merged["env"] = _by_name(base.get("env", []), patch["env"])
    if "args" in patch:  # KServe appends the model's args to the runtime's
        merged["args"] = base.get("args", []) + patch["args"]
    return merged


def _mount_storage(isvc: Obj, uri: str, pod: Obj, container: Obj) -> None:
    pvc = parse_pvc_uri(uri)
    if pvc is None:
        return  # other URIs are downloaded by an init container into an emptyDir: not what we run
    claim, path = pvc
    annotations = {
        **isvc["metadata"].get("annotations", {}),
        **isvc["spec"]["predictor"].get("annotations", {}),
    }
    mount = {
        "name": PVC_VOLUME,
        "mountPath": MODELS_MOUNT,
        "readOnly": annotations.get(READONLY_ANNOTATION) != "false",
    }
    if path:
        mount["subPath"] = path
    container["volumeMounts"] = [*container.get("volumeMounts", []), mount]
    pod["volumes"].append({"name": PVC_VOLUME, "persistentVolumeClaim": {"claimName": claim}})


def _by_name(base: list[Obj], patch: list[Obj]) -> list[Obj]:
    merged = {item["name"]: item for item in base}
    merged.update({item["name"]: item for item in patch})
    return list(merged.values())
