"""Schemathesis against the app's own OpenAPI schema: every generated request, valid or not, gets a
documented status and a response matching its declared schema; never a 5xx."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

TOKEN = "fuzz-token"

_REJECTIONS = ["400", "401", "403", "404", "405", "406", "409", "415", "422", "428", "429"]
CONFIG = schemathesis.config.SchemathesisConfig.from_dict(
    {
        # A valid token and a served model and version: without them every /v2/models/{name}... and
        # /v1/models/{name} call is a 401 or 404/422, and no success response is checked against its schema.
        "auth": {"openapi": {"bearerAuth": {"bearer": TOKEN}}},
        "parameters": {"name": "digits", "version": 1},
        "checks": {
            # A body over MAX_BODY_BYTES is rejected with 413 before it is parsed.
            "negative_data_rejection": {"expected-statuses": [*_REJECTIONS, "413"]},
            # Schema-valid is not always valid: a label must be one of the chosen model's classes, and
            # seed + n - 1 and per_label x labels have caps that JSON Schema cannot express. Those get 422;
            # a big-enough schema-valid labels list gets 413.
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "3xx", "401", "404", "413", "422", "429"]
            },
        },
    }
)


@pytest.fixture(scope="module")
def api_schema(
    tmp_path_factory: pytest.TempPathFactory, publish, make_app, generator_bytes: bytes, fashion_classes
):
    root: Path = tmp_path_factory.mktemp("fuzz") / "models"
    root.mkdir()
    publish(root, "digits", 1, onnx_bytes=generator_bytes)
    publish(root, "fashion", 1, onnx_bytes=generator_bytes, class_names=fashion_classes)
    # Small limits keep every valid request cheap; a token makes the auth checks meaningful.
    app = make_app(
        root,
        default_model="digits",
        api_token=TOKEN,
        max_n=64,
        max_per_label=8,
        max_dataset_images=64,
        max_queue=64,
    )
    return schemathesis.openapi.from_asgi("/openapi.json", app, config=CONFIG)


schema = schemathesis.pytest.from_fixture("api_schema")

#: (method path, status) -> count, written to test-artifacts/fuzz-statuses.json for the record.
SEEN: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def record_statuses():
    yield
    out = Path(__file__).resolve().parents[2] / "test-artifacts"
    out.mkdir(exist_ok=True)
    (out / "fuzz-statuses.json").write_text(json.dumps(dict(sorted(SEEN.items())), indent=1))


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case: schemathesis.Case) -> None:
    response = case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"})
    SEEN[f"{case.method} {case.path} {response.status_code}"] += 1
    assert response.status_code < 500


#: Success responses the fuzzing must have produced (and so validated against their schema).
MUST_SUCCEED = [
    "POST /generate",
    "POST /dataset",
    "GET /v1/models/{name}",
    "GET /v2/models/{name}",
    "GET /v2/models/{name}/versions/{version}/ready",
    "POST /v2/models/{name}/infer",
    "POST /v2/models/{name}/versions/{version}/infer",
]


def test_the_fuzzing_reached_every_success_path() -> None:
    # Runs after test_api_conforms_to_its_schema (file order): a route that only ever answered 401/404/422
    # had no success response checked against its schema.
    if not SEEN:
        pytest.skip("runs after test_api_conforms_to_its_schema")
    missing = [route for route in MUST_SUCCEED if not SEEN[f"{route} 200"]]
    assert not missing, f"no 200 from {missing}; seen: {dict(SEEN)}"
