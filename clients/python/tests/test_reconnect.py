"""Streams that lose their connection mid-way: synthd killed with SIGKILL and started again on the
same data directory, and connections cut under a live synthd. Nothing may be lost or repeated."""

import time

import pytest

import synthd
from conftest import request
from harness import CuttableProxy, Synthd


@pytest.fixture
def own_server(fake):
    """A synthd of this test's own (it gets killed), closing idle connections after 1 s."""
    s = Synthd(fake, server={"idle_timeout_seconds": 1})
    s.key = s.create_org("py-restart")
    s.start()
    yield s
    s.cleanup()


def check_complete(client, job_id, events, count):
    """Exactly records 1..count, once each, in order, and byte for byte what the job stored."""
    records = [e for e in events if isinstance(e, synthd.Record)]
    assert [r.seq for r in records] == list(range(1, count + 1))
    assert [r.json for r in records] == list(client.records(job_id, raw=True))


def test_watch_survives_synthd_killed_mid_job(own_server):
    client = synthd.Client(own_server.unix_address, own_server.key, reconnect_timeout=60)
    job = client.generate(request(1500))
    events = []
    killed_at = None
    for ev in client.watch(job.job_id):
        events.append(ev)
        if killed_at is None and isinstance(ev, synthd.Record) and ev.seq == 200:
            own_server.kill()
            killed_at = ev.seq
            # While synthd is down the watcher keeps trying; start it again a moment later.
            time.sleep(0.5)
            own_server.start()
    assert killed_at == 200
    final = events[-1]
    assert isinstance(final, synthd.Job) and final.status == "succeeded" and final.accepted == 1500
    # The job really was mid-way when synthd died: the stream saw it unfinished after the restart.
    assert any(isinstance(e, synthd.Job) and not e.done for e in events[killed_at:])
    check_complete(client, job.job_id, events, 1500)


def test_records_survive_synthd_stopping_and_starting(own_server):
    """SIGTERM ends open streams UNAVAILABLE (SHUTTING_DOWN); the client resumes after the last record it yielded."""
    client = synthd.Client(own_server.unix_address, own_server.key)
    job = client.generate(request(800))
    got = []
    for seq, rec in client.records(job.job_id, with_seq=True):
        got.append((seq, rec))
        if seq == 100:
            own_server.restart()
    assert [s for s, _ in got] == list(range(1, 801))
    assert [r for _, r in got] == list(client.records(job.job_id))


def test_streams_survive_cut_connections(own_server):
    proxy = CuttableProxy(own_server.tcp_port)
    try:
        client = synthd.Client(proxy.address, own_server.key)
        job = client.generate(request(900, advanced={"output_split": {"train": 50, "validation": 50}}))
        events = []
        cuts = 0
        for ev in client.watch(job.job_id):
            events.append(ev)
            if isinstance(ev, synthd.Record) and ev.seq in (50, 300, 600):
                cuts += proxy.cut()
        assert cuts >= 3 and proxy.accepted >= 4
        check_complete(client, job.job_id, events, 900)

        # A split resumes in file order, without repeating a record or the split's header.
        direct = synthd.Client(own_server.unix_address, own_server.key)
        want = list(direct.records(job.job_id, "train", raw=True))
        got = []
        for raw in client.records(job.job_id, "train", raw=True):
            got.append(raw)
            if len(got) in (1, 200, 449):
                proxy.cut()
        assert got == want and len(got) == 450
        events = []
        for ev in client.fetch_splits(job.job_id):
            events.append(ev)
            if len(events) in (1, 2, 451, 452, 700):
                proxy.cut()
        assert events == list(direct.fetch_splits(job.job_id))
        assert [e.name for e in events if isinstance(e, synthd.SplitInfo)] == ["train", "validation"]
    finally:
        proxy.close()


def test_a_unary_call_after_the_server_closed_an_idle_connection(own_server):
    client = synthd.Client(own_server.unix_address, own_server.key)
    first = client.jobs()
    conn = client._conn
    time.sleep(2.5)  # the server closes connections idle for 1 s
    assert client.jobs() == first
    assert client._conn is not conn  # a new connection was made, not an error raised


def test_giving_up_when_synthd_stays_away(own_server):
    client = synthd.Client(own_server.unix_address, own_server.key, reconnect_timeout=1.5)
    job = client.generate(request(3000))
    stream = client.watch(job.job_id)
    next(stream)
    own_server.kill()
    t0 = time.monotonic()
    with pytest.raises(synthd.ConnectionLost):
        for _ in stream:
            pass
    assert 1.0 < time.monotonic() - t0 < 10
    with pytest.raises(synthd.Unavailable):
        client.job(job.job_id)
