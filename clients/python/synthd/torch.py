"""PyTorch adapter (needs ``torch``): stream a job's records into a DataLoader.

    from torch.utils.data import DataLoader
    from synthd.torch import SynthIterableDataset

    ds = SynthIterableDataset(job_id, format="trl-messages")   # $SYNTH_ADDRESS / $SYNTH_API_KEY
    for batch in DataLoader(ds, batch_size=8, num_workers=2, collate_fn=list):
        ...
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, Iterator, Optional

try:
    import torch.distributed as _dist
    from torch.utils.data import IterableDataset, get_worker_info
except ImportError as e:  # pragma: no cover - exercised only without torch
    raise ImportError("synthd.torch needs PyTorch: pip install torch") from e

from .client import Client
from .formats import converter


class SynthIterableDataset(IterableDataset):
    """The records of a job (or of one split) as an ``IterableDataset``.

    Without ``split`` it follows the job live: records arrive as they are accepted and iteration
    ends when the job is final. With ``split`` it reads that split of a succeeded job.

    Records are sharded by sequence number across DataLoader workers (and across distributed
    ranks, when ``torch.distributed`` is initialised or ``rank``/``world_size`` are given): shard
    ``k`` of ``n`` takes the records whose ``(seq - 1) % n == k``. Every record goes to exactly one
    shard, so there are no duplicates and no gaps. Each worker reads the stream on its own
    connection, which resumes after a drop without loss or repetition.

    Each item is the record dict, converted by ``format`` (see `synthd.formats`) and then by
    ``transform`` when given; ``with_seq=True`` yields ``(seq, item)``.
    """

    def __init__(self, job_id: str, client: Optional[Client] = None, *, split: Optional[str] = None,
                 format: Optional[str] = None, system: Optional[str] = None,
                 transform: Optional[Callable[[Dict[str, Any]], Any]] = None, with_seq: bool = False,
                 rank: Optional[int] = None, world_size: Optional[int] = None,
                 address: Optional[str] = None, api_key: Optional[str] = None):
        super().__init__()
        self.job_id = job_id
        self.client = client if client is not None else Client(address, api_key)
        self.split = split
        self.format = format
        self.system = system
        self._convert = converter(format, system=system) if format else None
        self.transform = transform
        self.with_seq = with_seq
        if (rank is None) != (world_size is None):
            raise ValueError("give both rank and world_size, or neither")
        if world_size is not None and not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        self.rank = rank
        self.world_size = world_size

    def shard(self):
        """``(k, n)``: this process's shard and the number of shards."""
        rank, world = self.rank, self.world_size
        if world is None:
            rank, world = (_dist.get_rank(), _dist.get_world_size()) if _dist.is_available() and _dist.is_initialized() else (0, 1)
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        return rank * nw + wid, world * nw

    def __iter__(self) -> Iterator[Any]:
        k, n = self.shard()
        conv, transform, with_seq = self._convert, self.transform, self.with_seq
        loads = json.loads
        for seq, raw in self.client.records(self.job_id, self.split, raw=True, with_seq=True):
            if (seq - 1) % n != k:
                continue
            item = loads(raw)
            if conv is not None:
                item = conv(item)
            if transform is not None:
                item = transform(item)
            yield (seq, item) if with_seq else item
