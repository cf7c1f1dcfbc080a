import os
import signal
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# Hugging Face libraries must never reach for the network in these tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import synthd  # noqa: E402
from harness import FakeProvider, Synthd  # noqa: E402

SHAPES = {
    "instruction_v1": ["instruction", "input", "output", "metadata", "provenance"],
    "preference_v1": ["prompt", "chosen", "rejected", "chosen_score", "rejected_score", "reasoning", "metadata", "provenance"],
    "eval_v1": ["input", "ideal_output", "metrics", "metadata", "provenance"],
    "conflict_v1": ["record_id", "schema", "data", "metadata", "provenance"],
}


def request(count, schema="instruction_v1", model="fast", **extra):
    body = {"schema": schema, "domain": "customer support for a SaaS product", "count": count, "model": model}
    body.update(extra)
    return body


CONFLICT = {"drive_pairs": [{"a": "safety", "b": "autonomy"}, {"a": "honesty", "b": "helpfulness"}],
            "resolution_mode": "annotated"}


TEST_TIMEOUT = int(os.environ.get("SYNTHD_TEST_TIMEOUT", "180"))


class TimeLimitExceeded(Exception):
    pass


@pytest.fixture(autouse=True)
def _time_limit():
    """Fails a test that runs longer than $SYNTHD_TEST_TIMEOUT seconds (a stream waiting forever on a
    job that never ends, say) instead of letting it hang the run."""
    def expire(signum, frame):
        raise TimeLimitExceeded(f"the test ran longer than {TEST_TIMEOUT} s")
    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(TEST_TIMEOUT)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="session")
def fake():
    f = FakeProvider("--seed", "11")
    yield f
    f.stop()


@pytest.fixture(scope="session")
def server(fake):
    s = Synthd(fake)
    s.key = s.create_org("py")
    s.start()
    yield s
    s.cleanup()


@pytest.fixture(scope="session")
def client(server):
    c = synthd.Client(server.unix_address, server.key)
    yield c
    c.close()


@pytest.fixture(scope="session")
def split_job(client):
    """A succeeded 300-record instruction_v1 job with train/validation/test splits."""
    job = client.generate(request(300, advanced={"output_split": {"train": 70, "validation": 20, "test": 10}}))
    final = client.wait(job.job_id, timeout=120)
    assert final.status == "succeeded", final
    return final


@pytest.fixture(scope="session")
def schema_jobs(client):
    """A small succeeded job of every schema, plus a conflict job without resolutions."""
    bodies = {
        "instruction_v1": request(12),
        "preference_v1": request(12, "preference_v1", "balanced"),
        "eval_v1": request(12, "eval_v1"),
        "conflict_v1": request(12, "conflict_v1", "deep", domain="AI assistant alignment decisions", conflict_config=CONFLICT),
        "conflict_none": request(6, "conflict_v1", "deep", domain="AI assistant alignment decisions",
                                 conflict_config=dict(CONFLICT, resolution_mode="none")),
    }
    jobs = {name: client.generate(body) for name, body in bodies.items()}
    out = {}
    for name, job in jobs.items():
        final = client.wait(job.job_id, timeout=120)
        assert final.status == "succeeded", final
        out[name] = final
    return out
