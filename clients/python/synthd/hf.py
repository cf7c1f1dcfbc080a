"""Hugging Face ``datasets`` adapter (needs ``datasets``).

    from synthd.hf import to_dataset
    train = to_dataset(job_id, split="train", format="trl-messages")   # a datasets.Dataset
    live = to_dataset(job_id, streaming=True)                          # a datasets.IterableDataset
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, Optional

try:
    import datasets
except ImportError as e:  # pragma: no cover - exercised only without datasets
    raise ImportError("synthd.hf needs Hugging Face datasets: pip install datasets") from e

from .client import Client
from .formats import converter


def _rows(client: Client, job_id: str, split: Optional[str], format: Optional[str],
          system: Optional[str]) -> Iterator[Dict[str, Any]]:
    conv = converter(format, system=system) if format else None
    for rec in client.records(job_id, split):
        yield conv(rec) if conv is not None else rec


def to_dataset(job_id: str, client: Optional[Client] = None, *, split: Optional[str] = None,
               format: Optional[str] = None, system: Optional[str] = None, streaming: bool = False,
               features: Optional["datasets.Features"] = None):
    """The records of a job (or of one split) as a ``datasets.Dataset``, or with ``streaming=True``
    as a ``datasets.IterableDataset`` that reads the job live when iterated.

    ``format`` converts each record (see `synthd.formats`); without it the rows are the records as
    they are, with their nested ``metadata`` and ``provenance``. A ``Dataset`` is built in memory
    once every record has arrived (for a running job: once it is final), so its columns are the
    union of every record's keys.
    """
    client = client if client is not None else Client()
    if format:
        converter(format, system=system)  # fail now on an unknown format, not at the first record
    if streaming:
        return datasets.IterableDataset.from_generator(
            _rows, features=features,
            gen_kwargs={"client": client, "job_id": job_id, "split": split, "format": format, "system": system})
    rows = list(_rows(client, job_id, split, format, system))
    return datasets.Dataset.from_list(rows, features=features)


def to_dataset_dict(job_id: str, client: Optional[Client] = None, *, format: Optional[str] = None,
                    system: Optional[str] = None):
    """Every split of a succeeded job as a ``datasets.DatasetDict`` (one ``all`` split when the
    request had no ``output_split``)."""
    client = client if client is not None else Client()
    names = [s["name"] for s in client.manifest(job_id).get("splits", [])] or [s.name for s in client.split_infos(job_id)]
    return datasets.DatasetDict({name: to_dataset(job_id, client, split=name, format=format, system=system)
                                 for name in names})
