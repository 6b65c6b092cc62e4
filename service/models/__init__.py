"""The models the service serves: one loaded version (:mod:`.loaded`), reading, verifying and warming one
version (:mod:`.loader`, what ``cgan-bulk`` uses too), listing the model roots (:mod:`.listing`), filesystem
calls with a time limit (:mod:`.bounded`), and the registry that keeps the served set in line with
MODELS_DIR and the bundle (:mod:`.registry`: scan, swap, default)."""

from service.models.loaded import LoadedModel
from service.models.loader import Loader, ModelRefused
from service.models.registry import ModelRegistry

__all__ = ["LoadedModel", "Loader", "ModelRefused", "ModelRegistry"]
