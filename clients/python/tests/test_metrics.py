"""synthd's Prometheus metrics, scraped from a real synthd after a real job and read with
prometheus_client's own text parser: the counts must be the job's."""
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

import synthd
from synthd import _methods as M
from conftest import request
from harness import FakeProvider, Synthd


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = r.read().decode()
    samples = {}
    families = {}
    for family in text_string_to_metric_families(text):
        families[family.name] = family
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return text, families, samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples, name, **labels):
    """The sum over every series of `name` whose labels include `labels`."""
    return sum(v for (n, ls), v in samples.items() if n == name and all((k, w) in ls for k, w in labels.items()))


@pytest.fixture(scope="module")
def metered():
    # Faults so that every counter has something to count: server errors (retried), empty answers
    # and near-duplicates (rejected).
    fake = FakeProvider("--seed", "5", "--rate-500", "0.1", "--plant", "empty:0.15", "--near-dup-rate", "0.1")
    s = Synthd(fake, metrics=True)
    s.key = s.create_org("metrics")
    s.start()
    yield s, fake
    s.cleanup()
    fake.stop()


def test_counts_match_the_job(metered):
    s, fake = metered
    with synthd.Client(s.unix_address, s.key) as c:
        job = c.generate(request(60))
        done = c.wait(job.job_id, timeout=120)
        assert done.status == "succeeded"
        report = c.report(job.job_id)
        with pytest.raises(synthd.SynthError):
            c.job("syn_job_doesnotexist0000000000")
    import json
    with urllib.request.urlopen(f"http://127.0.0.1:{fake.port}/stats?log=0", timeout=10) as r:
        stats = json.loads(r.read())

    text, families, samples = scrape(s.metrics_port)
    # Every family is described (HELP and TYPE) and of the kind it says.
    assert families["synthd_calls"].type == "counter" and families["synthd_calls"].documentation
    assert families["synthd_call_duration_seconds"].type == "histogram"
    assert families["synthd_jobs"].type == "gauge"

    # Calls by method and status code, and their latency.
    assert value(samples, "synthd_calls_total", method=M.GENERATE.name, code="OK") == 1
    assert value(samples, "synthd_calls_total", method=M.GET_JOB.name, code="NOT_FOUND") == 1
    assert value(samples, "synthd_call_duration_seconds_count", method=M.GENERATE.name) == 1
    assert value(samples, "synthd_call_duration_seconds_bucket", method=M.GENERATE.name, le="+Inf") == 1

    # Records: accepted as the job says, rejected by reason as its report says.
    assert value(samples, "synthd_records_accepted_total") == done.accepted == 60
    breakdown = report["rejection_breakdown"]
    assert sum(breakdown.values()) == done.rejected > 0, report
    for reason, n in breakdown.items():
        assert value(samples, "synthd_records_rejected_total", reason=reason) == n, (reason, text)

    # Provider requests: as many as the fake answered, the 500s among them; tokens as the job's usage.
    assert total(samples, "synthd_provider_requests_total", provider="openai") == stats["generation_requests"]
    assert value(samples, "synthd_provider_requests_total", provider="openai", model="gpt-4o-mini", outcome="http_5xx") \
        == stats["by_status"].get("500", 0) > 0
    assert total(samples, "synthd_provider_request_duration_seconds_count", provider="openai") == stats["generation_requests"]
    usage = done.usage
    assert total(samples, "synthd_provider_tokens_total", kind="prompt") == int(usage.get("prompt_tokens", 0)) > 0
    assert total(samples, "synthd_provider_tokens_total", kind="completion") == int(usage.get("completion_tokens", 0)) > 0

    # State: the job by status, nothing in flight, the store's map.
    assert value(samples, "synthd_jobs", status="succeeded") == 1
    assert value(samples, "synthd_jobs", status="running") == 0
    assert value(samples, "synthd_provider_requests_in_flight", provider="openai") == 0
    assert value(samples, "synthd_store_map_size_bytes") >= value(samples, "synthd_store_used_bytes") > 0
    # No org, job or key is a label.
    assert s.key not in text and job.job_id not in text and "metrics" not in {v for (_, ls) in samples for _, v in ls}


def test_only_get_metrics_is_served(metered):
    s, _ = metered
    for path, status in (("/", 404), ("/metrics/x", 404)):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://127.0.0.1:{s.metrics_port}{path}", timeout=10)
        assert e.value.code == status
    req = urllib.request.Request(f"http://127.0.0.1:{s.metrics_port}/metrics", data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 405


def test_a_fleets_endpoints_are_shown(tmp_path):
    """A provider of two endpoints, one dead: the job is served by the other, and the scrape and
    Health show the dead one taken out."""
    import json
    alive, dead = FakeProvider("--seed", "6", "--latency-ms", "20"), FakeProvider("--seed", "6")
    s = Synthd(alive, metrics=True)
    try:
        cfg = json.load(open(s.config))
        cfg["engine"]["providers"]["openai"] = {
            "kind": "openai", "eject_seconds": 60,
            "endpoints": [{"base_url": f"http://127.0.0.1:{alive.port}/v1", "max_in_flight": 4},
                          {"base_url": f"http://127.0.0.1:{dead.port}/v1", "max_in_flight": 4}]}
        json.dump(cfg, open(s.config, "w"))
        dead.stop()
        key = s.create_org("fleet")
        s.start()
        with synthd.Client(s.unix_address, key) as c:
            done = c.wait(c.generate(request(40)).job_id, timeout=120)
            assert done.status == "succeeded" and done.accepted == 40
            health = {h["name"]: h for h in c.health()["components"]}
        _, families, samples = scrape(s.metrics_port)
        up, down = f"127.0.0.1:{alive.port}", f"127.0.0.1:{dead.port}"
        assert families["synthd_provider_endpoint_up"].type == "gauge"
        assert value(samples, "synthd_provider_endpoint_up", provider="openai", endpoint=up) == 1
        assert value(samples, "synthd_provider_endpoint_up", provider="openai", endpoint=down) == 0
        assert value(samples, "synthd_provider_endpoint_ejections_total", provider="openai", endpoint=down) == 1
        assert value(samples, "synthd_provider_endpoint_ejections_total", provider="openai", endpoint=up) == 0
        assert value(samples, "synthd_provider_endpoint_requests_in_flight", provider="openai", endpoint=up) == 0
        assert value(samples, "synthd_scheduler_requests_waiting", provider="openai") == 0
        assert value(samples, "synthd_jobs_waiting_to_start") == 0
        assert health[f"endpoint:openai/{down}"]["status"] == "ejected", health
        assert health[f"endpoint:openai/{up}"]["status"] == "ok", health
    finally:
        s.cleanup()
        alive.stop()
