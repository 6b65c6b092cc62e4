"""The service as a PyTorch input pipeline. Importing this module needs torch; the rest of cgan_client
does not."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import IterableDataset, get_worker_info

from cgan_client._common import Config
from cgan_client.client import Client


class ServiceDataset(IterableDataset):
    """``(x, y)`` batches as tensors (uint8 ``[b, H, W]``, int64 ``[b]``), streamed from ``/dataset`` on
    each pass; use ``DataLoader(ds, batch_size=None)`` since the batches are already made.

    Holds the client's :class:`~cgan_client.Config`, not the client, so it pickles; each pass opens its own
    connection. One worker only: the service already generates in parallel, and workers would each fetch
    the whole stream.
    """

    def __init__(
        self,
        config: Config,
        per_label: int,
        *,
        labels: Sequence[int | str] | None = None,
        seed: int | None = None,
        version: int | None = None,
        model: str | None = None,
        batch_size: int = 1024,
    ) -> None:
        super().__init__()
        self.config = config
        self.request = {"labels": labels, "seed": seed, "version": version, "model": model}
        self.per_label = per_label
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        worker = get_worker_info()
        if worker is not None and worker.num_workers > 1:
            raise RuntimeError("ServiceDataset streams one archive: use DataLoader(num_workers=0 or 1)")
        with Client.from_config(self.config) as client:
            for x, y in client.iter_dataset(self.per_label, batch_size=self.batch_size, **self.request):
                yield torch.from_numpy(x.copy()), torch.from_numpy(y.copy())
