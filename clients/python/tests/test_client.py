"""Every call against a real synthd with the fake provider."""

import hashlib
import json
import time

import pytest

import synthd
from conftest import CONFLICT, SHAPES, request


def test_health_is_public(server):
    for key in ("", "sk_live_not_a_real_key"):
        h = synthd.Client(server.unix_address, key).health()
        assert h["status"] == "ok"
        names = [c["name"] for c in h["components"]]
        assert names[:2] == ["store", "engine"]
        assert {"tier:fast", "tier:balanced", "tier:diverse", "tier:deep"} <= set(names)
        assert h["version"]


def test_pricing_is_public_and_has_the_documented_prices(server):
    p = synthd.Client(server.unix_address, "").pricing()
    tiers = {t["tier"]: t for t in p["tiers"]}
    assert {k: tiers[k]["instruction_per_1k_usd"] for k in tiers} == {"fast": 0.5, "balanced": 3.0, "diverse": 8.0, "deep": 25.0}
    assert tiers["fast"]["preference_per_1k_usd"] == 0  # fast cannot run preference_v1
    assert tiers["deep"]["subscription"] is False
    assert p["verified_per_1k_usd"] == 5.0


def test_plan_gives_exact_counts_and_cost_without_a_job(client):
    before = len(client.jobs(limit=500))
    body = request(200, advanced={"categories": {"billing": {"percentage": 25}, "bugs": {"percentage": 75}},
                                  "output_split": {"train": 80, "validation": 20}})
    p = client.plan(body)
    assert p["plan"]["count"] == 200 and p["plan"]["tier"] == "fast"
    assert {c["category"]: c["count"] for c in p["plan"]["cells"]} == {"billing": 50, "bugs": 150}
    assert {s["name"]: s["count"] for s in p["plan"]["splits"]} == {"train": 160, "validation": 40}
    assert p["cost"]["total_usd"] == pytest.approx(0.1)
    eff = p["effective_request"]
    assert eff["count"] == 200 and isinstance(eff["count"], int) and eff["schema"] == "instruction_v1"
    assert len(client.jobs(limit=500)) == before


def test_generate_wait_job_jobs(client):
    job = client.generate(request(40))
    assert job.status == "queued" and job.job_id.startswith("syn_job_") and job.count == 40
    final = client.wait(job.job_id, timeout=60)
    assert final.status == "succeeded" and final.done and final.accepted == 40 and final.last_seq == 40
    again = client.job(job.job_id)
    assert again == final
    assert again.usage["requests"] > 0 and again.cost_usd == pytest.approx(0.02)
    listed = client.jobs()
    assert listed[0].job_id == job.job_id  # newest first
    assert all(j.status == "succeeded" for j in client.jobs("succeeded"))
    with pytest.raises(synthd.InvalidArgument):
        client.jobs("sleeping")


def test_jobs_page_through_every_job_once(client):
    for _ in range(3):
        client.generate(request(1))
    everything = client.jobs(limit=500)
    assert len(everything) >= 3
    page = client.jobs(limit=2)
    assert len(page) == 2 and page.next_page_token
    seen = [j.job_id for j in client.iter_jobs(page_size=2)]
    assert seen == [j.job_id for j in everything]


def test_records_of_a_finished_job(client, split_job):
    recs = list(client.records(split_job.job_id))
    assert len(recs) == 300
    assert all(list(r) == SHAPES["instruction_v1"] for r in recs)
    assert {r["provenance"]["job_id"] for r in recs} == {split_job.job_id}
    pairs = list(client.records(split_job.job_id, with_seq=True))
    assert [s for s, _ in pairs] == list(range(1, 301))
    assert [r for _, r in pairs] == recs
    raw = list(client.records(split_job.job_id, raw=True))
    assert all(isinstance(b, bytes) and not b.endswith(b"\n") for b in raw)
    assert [json.loads(b) for b in raw] == recs
    assert list(client.records(split_job.job_id, raw=True, with_seq=True)) == list(zip(range(1, 301), raw))


