"""What a run leaves for people to look at: sample grids, ``history.csv`` and ``curves.png``."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

import cgan_contract as contract
from trainer.files import atomic_path

SAMPLE_COLUMNS = 10


def sample_grid(
    generator,
    num_classes: int,
    latent_dim: int,
    seed: int,
    columns: int = SAMPLE_COLUMNS,
    code_ranges: list[tuple[float, float]] | None = None,
):
    """uint8 ``[rows*H, cols*W]``: row r is class r, column c uses the noise of seed + c in every row
    (and, for a generator with style codes, ``code_ranges`` given, that seed's codes too)."""
    z = contract.noise(seed, columns, latent_dim)
    z = np.tile(z, (num_classes, 1))
    labels = np.repeat(np.arange(num_classes, dtype=np.int32), columns)
    inputs = [z, labels]
    if code_ranges:  # the seed rule's codes, so a column matches /generate with that seed
        codes = contract.codes_for_seeds(contract.request_seeds(seed, columns), latent_dim, code_ranges)
        inputs.append(np.tile(codes, (num_classes, 1)))
    images = contract.to_uint8(np.asarray(generator(inputs, training=False)))[..., 0]
    h, w = images.shape[1:3]
    return (
        images.reshape(num_classes, columns, h, w).transpose(0, 2, 1, 3).reshape(num_classes * h, columns * w)
    )


def write_png(path: Path, pixels: np.ndarray, scale: int = 2) -> None:
    from PIL import Image

    image = Image.fromarray(pixels, mode="L")
    if scale > 1:
        image = image.resize((pixels.shape[1] * scale, pixels.shape[0] * scale), Image.NEAREST)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def write_history(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    columns = list(rows[0])
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def read_history(path: Path, up_to_step: int) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    return [row for row in rows if row["step"] <= up_to_step]


def plot_curves(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [row["step"] for row in rows]
    losses = [k for k in rows[0] if k.endswith("_loss")]
    accuracies = [k for k in rows[0] if "acc" in k]
    # EBGAN's D has no accuracy; its energies (per-image MSE, in [0, 4]) take that panel, and a variant
    # with neither its own figures.
    energies = [k for k in rows[0] if k.endswith("_energy")]
    others = [k for k in rows[0] if k not in ("step", "steps_per_s", "images_per_s", *losses)]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for key in losses:
        ax_loss.plot(steps, [row[key] for row in rows], label=key)
    for key in accuracies or energies or others:
        ax_acc.plot(steps, [row[key] for row in rows], label=key)
    ax_loss.set(xlabel="step", title="losses")
    if accuracies:
        ax_acc.set(xlabel="step", title="accuracies", ylim=(-0.02, 1.02))
    else:
        ax_acc.set(xlabel="step", title="energies" if energies else "figures")
    for ax in (ax_loss, ax_acc):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
