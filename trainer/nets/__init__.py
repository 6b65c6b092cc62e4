"""Network pieces the variants share: layers and network bodies (``blocks``), pure loss functions on logits
(``losses``) and differentiable augmentation (``augment``). Variants compose these; nothing here knows about a
variant, a dataset or a file."""