def test_splits_partition_the_job_and_match_their_hashes(client, split_job):
    manifest = client.manifest(split_job.job_id)
    assert manifest["job_id"] == split_job.job_id and manifest["count_accepted"] == 300
    want = {s["name"]: (s["count"], s["sha256"]) for s in manifest["splits"]}
    assert {k: v[0] for k, v in want.items()} == {"train": 210, "validation": 60, "test": 30}

    all_raw = dict(client.records(split_job.job_id, raw=True, with_seq=True))
    seen = set()
    for name, (count, sha) in want.items():
        got = list(client.records(split_job.job_id, name, raw=True, with_seq=True))
        assert len(got) == count
        assert hashlib.sha256(b"".join(r + b"\n" for _, r in got)).hexdigest() == sha
        assert all(all_raw[s] == r for s, r in got)
        seqs = {s for s, _ in got}
        assert not seqs & seen
        seen |= seqs
        assert [json.loads(r) for _, r in got] == list(client.records(split_job.job_id, name))
    assert seen == set(range(1, 301))

    events = list(client.fetch_splits(split_job.job_id))
    infos = [e for e in events if isinstance(e, synthd.SplitInfo)]
    assert [(i.name, i.count, i.sha256) for i in infos] == [(n, c, h) for n, (c, h) in want.items()]
    # Each SplitInfo is followed by exactly its records.
    i = 0
    for info in infos:
        assert events[i] == info
        assert all(isinstance(e, synthd.Record) for e in events[i + 1:i + 1 + info.count])
        i += 1 + info.count
    assert i == len(events)
    assert [i.name for i in client.split_infos(split_job.job_id)] == ["train", "validation", "test"]


def test_a_job_without_output_split_has_one_split_named_all(client, schema_jobs):
    job = schema_jobs["eval_v1"]
    assert [i.name for i in client.split_infos(job.job_id)] == ["all"]
    # The same records, though the split's file holds them in its own (shuffled) order.
    assert sorted(client.records(job.job_id, "all", with_seq=True)) == list(client.records(job.job_id, with_seq=True))


def test_report_and_manifest(client, split_job):
    rep = client.report(split_job.job_id)
    assert rep["total_accepted"] == 300 and rep["total_generated"] >= 300
    assert rep["pass_rate"] == pytest.approx(rep["total_accepted"] / rep["total_generated"])
    raw = client.manifest(split_job.job_id, raw=True)
    assert isinstance(raw, bytes) and json.loads(raw) == client.manifest(split_job.job_id)


def test_every_schema_has_its_documented_record_shape(client, schema_jobs):
    for name, job in schema_jobs.items():
        schema = "conflict_v1" if name == "conflict_none" else name
        recs = list(client.records(job.job_id))
        assert len(recs) == job.accepted == job.count
        assert all(list(r) == SHAPES[schema] for r in recs), name
        if schema == "conflict_v1":
            has_resolution = {"resolution" in r["data"] for r in recs}
            assert has_resolution == ({False} if name == "conflict_none" else {True})


def test_watch_follows_a_live_job_in_order(client):
    job = client.generate(request(600))
    events = list(client.watch(job.job_id))
    records = [e for e in events if isinstance(e, synthd.Record)]
    snapshots = [e for e in events if isinstance(e, synthd.Job)]
    assert [r.seq for r in records] == list(range(1, 601))
    assert snapshots[-1] is events[-1] and snapshots[-1].status == "succeeded" and snapshots[-1].accepted == 600
    assert any(not s.done for s in snapshots), "the watch began after the job ended; it did not follow it live"
    # The job's snapshot never claims records the stream has not delivered yet.
    delivered = 0
    for e in events:
        if isinstance(e, synthd.Record):
            delivered = e.seq
        else:
            assert e.last_seq <= delivered
    assert records[0].data == json.loads(records[0].json)
    assert [r.data for r in records] == list(client.records(job.job_id))


def test_watch_after_seq_resumes_exactly(client, split_job):
    got = [e.seq for e in client.watch(split_job.job_id, after_seq=250) if isinstance(e, synthd.Record)]
    assert got == list(range(251, 301))
    progress = list(client.watch(split_job.job_id, progress_only=True))
    assert progress and all(isinstance(e, synthd.Job) for e in progress) and progress[-1].status == "succeeded"


def test_stopping_a_stream_early_leaves_the_client_usable(client, split_job):
    stream = client.records(split_job.job_id)
    first = [next(stream) for _ in range(5)]
    stream.close()
    assert len(first) == 5
    assert client.job(split_job.job_id).status == "succeeded"


