"""What a consumer's model learns from the service's data, taken the way the README shows.

Starts the real service (``python -m service``, both workers) on the bundled default model, then for each
adapter (``cgan_client.tf_data``, ``cgan_client.torch_data``) trains the README's small CNN for one epoch
on ``per_label`` x 10 synthetic digits and tests it on the 500 real digits the model never saw (mnist-5k's
held-out split). Rows:

* ``shuffled`` (the default order): the adapter as documented, batches of 32 as they stream;
* ``by_class``: the order every data path used before ``order`` existed, same batches;
* ``explicit shuffle``: the very same images fetched whole and shuffled globally by the consumer (numpy
  permutation), the reference a streamed order must match;
* ``by_class, batch 1024``: the old README line (``dataset(api, per_label=1000)`` with the adapter's old
  1,024-image batches): what a user who trusted it got.

Each row is the mean over ``--runs`` training seeds (the same seeds in every row) with its range.

    python -m bench.experiments.consumer          # 10,000 images, 3 seeds, both adapters (torch if there)
    python -m bench.experiments.consumer --quick  # 1 seed
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Iterator

import numpy as np

from bench.harness import REPO, machine, markdown_table, service_server, write_json

BUNDLED = REPO / "service" / "bundled"
MODEL = "mnist-5k-cgan-conv"
ORDERS = ("shuffled", "by_class", "explicit shuffle", "by_class, batch 1024")


def held_out() -> tuple[np.ndarray, np.ndarray]:
    """mnist-5k's held-out split (500 real digits, 50 a class): what the bundled model never saw."""
    from trainer.data import load_dataset

    test = load_dataset("mnist-5k").test
    return test.images, test.labels


@contextlib.contextmanager
def bundled_service() -> Iterator[str]:
    """The service as deployed (default workers) on the bundled model; its URL."""
    server = service_server(BUNDLED, MODEL, name="consumer")
    with server:
        server.wait_ready()
        yield server.url


# --- tf.data: the README's pipeline -----------------------------------------------------------------------


def tf_cnn(width: int = 32):
    """The README's small CNN (``width`` filters in the first layer, twice that in the second)."""
    import keras

    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(width, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(2 * width, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )


def tf_accuracy(data, x_test: np.ndarray, y_test: np.ndarray, seed: int, width: int = 32) -> float:
    """Train the CNN for one epoch on ``data`` (a ``tf.data`` of uint8 ``(x, y)`` batches), as the README
    does, and score it on the real digits."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    model = tf_cnn(width)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(data.map(lambda x, y: (tf.cast(x, "float32")[..., None] / 255.0, y)), epochs=1, verbose=0)
    predicted = model.predict(x_test[..., None].astype("float32") / 255.0, verbose=0).argmax(axis=1)
    return float((predicted == y_test).mean())


def tf_rows(api, per_label: int, seeds: list[int], x_test, y_test, width: int = 32) -> dict[str, list[float]]:
    import tensorflow as tf

    from cgan_client import tf_data

    seed = 7  # the data set's seed: every row trains on the same 10,000 images
    x, y = api.dataset(per_label, seed=seed, order="by_class")
    found: dict[str, list[float]] = {order: [] for order in ORDERS}
    for run in seeds:
        for order in ("shuffled", "by_class"):
            data = tf_data.dataset(api, per_label, seed=seed, order=order)
            found[order].append(tf_accuracy(data, x_test, y_test, run, width))
        at = np.random.default_rng(run).permutation(len(x))
        explicit = tf.data.Dataset.from_tensor_slices((x[at], y[at])).batch(32)
        found["explicit shuffle"].append(tf_accuracy(explicit, x_test, y_test, run, width))
        old = tf_data.dataset(api, per_label, seed=seed, order="by_class", batch_size=1024)
        found["by_class, batch 1024"].append(tf_accuracy(old, x_test, y_test, run, width))
    return found


# --- PyTorch ------------------------------------------------------------------------------------------------


def torch_accuracy(batches, x_test: np.ndarray, y_test: np.ndarray, seed: int, width: int = 32) -> float:
    """The same CNN in torch, one epoch of Adam over ``batches`` (uint8 ``(x, y)`` tensors)."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(1, width, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * width * 5 * 5, 10),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for x, y in batches:
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x[:, None].float() / 255.0), y)
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        predicted = model(torch.from_numpy(x_test[:, None]).float() / 255.0).argmax(dim=1).numpy()
    return float((predicted == y_test).mean())


def torch_rows(
    api, per_label: int, seeds: list[int], x_test, y_test, width: int = 32
) -> dict[str, list[float]]:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from cgan_client.torch_data import ServiceDataset

    seed = 7
    x, y = api.dataset(per_label, seed=seed, order="by_class")
    found: dict[str, list[float]] = {order: [] for order in ORDERS}
    for run in seeds:
        for order in ("shuffled", "by_class"):
            loader = DataLoader(
                ServiceDataset(api.config, per_label, seed=seed, order=order), batch_size=None
            )
            found[order].append(torch_accuracy(loader, x_test, y_test, run, width))
        generator = torch.Generator().manual_seed(run)
        whole = TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
        explicit = DataLoader(whole, batch_size=32, shuffle=True, generator=generator)
        found["explicit shuffle"].append(torch_accuracy(explicit, x_test, y_test, run, width))
        old = ServiceDataset(api.config, per_label, seed=seed, order="by_class", batch_size=1024)
        found["by_class, batch 1024"].append(
            torch_accuracy(DataLoader(old, batch_size=None), x_test, y_test, run, width)
        )
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--per-label", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3, help="training seeds per row")
    ap.add_argument("--quick", action="store_true", help="one training seed")
    ap.add_argument("--adapters", default="tf,torch", help="comma-separated: tf, torch")
    args = ap.parse_args()
    seeds = list(range(1 if args.quick else args.runs))
    x_test, y_test = held_out()
    from cgan_client import Client

    results: dict[str, dict[str, list[float]]] = {}
    began = time.perf_counter()
    with bundled_service() as url, Client(url, timeout=300) as api:
        for adapter in args.adapters.split(","):
            if adapter == "torch":
                try:
                    import torch  # noqa: F401
                except ImportError:
                    print("torch is not installed: its rows are skipped (pip install torch==2.13.0)")
                    continue
                results["torch"] = torch_rows(api, args.per_label, seeds, x_test, y_test)
            else:
                results["tf.data"] = tf_rows(api, args.per_label, seeds, x_test, y_test)
    rows = []
    for adapter, found in results.items():
        for order in ORDERS:
            runs = found[order]
            accuracy = f"{100 * np.mean(runs):.1f}% ({100 * min(runs):.1f}-{100 * max(runs):.1f})"
            rows.append((adapter, order, 1, f"{args.per_label * 10:,}", accuracy))
    info = machine()
    print(f"{info.get('cpu_model')}, {info['cpus_affinity']} cores; {len(seeds)} training seed(s); "
          f"{time.perf_counter() - began:.0f} s")  # fmt: skip
    print(markdown_table(["adapter", "order", "epochs", "images", "held-out real accuracy (range)"], rows))
    write_json(
        "consumer.json", {"machine": info, "per_label": args.per_label, "seeds": seeds, "results": results}
    )


if __name__ == "__main__":
    main()
