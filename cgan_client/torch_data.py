"""The service as a PyTorch input pipeline. Importing this module needs torch; the rest of cgan_client
does not.

    data = ServiceDataset(api.config, per_label=1000)            # 10,000 images a pass, batches of 32
    loader = DataLoader(data, batch_size=None, num_workers=2)    # the batches are already made

Like :mod:`cgan_client.tf_data`: class-mixed, training-sized batches, a known length, an endless mode;
with several ``DataLoader`` workers each streams its own contiguous share of every pass (whole batches,
none twice, none missing), so the service generates the shares in parallel.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import IterableDataset, get_worker_info

from cgan_client import _passes
from cgan_client._common import Config
from cgan_client.client import Client


class ServiceDataset(IterableDataset):
    """``(x, y)`` batches as tensors (uint8 ``[b, H, W]``, int64 ``[b]``); use
    ``DataLoader(ds, batch_size=None)``. Arguments as :func:`cgan_client.tf_data.dataset`.

    Holds the client's :class:`~cgan_client.Config`, not the client, so it pickles into workers; each pass
    opens its own connection. Without a ``seed``, each epoch's seed comes from torch's generator (the
    ``DataLoader``'s base seed, the same in every worker of an epoch), so ``torch.manual_seed`` makes the
    epochs reproducible and the workers' shares belong to one data set.
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
        order: str = _passes.DEFAULT_ORDER,
        batch_size: int = 32,
        endless: bool = False,
    ) -> None:
        super().__init__()
        self.config = config
        with Client.from_config(config) as client:
            self.plan = _passes.plan(
                client, per_label, labels, seed, version, model, order, batch_size, endless
            )

    def __len__(self) -> int:
        """Batches of a pass, over all workers (finite mode)."""
        if self.plan.endless:
            raise TypeError("an endless ServiceDataset has no length")
        return self.plan.count

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        worker = get_worker_info()
        if worker is None:
            plan, epoch_seed = self.plan, int(torch.randint(0, 2**52, ()).item())
        else:
            plan = self.plan.share(worker.id, worker.num_workers)
            epoch_seed = (worker.seed - worker.id) % 2**52  # the DataLoader's base seed: one per epoch
        if plan.start >= (plan.stop if plan.stop is not None else plan.size):
            return  # more workers than batches: this one has none
        with Client.from_config(self.config) as client:
            for x, y in plan.batches(client, epoch_seed):
                yield torch.from_numpy(x.copy()), torch.from_numpy(y.copy())
