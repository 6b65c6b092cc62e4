"""bench/load/peer_load.py's goals table (issue #30) from made-up rows: every form held to the raw model in
that form, both cores busy, and the default version against the peers' best at n=16, pass and miss alike."""

from __future__ import annotations

from bench.load.peer_load import Bench, parse_args


def _row(target: str, form: str, rps: float, n: int = 16, cpu: float | None = 190.0, p99: float = 10.0):
    return {"arch": "conv", "n": n, "target": target, "form": form, "rps": rps, "p99_ms": p99,
            "cpu_percent": cpu}  # fmt: skip


def _goals(rows: list[dict]) -> dict[str, list]:
    bench = Bench(parse_args(["--n", "16"]))
    bench.rows, bench.meta = rows, {"cpus_affinity": 2}
    return {g[0]: g[1:] for g in bench.goals()}


def test_each_form_is_held_to_the_raw_model_in_that_form_and_grpc_to_the_binary_one():
    rows = [
        _row("raw", "png", 100.0),
        _row("raw", "npy", 200.0),
        _row("raw", "v2-binary", 400.0),
        _row("ours", "png", 96.0),
        _row("ours", "npy", 180.0),
        _row("ours", "v2-binary", 380.0, cpu=120.0),
        _row("ours", "v2-grpc", 390.0),
    ]
    goals = _goals(rows)
    assert goals["conv n=16: ours png vs the raw model in that form"] == ["0.96x", ">= 0.95x", "pass"]
    assert goals["conv n=16: ours npy vs the raw model in that form"] == ["0.90x", ">= 0.95x", "miss"]
    assert goals["conv n=16: ours v2-grpc vs the raw model in that form"] == ["0.97x", ">= 0.95x", "pass"]
    # No raw v2-json row, no ours v2-json row: nothing claimed either way.
    assert not any("v2-json" in g for g in goals)
    busy = goals["conv n=16: ours v2-binary, server CPU (2 cores)"]
    assert busy == ["120% (60% of all)", ">= 70% of all", "miss"]
    assert goals["conv n=16: ours png, server CPU (2 cores)"][2] == "pass"


def test_the_default_version_must_beat_each_peers_best_config_with_a_lower_p99():
    rows = [
        _row("ours", "v2-binary", 900.0, p99=20.0),
        _row("ours", "npy", 1000.0, p99=40.0),
        _row("kserve-docs", "v2-json", 100.0, p99=90.0),
        _row("kserve-best", "v2-binary", 450.0, p99=30.0),
        _row("bentoml-best", "bento-npy", 400.0, p99=35.0),
    ]
    goals = {k.split(" (p99")[0]: v for k, v in _goals(rows).items()}
    kserve = goals["conv n=16: ours v2-binary (default version) vs kserve-best v2-binary (FP32) images/s"]
    assert kserve == ["2.00x", ">= 1.8x, lower p99", "pass"]
    # 2.5x the rate, but a higher p99 than BentoML's: a miss.
    bentoml = goals["conv n=16: ours npy (default version) vs bentoml-best bento-npy (FP32) images/s"]
    assert bentoml == ["2.50x", ">= 2.5x, lower p99", "miss"]