def test_cancel(client):
    job = client.generate(request(5000))
    with pytest.raises(synthd.FailedPrecondition):
        client.manifest(job.job_id)
    with pytest.raises(synthd.FailedPrecondition):
        list(client.records(job.job_id, "all"))  # splits exist once a job succeeds
    cancelled = client.cancel(job.job_id)
    assert cancelled.status == "cancelled"
    final = client.wait(job.job_id, timeout=30)
    assert final.status == "cancelled" and final.accepted < 5000
    kept = list(client.records(job.job_id, with_seq=True))
    assert [s for s, _ in kept] == list(range(1, final.accepted + 1))
    with pytest.raises(synthd.FailedPrecondition):
        client.cancel(job.job_id)


def test_idempotency_key(client):
    body = request(3)
    a = client.generate(body, idempotency_key="py-idem-1")
    b = client.generate(body, idempotency_key="py-idem-1")
    assert a.job_id == b.job_id
    with pytest.raises(synthd.FailedPrecondition) as e:
        client.generate(request(4), idempotency_key="py-idem-1")
    assert e.value.error_code == "IDEMPOTENCY_CONFLICT"
    assert client.generate(body, idempotency_key="py-idem-2").job_id != a.job_id


def test_validation_errors_list_every_field(client):
    bad = request(0, model="fastest", advanced={"output_split": {"train": 80, "validation": 30}})
    for call in (client.generate, client.plan):
        with pytest.raises(synthd.InvalidArgument) as e:
            call(bad)
        err = e.value
        assert err.code == synthd.StatusCode.INVALID_ARGUMENT and err.error_code == "VALIDATION_ERROR"
        fields = {f.field for f in err.field_errors}
        assert {"count", "model", "advanced.output_split"} <= fields
        assert next(f for f in err.field_errors if f.field == "model").value == "fastest"
        assert "count" in str(err)


def test_categories_and_coverage_conflict(client):
    body = request(10, advanced={"categories": {"a": {"percentage": 100}},
                                 "coverage": {"dimensions": [{"name": "d", "values": ["x"]}], "mode": "each_value"}})
    with pytest.raises(synthd.InvalidArgument) as e:
        client.generate(body)
    assert e.value.error_code == "CONFLICTING_OPTIONS"


def test_every_problem_of_a_body_comes_in_one_answer(client):
    before = len(client.jobs(limit=500))
    body = dict(request(5), colour="blue", count="five", advanced={"invariants": [], "hard_negatives": {"enabled": "yes"}})
    with pytest.raises(synthd.InvalidArgument) as e:
        client.generate(body)
    assert e.value.error_code == "VALIDATION_ERROR"
    fields = {f.field: f.rule for f in e.value.field_errors}
    assert set(fields) == {"colour", "count", "advanced.invariants", "advanced.hard_negatives.enabled"}, fields
    assert fields["count"] == "must be an integer"
    assert len(client.jobs(limit=500)) == before
    # JSON text that does not parse: where, by line and column.
    with pytest.raises(synthd.InvalidArgument) as e:
        client.plan('{"schema": "instruction_v1",\n "count": 5,,}')
    assert e.value.error_code == "MALFORMED_REQUEST"
    assert e.value.field_errors[0].value == "line 2, column 13"
    with pytest.raises(synthd.InvalidArgument) as e:
        client.plan(dict(request(5), count=float("nan")))
    assert e.value.error_code == "MALFORMED_REQUEST"


def test_documented_conflict_example_is_accepted(client):
    body = request(20, "conflict_v1", "deep", domain="AI assistant alignment decisions",
                   conflict_config=dict(CONFLICT, axis_distribution={"safety_autonomy": 60, "honesty_helpfulness": 40}))
    plan = client.plan(body)["plan"]
    assert {c["axis"]: c["count"] for c in plan["cells"]} == {"safety_autonomy": 12, "honesty_helpfulness": 8}


@pytest.mark.parametrize("key,message", [("", "missing"), ("sk_live_wrong0000000000000000000", "invalid"),
                                         ("not-a-key", "malformed")])
def test_bad_keys_are_unauthenticated(server, split_job, key, message):
    c = synthd.Client(server.unix_address, key)
    for call in (lambda: c.job(split_job.job_id), lambda: c.generate(request(1)), lambda: c.jobs(),
                 lambda: list(c.records(split_job.job_id)), c.keys):
        with pytest.raises(synthd.Unauthenticated) as e:
            call()
        assert message in e.value.message.lower()


