"""Generated: the Open Inference Protocol's gRPC messages and service stubs (``*_pb2*.py``, ``*.pyi``) from
the ``.proto`` files beside them, by scripts/grpc-stubs. Never edit them by hand; change the ``.proto``
files and run the script (tests/service/test_grpc_stubs.py checks they agree)."""
