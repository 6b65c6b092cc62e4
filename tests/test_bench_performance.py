"""bench/load/performance.py's summary: each goal of issue #19 read from the saved results, pass and miss
alike."""

from __future__ import annotations

from bench.load.performance import gate_goals, kernel_goals, training_goals
from cgan_testing.fakes import write_version
from tests.test_quality_table import quality


def _kernel(model: str, variant: str, gflops: float, pct: float) -> dict:
    return {"model": model, "variant": variant, "gflops": gflops, "pct_gemm": pct, "best_batch": 16}


def test_kernel_goals_hold_fp32_to_70_percent_of_gemm_and_int8_to_twice_fp32():
    saved = {
        "rows": [
            _kernel("conv", "fp32 exported", 100.0, 33.0),
            _kernel("conv", "fp32 rewritten", 150.0, 50.0),
            _kernel("conv", "int8", 270.0, 90.0),
            _kernel("dense", "fp32 exported", 300.0, 100.0),
            _kernel("dense", "fp32 rewritten", 300.0, 100.0),
            _kernel("dense", "int8", 900.0, 300.0),
        ]
    }
    goals = kernel_goals(saved)
    assert [(g[1], g[3]) for g in goals] == [
        ("50% of GEMM", "miss"),
        ("1.80x FP32 (90% of GEMM)", "miss"),
        ("100% of GEMM", "pass"),
        ("3.00x FP32 (300% of GEMM)", "pass"),
    ]


def test_training_goal_compares_the_default_with_the_baseline_row():
    rows = [
        {"code": "abc (before)", "images_per_s": 800.0},
        {"code": "this tree, float32", "images_per_s": 1000.0},
        {"code": "this tree, default", "images_per_s": 1240.0},
    ]
    assert training_goals({"conv": rows})[0][1:] == ["1.55x", ">= 1.5x", "pass"]
    rows[2]["images_per_s"] = 1100.0
    assert training_goals({"conv": rows})[0][1:] == ["1.38x", ">= 1.5x", "miss"]
    # Without the baseline revision (not a git checkout) there is nothing to compare with.
    assert training_goals({"conv": rows[1:]})[0][3] == "not measured"


def test_gate_goals_read_the_int8_card_and_its_fp32_source(tmp_path):
    fp32 = quality(0.998)
    int8 = fp32.model_copy(update={"label_accuracy": 0.990, "fid_ratio": 1.8, "gan_train_accuracy": 0.948})
    write_version(tmp_path, "digits", 1, quality=fp32)
    version = write_version(tmp_path, "digits", 2, quality=int8, precision="int8", quantized_from=1)
    goals = {g[0].split(": ")[1].split(" ")[0]: g for g in gate_goals(version)}
    assert goals["label"][1:] == ["-0.80 point", "-0.5 point at most", "miss"]
    assert goals["FID"][1:] == ["+20.00 %", "+10 % at most", "miss"]
    assert goals["GAN-train"][1:] == ["-0.20 point", "-0.5 point at most", "pass"]