def test_not_found(client, split_job, server):
    with pytest.raises(synthd.NotFound):
        client.job("syn_job_doesnotexist00000000")
    with pytest.raises(synthd.NotFound):
        list(client.watch("syn_job_doesnotexist00000000"))
    with pytest.raises(synthd.NotFound):
        list(client.records(split_job.job_id, "holdout"))
    # Another org's job is exactly as absent.
    other = synthd.Client(server.unix_address, server.create_org("py-other"))
    with pytest.raises(synthd.NotFound):
        other.job(split_job.job_id)
    with pytest.raises(synthd.NotFound):
        list(other.records(split_job.job_id))
    assert split_job.job_id not in {j.job_id for j in other.jobs()}


def test_keys_create_list_revoke(server):
    c = synthd.Client(server.unix_address, server.create_org("py-keys"))
    created = c.create_key("ci")
    assert created["key"].startswith("sk_live_") and created["info"]["name"] == "ci"
    assert created["key"].startswith(created["info"]["prefix"])
    listed = {k["key_id"]: k for k in c.keys()}
    assert created["info"]["key_id"] in listed and len(listed) == 2
    assert created["key"] not in json.dumps(list(listed.values()))  # never the secret
    c2 = synthd.Client(server.unix_address, created["key"])
    assert c2.jobs() == []
    revoked = c.revoke_key(created["info"]["key_id"])
    assert revoked["revoked"] is True and revoked["revoked_at"]
    with pytest.raises(synthd.Unauthenticated):
        c2.jobs()
    assert {k["key_id"]: k["revoked"] for k in c.keys()}[created["info"]["key_id"]] is True


def test_key_limit(server):
    c = synthd.Client(server.unix_address, server.create_org("py-limit"))
    made = 1
    with pytest.raises(synthd.ResourceExhausted) as e:
        while made < 20:
            c.create_key()
            made += 1
    assert e.value.error_code == "KEY_LIMIT" and made == 10  # the documented 10 active keys


def test_a_revoked_key_ends_a_live_watch(server):
    admin = synthd.Client(server.unix_address, server.create_org("py-revoke"))
    extra = admin.create_key("watcher")
    watcher = synthd.Client(server.unix_address, extra["key"])
    job = watcher.generate(request(20000))
    try:
        stream = watcher.watch(job.job_id)
        next(stream)
        admin.revoke_key(extra["info"]["key_id"])
        t0 = time.monotonic()
        with pytest.raises(synthd.Unauthenticated):
            for _ in stream:
                pass
        assert time.monotonic() - t0 < 15
    finally:
        admin.cancel(job.job_id)


def test_tcp_and_unix_give_the_same_answers(server, client, split_job):
    tcp = synthd.Client(server.tcp_address, server.key)
    assert tcp.job(split_job.job_id) == client.job(split_job.job_id)
    assert list(tcp.records(split_job.job_id, raw=True)) == list(client.records(split_job.job_id, raw=True))
    assert list(tcp.records(split_job.job_id, "validation")) == list(client.records(split_job.job_id, "validation"))


def test_client_from_the_environment(server, split_job, monkeypatch):
    monkeypatch.setenv("SYNTH_ADDRESS", server.tcp_address)
    monkeypatch.setenv("SYNTH_API_KEY", server.key)
    assert synthd.Client().job(split_job.job_id).job_id == split_job.job_id


def test_one_client_from_many_threads(client, split_job):
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(8) as pool:
        jobs = list(pool.map(lambda _: client.job(split_job.job_id), range(64)))
        counts = list(pool.map(lambda _: sum(1 for _ in client.records(split_job.job_id, "test")), range(8)))
    assert all(j == jobs[0] for j in jobs) and counts == [30] * 8


def test_a_client_shared_across_fork(client, split_job):
    import os
    assert client.job(split_job.job_id).status == "succeeded"  # the parent's connection is open
    pid = os.fork()
    if pid == 0:
        try:
            ok = client.job(split_job.job_id).job_id == split_job.job_id and \
                sum(1 for _ in client.records(split_job.job_id, "test")) == 30
            os._exit(0 if ok else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    # The parent's connection was left alone by the child.
    conn = client._conn
    assert client.job(split_job.job_id).status == "succeeded" and client._conn is conn
