"""Monitoring (deploy/monitoring): the PodMonitor, Prometheus' NetworkPolicy and the Grafana dashboard.

The manifests: rendered with the Deployment (k8s/overlays/platform) and with KServe (deploy/kserve plus the
component, as an operator's own kustomization includes it), Prometheus must scrape each API pod once, on the
app's open metrics route, and be let in (``check_monitoring``). The dashboard: every query must name series
the service really exports, with labels those series (or the scrape) carry, through PromQL functions that
exist; and every metric family the service exports must be on it. What the service exports is read from the
service itself: an app over a tiny model is asked a few requests (one of each outcome the metrics count)
and its ``/metrics`` is parsed.

As in tests/test_k8s.py, each check is broken once on purpose below and must notice.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator

import pytest

from tests.k8s import (
    DEPLOY,
    KUBECTL,
    Obj,
    check_custom_resources,
    check_monitoring,
    check_pod_security,
    compose,
    find,
    one,
    render,
)

pytestmark = pytest.mark.skipif(
    KUBECTL is None, reason="kubectl is not installed: the Kubernetes manifests cannot be rendered"
)

DASHBOARD = DEPLOY / "monitoring" / "grafana-dashboard.json"
PLATFORM = "k8s/overlays/platform"

#: Labels a series gets from the scrape, not from the service: Prometheus' ``job`` and ``instance``, and
#: the target labels the Prometheus Operator adds for a PodMonitor (namespace, pod, container, endpoint).
TARGET_LABELS = {"job", "instance", "namespace", "pod", "container", "endpoint"}
#: PromQL's aggregation operators and functions (Prometheus 3), for catching misspelt ones.
AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk"}
AGGREGATIONS |= {"topk", "quantile", "limitk", "limit_ratio"}
# fmt: off
FUNCTIONS = AGGREGATIONS | {
    "abs", "absent", "absent_over_time", "avg_over_time", "ceil", "changes", "clamp", "clamp_max",
    "clamp_min", "count_over_time", "day_of_month", "day_of_week", "day_of_year", "days_in_month", "delta",
    "deriv", "exp", "floor", "histogram_avg", "histogram_count", "histogram_fraction", "histogram_quantile",
    "histogram_stddev", "histogram_stdvar", "histogram_sum", "holt_winters", "hour", "idelta", "increase",
    "irate", "label_join", "label_replace", "last_over_time", "ln", "log10", "log2", "mad_over_time",
    "max_over_time", "min_over_time", "minute", "month", "predict_linear", "present_over_time",
    "quantile_over_time", "rate", "resets", "round", "scalar", "sgn", "sort", "sort_by_label",
    "sort_by_label_desc", "sort_desc", "sqrt", "stddev_over_time", "stdvar_over_time", "sum_over_time",
    "time", "timestamp", "vector", "year",
}
# fmt: on
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless"}
KEYWORDS |= {"offset", "atan2"}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{([^{}]*)\}")
_MATCHER_LABEL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_NAME = re.compile(r"(?<![\w.$])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")
_LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$", re.S)
_LEGEND = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def parse_promql(expr: str) -> tuple[set[str], set[str], set[str]]:
    """(metric names, label names, function names) a PromQL expression uses. A small lexer, not a parser:
    strings (where Grafana's $variables live) go first, then label matchers, ranges and grouping clauses;
    the names left are functions when a parenthesis follows, keywords, or metrics."""
    labels: set[str] = set()
    expr = _STRING.sub('""', expr)
    for matchers in _MATCHERS.findall(expr):
        labels |= set(_MATCHER_LABEL.findall(matchers))
    expr = _RANGE.sub("", _MATCHERS.sub(" ", expr))
    for grouping in _GROUPING.findall(expr):
        labels |= {name.strip() for name in grouping.split(",") if name.strip()}
    expr = _GROUPING.sub(" ", expr)
    metrics, functions = set(), set()
    for name, call in _NAME.findall(expr):
        if call:
            functions.add(name)
        elif name not in KEYWORDS:
            metrics.add(name)
    return metrics, labels, functions


def panels(dashboard: Obj) -> Iterator[Obj]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panels(panel)  # a collapsed row holds its panels


def queries(dashboard: Obj) -> Iterator[tuple[str, str, set[str]]]:
    """(where, PromQL, labels its legend uses) of every panel target and every query variable."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            legend = set(_LEGEND.findall(target.get("legendFormat", "")))
            yield f"panel {panel.get('title')!r} {target.get('refId')}", target.get("expr", ""), legend
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            query = var.get("query")
            query = query.get("query", "") if isinstance(query, dict) else query or ""
            found = _LABEL_VALUES.match(query)  # Grafana's label_values(metric, label)
            if found:
                yield f"variable {var['name']!r}", found.group(1), {found.group(2)}
            else:
                yield f"variable {var['name']!r}", query, set()


def check_dashboard(dashboard: Obj, exported: dict[str, dict[str, set[str]]]) -> list[str]:
    """Every query names series the service exports (``exported``: family -> series -> label names), by
    labels they have, through real functions; every panel has a query; every family is shown somewhere."""
    problems = []
    series = {name: labels for family in exported.values() for name, labels in family.items()}
    for panel in panels(dashboard):
        if panel.get("type") != "row" and not any(t.get("expr") for t in panel.get("targets", [])):
            problems.append(f"panel {panel.get('title')!r} has no query")
    shown: set[str] = set()
    for where, expr, legend in queries(dashboard):
        metrics, labels, functions = parse_promql(expr)
        shown |= metrics
        if not metrics:
            problems.append(f"{where}: names no metric: {expr!r}")
        if unknown := metrics - series.keys():
            problems.append(f"{where}: {sorted(unknown)} not exported by the service: {expr!r}")
        if bad := functions - FUNCTIONS:
            problems.append(f"{where}: {sorted(bad)} are not PromQL functions: {expr!r}")
        carried = TARGET_LABELS | {"__name__"} | {lab for m in metrics & series.keys() for lab in series[m]}
        if bad := (labels | legend) - carried:
            problems.append(f"{where}: labels {sorted(bad)} are on none of {sorted(metrics)}: {expr!r}")
    for family, names in exported.items():
        if not names.keys() & shown:
            problems.append(f"the service exports {family} ({sorted(names)}), which no panel shows")
    return problems


def load_dashboard() -> Obj:
    return json.loads(DASHBOARD.read_text())


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, set[str]]]:
    """family -> series name -> label names, from the service's own /metrics after one request of each
    kind the metrics count: a generation, an oversized body (refused), a broken model version (refused)."""
    from fastapi.testclient import TestClient
    from prometheus_client.parser import text_string_to_metric_families

    from cgan_testing.fakes import write_version
    from service.app import create_app
    from service.config import Settings

    models = tmp_path_factory.mktemp("metrics") / "models"
    models.mkdir()
    write_version(models, "digits", 1)
    write_version(models, "digits", 2, sha256="0" * 64)  # refused at load: cgan_model_load_refusals_total
    (models / "digits" / "²").mkdir()  # not a version name: cgan_model_scan_skips_total
    settings = Settings(models_dir=models, bundled_models=False, api_token=None, reload_interval=0)
    with pytest.MonkeyPatch.context() as env:
        env.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)  # this process's registry, not workers' files
        with TestClient(create_app(settings)) as client:
            assert client.post("/generate", json={"label": 0, "n": 2}).status_code == 200
            big = b"x" * (settings.max_body_bytes + 1)
            assert (
                client.post(
                    "/generate", content=big, headers={"content-type": "application/json"}
                ).status_code
                == 413
            )
            text = client.get("/metrics").text
    families: dict[str, dict[str, set[str]]] = {}
    for family in text_string_to_metric_families(text):
        names = families.setdefault(family.name, {})
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return families


