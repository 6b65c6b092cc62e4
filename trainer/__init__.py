"""The trainer: fits conditional GANs with TensorFlow/Keras and exports generators to ONNX for the service.

It shares only :mod:`cgan_contract` with the service and never imports it. Data flows one way:
:mod:`.data` -> :mod:`.train` (variants built from :mod:`.nets`) -> :mod:`.export` -> MODELS_DIR, and
:mod:`.evaluation` reads what was exported. :mod:`.cli` and :mod:`.config` stay TF-free, so ``--help`` is
quick.
"""
