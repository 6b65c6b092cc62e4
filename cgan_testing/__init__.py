"""Dev-only helpers that tests/ and bench/ both import: tiny contract-conforming ONNX models and model
directories (:mod:`cgan_testing.fakes`), a real ``python -m service`` on a loopback port
(:mod:`cgan_testing.live_server`) and a real local Ray cluster (:mod:`cgan_testing.ray_cluster`).

Never shipped: pyproject.toml's ``packages.find`` leaves it out of the wheel, and neither image copies it
(tests/test_packaging.py checks both). It is importable from a checkout, where tests and bench run. Nothing
here imports TensorFlow.
"""