def test_the_service_exports_what_the_dashboard_reads(exported):
    # The scrape saw every family with samples, so label checks have labels to compare against.
    assert exported and all(exported.values()), exported
    assert "cgan_http_request_duration_seconds_bucket" in exported["cgan_http_request_duration_seconds"]


def test_dashboard(exported):
    assert check_dashboard(load_dashboard(), exported) == []


def test_promql_lexer():
    metrics, labels, functions = parse_promql(
        'histogram_quantile(0.95, sum by (le, route) (rate(x_bucket{namespace="$ns", status=~"[45].."}'
        "[$__rate_interval]))) / on (route) group_left sum(y_total offset 5m) > bool 1e3"
    )
    assert metrics == {"x_bucket", "y_total"}
    assert labels == {"le", "route", "namespace", "status"}
    assert functions == {"histogram_quantile", "sum", "rate"}


def test_platform_is_monitored():
    assert check_monitoring(render(PLATFORM)) == []


def test_kserve_is_monitored(tmp_path):
    objs = compose(tmp_path, ["kserve"], ["monitoring"])
    assert check_monitoring(objs) == []
    assert check_custom_resources(objs) == [] and check_pod_security(objs) == []


def test_the_configmap_is_the_dashboard_file():
    cm = one(render(PLATFORM), "ConfigMap", "cgan-synth-grafana-dashboard")
    assert cm["data"] == {"cgan-synth.json": DASHBOARD.read_text()}


def _query(dashboard: Obj, title: str) -> Obj:
    return next(p for p in panels(dashboard) if p.get("title") == title)["targets"][0]


