"""Evaluation of exported generators (``cgan-train evaluate``), TF-GAN style: its own package.

Everything runs on the exported ``model.onnx`` through onnxruntime, i.e. on exactly what the service serves.
With ``n = samples_per_class`` images generated per class (image ``i`` uses noise seed ``seed + i``, the
contract's rule) and a judge CNN trained on the dataset's real training split (:mod:`.judge`):

* **label accuracy**: the judge's prediction vs the requested label, over all generated images and per class.
* **FID** (classifier-feature Fréchet distance, *not* Inception FID): Fréchet distance between Gaussians
  fitted to the judge's penultimate-layer features of a *matched* generated set and of the whole real test
  split. **FID floor**: the same distance from a *matched* set of real training images to the same test
  split, i.e. the score of a generator that reproduces its training data. The matched sets hold
  ``m_c = min(n, real training images of class c)`` images of each class c (generated and real alike), so
  both distances have the same sample sizes and class mix and the same finite-sample bias.
  ``fid_ratio = fid / fid_floor``: 1 is as good as the training data itself.
* **KID** (:mod:`.kid`, Binkowski et al. 2018: unbiased MMD^2 with the cubic polynomial kernel) in the same
  features, and **FID at matched sizes**: score (generated vs real test) and floor (real train vs real
  test) on sets cut to the same count of each class on every side, the smallest of the three (a seeded
  choice; the same test images for both). FID's bias depends on the sample sizes, so ``fid_ratio`` of
  models evaluated at different sizes does not compare; KID has no such bias. ``fid``/``fid_floor`` keep
  their first meaning above; the matched figures are ``fid_matched``, ``kid`` and the like.
* **intervals** (:mod:`.intervals`): 95% percentile bootstrap intervals of every FID and KID figure and
  their ratios (rows resampled within each class, ``bootstrap_resamples`` times, seeded; the features are
  computed once, so it costs seconds), and the rule :func:`.intervals.clears` for "one figure beats another".
* **GAN-train vs real-train**: a fresh small CNN (:data:`.judge.PROBE_CONFIG`, fixed epochs and seed) trained
  only on the matched generated set, accuracy on the real test split; next to the same CNN trained
  the same way on the matched real training set (same size, same per-class counts). For mnist-5k at
  ``n >= 450`` that is all 4,500 real training digits vs 4,500 generated ones. Both are the mean over
  ``probe_runs`` probe seeds: one probe's accuracy moves by about a point from seed to seed on mnist-5k's
  500 test digits, as much as the gap being measured.
* **diversity**: per class, mean pairwise Euclidean distance between judge features of generated images
  (at most :data:`.scores.DIVERSITY_MAX_PER_CLASS` of them) divided by the same for the real test images of
  that class. ``diversity_ratio`` is the minimum over classes; ``mode_collapse`` is set when it falls below
  ``collapse_threshold`` (default :data:`.scores.COLLAPSE_THRESHOLD`). The pixel-space ratio is recorded too.
* **precision, recall, density, coverage** (Kynkäänniemi et al. 2019; Naeem et al. 2020): k-NN balls
  (k = :data:`.scores.PRDC_K`) around judge features of the matched generated and matched real training
  sets, overall and per class. Precision/density say whether generated images look real (fidelity),
  recall/coverage whether they span the real variety (diversity): which of the two a FID gap is.
* **augmentation value** (:mod:`.augmentation`): the probe trained on the whole real training split alone,
  and on it plus 1x and 2x as many generated images (per class), tested on the real test split, mean of
  ``probe_runs`` seeds each. It costs 3 x ``probe_runs`` probe trainings on up to 3x the real data, so
  ``augmentation=False`` (``--no-augmentation``) skips it; its seconds are recorded apart.
* **worth in real images** (:mod:`.worth`, ``worth=True`` / ``--worth``, off by default): GAN-train for
  generated sets 1x, 2x, 5x and 10x the real training split against a real learning curve (the probe on
  10%, 20%, ... of the split), and the real images each generated set is worth, read off that curve.

* **style codes** (a generator with a ``codes`` input, InfoGAN): each code swept over its range with all else
  fixed, the Spearman correlation with shape properties measured on the pixels (:mod:`.properties`:
  slant, ink area, stroke width, centre of mass), median over the sweeps; written onto the card's
  ``codes`` (a code that tracks one property strongly is named after it) with a traversal figure each
  (:mod:`.code_sweeps`).

Modules: :mod:`.pipeline` runs the steps, :mod:`.scores` holds the quality scores as pure functions,
:mod:`.judge` the classifiers, :mod:`.augmentation` the augmentation-value bookkeeping, :mod:`.code_sweeps`
the style codes' sweeps, :mod:`.kid`, :mod:`.intervals` and :mod:`.worth` the figures above,
:mod:`.report` writes the card's ``quality`` section and ``quality.md``,
:mod:`.judge_export` puts the judge beside the generator (``judge.onnx``) for the service's
``min_confidence``.
"""

from trainer.evaluation.augmentation import AUGMENTATION_MULTIPLES, augmentation_value, synthetic_counts
from trainer.evaluation.intervals import BOOTSTRAP_RESAMPLES, bootstrap, clears, distance_figures, spread
from trainer.evaluation.kid import kid
from trainer.evaluation.pipeline import EvalOptions, EvaluateError, evaluate, export_judge_only, sample
from trainer.evaluation.report import QUALITY_REPORT, render_report, write_quality
from trainer.evaluation.scores import (
    COLLAPSE_THRESHOLD,
    DIVERSITY_MAX_PER_CLASS,
    PRDC_K,
    PRDCScore,
    diversity,
    frechet_distance,
    frechet_distance_from_stats,
    gaussian_stats,
    label_accuracy,
    matched_counts,
    mean_pairwise_distance,
    mode_collapse,
    per_class_accuracy,
    prdc,
    prdc_per_class,
    take_per_class,
)
from trainer.evaluation.worth import WORTH_FRACTIONS, WORTH_MULTIPLES, equivalent_real, worth_in_real_images

__all__ = [
    "AUGMENTATION_MULTIPLES",
    "BOOTSTRAP_RESAMPLES",
    "COLLAPSE_THRESHOLD",
    "DIVERSITY_MAX_PER_CLASS",
    "PRDC_K",
    "QUALITY_REPORT",
    "WORTH_FRACTIONS",
    "WORTH_MULTIPLES",
    "EvalOptions",
    "EvaluateError",
    "PRDCScore",
    "augmentation_value",
    "bootstrap",
    "clears",
    "distance_figures",
    "diversity",
    "equivalent_real",
    "evaluate",
    "export_judge_only",
    "frechet_distance",
    "frechet_distance_from_stats",
    "gaussian_stats",
    "kid",
    "label_accuracy",
    "matched_counts",
    "mean_pairwise_distance",
    "mode_collapse",
    "per_class_accuracy",
    "prdc",
    "prdc_per_class",
    "render_report",
    "sample",
    "spread",
    "synthetic_counts",
    "take_per_class",
    "worth_in_real_images",
    "write_quality",
]
