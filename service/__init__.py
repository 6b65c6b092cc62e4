"""The service: exported generators over HTTP with onnxruntime; it never imports TensorFlow or the trainer.

Data flows one way: MODELS_DIR -> :mod:`.registry` (load, verify, warm, swap) -> :mod:`.dataplane` (the one
"images for a request" path) -> :mod:`.routes` (thin HTTP) -> :mod:`.imaging` / :mod:`.archives` encoders.
:mod:`.app` puts the app together with :mod:`.http` (middleware, errors, OpenAPI); :mod:`.runtime` holds
what the lifespan starts.
"""
