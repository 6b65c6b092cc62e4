"""cgan-synth's Python client: labelled synthetic images from the service as numpy arrays.

Needs httpx and numpy only (``pip install 'cgan-synth[client]'``); neither the service nor TensorFlow.

    from cgan_client import Client
    api = Client("http://localhost:8000", token="...", version=3)  # pin the version for reproducible data
    x, y = api.dataset(per_label=1000, seed=0)                      # streamed, decoded as it arrives

Input pipelines: :func:`cgan_client.tf_data.dataset` (a ``tf.data.Dataset``, when TensorFlow is
installed) and :class:`cgan_client.torch_data.ServiceDataset` (a PyTorch ``IterableDataset``, when torch is).
"""

from cgan_client._common import Config, ServiceError
from cgan_client.aclient import AsyncClient
from cgan_client.client import Client
from cgan_client.npz_stream import ArchiveError

__all__ = ["ArchiveError", "AsyncClient", "Client", "Config", "ServiceError"]
