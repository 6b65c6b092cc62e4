"""The servers ours is measured against, each serving the same work (``n`` images of a label from a seed, by
the contract's seed rule); ``bench/load/peer_load.py`` and ``bench/load/service_load.py`` drive them.

* ``kserve_app``, ``bentoml_app``: model servers a user would pick instead of ours, on the same ONNX
  generator; they run in their own virtual environments (their pins clash with ours), never imported by the
  tests.
* ``naive_app``: what a user would write without this service (FastAPI + the Keras generator + Pillow).
* ``floor_app``: the cheapest FastAPI ``POST /generate`` there is (a constant PNG), a reference line.
"""
