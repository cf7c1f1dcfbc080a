"""synthd.torch.SynthIterableDataset under a real DataLoader with worker processes."""

import collections

import pytest
import torch  # tools/setup-deps installs it: a missing package fails these tests, never skips them
from torch.utils.data import DataLoader, get_worker_info

from synthd.torch import SynthIterableDataset
from conftest import request


def tag_worker(item):
    """Marks each item with the DataLoader worker that produced it."""
    info = get_worker_info()
    return (info.id if info is not None else -1, item)


def collect(ds, workers=2):
    it = iter(DataLoader(ds, batch_size=None, num_workers=workers))
    try:
        return list(it)
    finally:
        getattr(it, "_shutdown_workers", lambda: None)()  # now, not when a traceback holding it is collected


def check_sharding(items, want_seqs, workers):
    """Every seq exactly once, and each worker took exactly the seqs of its shard, in the stream's
    order (``want_seqs`` is that order)."""
    want_seqs = list(want_seqs)
    seqs = [seq for seq, _ in items]
    assert sorted(seqs) == sorted(want_seqs) and len(set(seqs)) == len(seqs)
    by_worker = collections.defaultdict(list)
    for seq, (wid, _) in items:
        by_worker[wid].append(seq)
    assert sorted(by_worker) == list(range(workers))
    for wid, got in by_worker.items():
        assert all((s - 1) % workers == wid for s in got)
        assert got == [s for s in want_seqs if (s - 1) % workers == wid]


def test_two_workers_split_a_finished_job_without_duplicates_or_gaps(client, split_job):
    ds = SynthIterableDataset(split_job.job_id, client, transform=tag_worker, with_seq=True)
    items = collect(ds)
    check_sharding(items, range(1, 301), 2)
    want = dict(client.records(split_job.job_id, with_seq=True))
    assert all(rec == want[seq] for seq, (_, rec) in items)


def test_two_workers_on_one_split(client, split_job):
    ds = SynthIterableDataset(split_job.job_id, client, split="validation", transform=tag_worker, with_seq=True)
    items = collect(ds)
    check_sharding(items, [s for s, _ in client.records(split_job.job_id, "validation", with_seq=True)], 2)


def test_two_workers_follow_a_live_job(client):
    job = client.generate(request(500))
    ds = SynthIterableDataset(job.job_id, client, transform=tag_worker, with_seq=True, format="trl-messages")
    items = collect(ds)
    check_sharding(items, range(1, 501), 2)
    assert client.job(job.job_id).status == "succeeded"
    assert all(list(rec) == ["messages"] for _, (_, rec) in items)


def test_ranks_and_workers_together(client, split_job):
    """Two ranks of two workers each: four shards that still cover every record once."""
    seen = []
    for rank in (0, 1):
        ds = SynthIterableDataset(split_job.job_id, client, with_seq=True, rank=rank, world_size=2)
        items = collect(ds)
        assert all((s - 1) % 4 in (2 * rank, 2 * rank + 1) for s, _ in items)
        seen += [s for s, _ in items]
    assert sorted(seen) == list(range(1, 301))


def test_batches_with_a_collate_function_and_no_workers(server, split_job):
    ds = SynthIterableDataset(split_job.job_id, address=server.unix_address, api_key=server.key, format="alpaca")
    batches = list(DataLoader(ds, batch_size=64, collate_fn=list))
    assert [len(b) for b in batches] == [64, 64, 64, 64, 44]
    assert all(set(r) == {"instruction", "input", "output"} for b in batches for r in b)
    assert torch.utils.data.get_worker_info() is None


def test_bad_arguments():
    with pytest.raises(ValueError):
        SynthIterableDataset("syn_job_x", address="unix:/nowhere", rank=1)
    with pytest.raises(ValueError):
        SynthIterableDataset("syn_job_x", address="unix:/nowhere", rank=2, world_size=2)


def test_a_format_the_schema_cannot_take_fails_in_the_worker(client, split_job):
    from synthd.formats import FormatError
    ds = SynthIterableDataset(split_job.job_id, client, format="trl-dpo")  # instruction_v1 has no rejected answer
    with pytest.raises(Exception, match="preference_v1 or conflict_v1"):
        collect(ds)
    with pytest.raises(FormatError):
        SynthIterableDataset(split_job.job_id, client, format="trl-dpo", system="x")
