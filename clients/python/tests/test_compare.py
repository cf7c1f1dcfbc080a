"""CompareJobs and advanced.dedup_against through the Python client, against a real synthd, checked
against brute force over every pair of records."""
import json
import urllib.request

import pytest

import synthd
from conftest import request


def _normalise(text):
    out = []
    for ch in " ".join(text.split()):
        out.append(ch.lower())
    return "".join(out)


def _trigrams(text):
    t = _normalise(text)
    return {t[i:i + 3] for i in range(len(t) - 2)}


def _texts(client, job_id):
    """(seq, whole-record trigrams, prompt-side trigrams) of an instruction_v1 job, by the rule of the check."""
    out = []
    for seq, rec in client.records(job_id, with_seq=True):
        prompt = rec["instruction"] + "\n" + rec["input"]
        out.append((seq, _trigrams(prompt + "\n" + rec["output"]), _trigrams(prompt)))
    return out


def _above(x, y):
    if not x or not y:
        return False
    o = len(x & y)
    return o * 17 > 7 * (len(x) + len(y))  # o / (n + m - o) > 0.7, in integers


def _brute_force(client, a, b):
    tb = _texts(client, b)
    return {(sa, sb) for sa, fa, pa in _texts(client, a) for sb, fb, pb in tb if _above(fa, fb) or _above(pa, pb)}


def _fake_config(fake, **values):
    req = urllib.request.Request(f"http://127.0.0.1:{fake.port}/config", data=json.dumps(values).encode(), method="POST")
    urllib.request.urlopen(req, timeout=10).read()


def test_compare_lists_exactly_the_pairs_and_dedup_against_leaves_none(client, fake):
    # Half of the fake's answers rework an earlier one: two jobs of the same request overlap.
    _fake_config(fake, near_dup_rate=0.5)
    try:
        train = client.wait(client.generate(request(80)).job_id, timeout=120)
        plain = client.wait(client.generate(request(80)).job_id, timeout=120)
        expected = _brute_force(client, train.job_id, plain.job_id)
        assert expected, "jobs made alike overlap"
        got = client.compare(train.job_id, plain.job_id)
        assert got["total"] == len(expected)
        assert {(p["seq_a"], p["seq_b"]) for p in got["pairs"]} == expected
        assert all(p["matched"] in ("record", "prompt", "both") for p in got["pairs"])

        checked = client.wait(client.generate(request(80, advanced={"dedup_against": [train.job_id]})).job_id, timeout=120)
        assert checked.status == "succeeded" and checked.accepted == 80
        assert not _brute_force(client, train.job_id, checked.job_id)
        assert client.compare(train.job_id, checked.job_id)["total"] == 0
    finally:
        _fake_config(fake, near_dup_rate=0.0)

    with pytest.raises(synthd.NotFound):
        client.compare(train.job_id, "job_does_not_exist")
