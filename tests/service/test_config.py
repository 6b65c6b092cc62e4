"""Settings come from the environment; importing the app module loads nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from service.config import Settings, available_cores

REPO = Path(__file__).resolve().parents[2]


def test_settings_read_the_documented_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env = {
        "MODELS_DIR": str(tmp_path),
        "DEFAULT_MODEL": "digits",
        "MAX_N": "64",
        "MAX_PER_LABEL": "5",
        "MAX_BODY_BYTES": "4096",
        "MAX_CONCURRENCY": "3",
        "MAX_QUEUE": "0",
        "ORT_INTRA_OP_THREADS": "2",
        "API_TOKEN": "t0ken",
        "LOG_LEVEL": "DEBUG",
        "RELOAD_INTERVAL": "0.5",
        "SHUTDOWN_GRACE_SECONDS": "3",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.models_dir == tmp_path and settings.default_model == "digits"
    assert (settings.max_n, settings.max_per_label, settings.max_body_bytes) == (64, 5, 4096)
    assert (settings.max_concurrency, settings.max_queue, settings.intra_op_threads) == (3, 0, 2)
    assert settings.api_token is not None and settings.api_token.get_secret_value() == "t0ken"
    assert "t0ken" not in repr(settings)
    assert (settings.log_level, settings.reload_interval, settings.shutdown_grace_seconds) == (
        "debug",
        0.5,
        3,
    )


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MAX_N", "API_TOKEN", "ORT_INTRA_OP_THREADS", "MAX_CONCURRENCY", "DEFAULT_MODEL"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.max_n == 1024 and settings.api_token is None and settings.default_model is None
    assert settings.intra_op_threads == available_cores()
    assert settings.max_concurrency == 8 * available_cores()


@pytest.mark.parametrize(
    "name,value", [("MAX_N", "0"), ("DEFAULT_MODEL", "../etc"), ("LOG_LEVEL", "chatty"), ("MAX_QUEUE", "-1")]
)
def test_bad_settings_fail_at_startup(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=name.lower()):
        Settings()


def test_importing_the_app_module_builds_and_loads_nothing() -> None:
    code = (
        "import sys, service.app as m; "
        "assert m._app is None; "
        "assert 'tensorflow' not in sys.modules and not any(k.startswith('trainer') for k in sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, env={"PYTHONPATH": str(REPO)})


@pytest.mark.parametrize(
    "cpu_max,cap", [("max 100000\n", None), ("150000 100000\n", 2), ("50000 100000\n", 1)]
)
def test_cores_honour_a_cgroup_cpu_quota(tmp_path: Path, cpu_max: str, cap: int | None) -> None:
    quota = tmp_path / "cpu.max"
    quota.write_text(cpu_max)
    unlimited = available_cores(tmp_path / "absent")
    assert available_cores(quota) == (unlimited if cap is None else min(cap, unlimited))