def _rename(title: str, old: str, new: str) -> Callable[[Obj], None]:
    def breaks(dashboard: Obj) -> None:
        target = _query(dashboard, title)
        assert old in target["expr"]
        target["expr"] = target["expr"].replace(old, new)

    return breaks


def _drop_panel(title: str) -> Callable[[Obj], None]:
    def breaks(dashboard: Obj) -> None:
        dashboard["panels"] = [p for p in dashboard["panels"] if p.get("title") != title]

    return breaks


# One way to break the dashboard per rule: each must be noticed.
DASHBOARD_BREAKAGES: dict[str, Callable[[Obj], None]] = {
    "counter without _total": _rename(
        "Requests/s by route", "cgan_http_requests_total", "cgan_http_requests"
    ),
    "histogram without _bucket": _rename(
        "Latency p50 / p95 / p99 by route", "duration_seconds_bucket", "duration_seconds"
    ),
    "a metric the service lacks": _rename(
        "Images/s by model", "cgan_images_generated_total", "cgan_images_total"
    ),
    "a label the metric lacks": _rename("Requests/s by route", "by (route)", "by (path)"),
    "a misspelt function": _rename("Images/s by model", "rate(", "rates("),
    "a legend label nobody has": lambda d: _query(d, "In flight by pod").update(legendFormat="{{node}}"),
    "a variable over a missing metric": lambda d: d["templating"]["list"][1]["query"].update(
        query="label_values(cgan_up, namespace)"
    ),
    "a panel without a query": lambda d: _query(d, "Ready pods").update(expr=""),
    "a family nobody shows": _drop_panel("Model load refusals (1h)"),
}


@pytest.mark.parametrize("breakage", DASHBOARD_BREAKAGES)
def test_dashboard_check_catches(breakage, exported):
    dashboard = load_dashboard()
    assert check_dashboard(copy.deepcopy(dashboard), exported) == []
    DASHBOARD_BREAKAGES[breakage](dashboard)
    assert check_dashboard(dashboard, exported), f"check_dashboard did not notice: {breakage}"


def _monitor(objs: list[Obj]) -> Obj:
    return one(objs, "PodMonitor", "cgan-serve")["spec"]


# One way to break the rendered monitoring objects per check: each must be noticed.
BREAKAGES: dict[str, tuple[Callable[[list[Obj]], list[str]], Callable[[list[Obj]], None]]] = {
    "misspelt PodMonitor field": (
        check_custom_resources,
        lambda o: _monitor(o).update(podMetricEndpoints=_monitor(o).pop("podMetricsEndpoints")),
    ),
    "scheme not in the enum": (
        check_custom_resources,
        lambda o: _monitor(o)["podMetricsEndpoints"][0].update(scheme="h2c"),
    ),
    "wrong port": (check_monitoring, lambda o: _monitor(o)["podMetricsEndpoints"][0].update(port="h2c")),
    "wrong path": (check_monitoring, lambda o: _monitor(o)["podMetricsEndpoints"][0].update(path="/metric")),
    "selects nothing": (
        check_monitoring,
        lambda o: _monitor(o)["selector"]["matchLabels"].update({"app.kubernetes.io/component": "api"}),
    ),
    "scraped twice": (
        check_monitoring,
        lambda o: o.append(
            {
                "apiVersion": "monitoring.coreos.com/v1",
                "kind": "ServiceMonitor",
                "metadata": {"name": "cgan-serve"},
                "spec": {
                    "selector": {"matchLabels": {"app.kubernetes.io/component": "serve"}},
                    "endpoints": [{"port": "http"}],
                },
            }
        ),
    ),
    "Prometheus kept out": (
        check_monitoring,
        lambda o: o.remove(one(o, "NetworkPolicy", "cgan-serve-metrics")),
    ),
    "Prometheus admitted elsewhere": (
        check_monitoring,
        lambda o: one(o, "NetworkPolicy", "cgan-serve-metrics")["spec"]["ingress"][0]["ports"][0].update(
            port=9090
        ),
    ),
    "dashboard unlabelled": (
        check_monitoring,
        lambda o: one(o, "ConfigMap", "cgan-synth-grafana-dashboard")["metadata"]["labels"].pop(
            "grafana_dashboard"
        ),
    ),
}


@pytest.mark.parametrize("breakage", BREAKAGES)
def test_checks_catch_broken_monitoring(breakage):
    check, breaks = BREAKAGES[breakage]
    objs = render(PLATFORM)
    assert check(copy.deepcopy(objs)) == [], "the check must pass before the breakage"
    breaks(objs)
    assert check(objs), f"{check.__name__} did not notice: {breakage}"


def test_monitoring_is_opt_in():
    # prod must apply on a cluster without the Prometheus Operator's CRDs.
    assert not find(render("k8s/overlays/prod"), "PodMonitor")
