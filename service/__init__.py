"""The service: exported generators over HTTP with onnxruntime; it never imports TensorFlow or the trainer.

Data flows one way: MODELS_DIR -> :mod:`.models` (load, verify, warm; the registry scans and swaps) ->
:mod:`.dataplane` (the one "images for a request" path, from the domain requests of :mod:`.requests`) ->
:mod:`.routes` (thin HTTP; the schemas build the requests) -> the encoders of :mod:`.formats`
(:mod:`.imaging`, :mod:`.archives`). :mod:`.app` puts the app together with :mod:`.http` (middleware,
errors, schemas, OpenAPI); :mod:`.runtime` holds what the lifespan starts; :mod:`.errors` the refusals.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cgan-synth")
except PackageNotFoundError:  # running from a source checkout
    __version__ = "0.0.0+local"
