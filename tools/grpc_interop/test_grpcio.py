"""synthd's gRPC endpoint through grpcio over mutual TLS: Generate, WatchJob resumed after a dropped
connection, FetchSplits, and the failures a client must be able to tell apart (no key, a key without
the scope, an invalid request), with synthd's error code and field errors in the trailing metadata."""

import hashlib
import json

import grpc
import pytest
from harness import CuttableProxy

from synthd.v1 import service_pb2 as pb
from synthd.v1 import service_pb2_grpc as rpc
from synthd.v1 import status_pb2


def channel(pki, port, **kw):
    creds = grpc.ssl_channel_credentials(root_certificates=open(pki("ca.pem"), "rb").read(),
                                         private_key=open(pki("client.key"), "rb").read(),
                                         certificate_chain=open(pki("client.pem"), "rb").read())
    return grpc.secure_channel(f"localhost:{port}", creds, **kw)


@pytest.fixture(scope="module")
def stub(server, pki):
    ch = channel(pki, server.grpc_port)
    yield rpc.SynthdStub(ch)
    ch.close()


def auth(key):
    return [("authorization", f"Bearer {key}")]


def trailers(err):
    return {k: v for k, v in (err.trailing_metadata() or ())}


def status_of(err):
    s = status_pb2.Status()
    s.ParseFromString(trailers(err)["synthd-status-bin"])
    return s


def body(count, **extra):
    b = {"schema": "instruction_v1", "domain": "customer support for a SaaS product", "count": count, "model": "fast"}
    b.update(extra)
    return json.dumps(b)


def wait_done(stub, key, job_id):
    last = None
    for ev in stub.WatchJob(pb.WatchJobRequest(job_id=job_id, progress_only=True), metadata=auth(key), timeout=120):
        last = ev.progress
    assert last.status == "succeeded", last
    return last


def test_health_and_pricing_need_no_key(stub):
    h = stub.Health(pb.HealthRequest(), timeout=10)
    assert h.status in ("ok", "degraded") and h.version
    assert {t.tier for t in stub.GetPricing(pb.GetPricingRequest(), timeout=10).tiers} >= {"fast", "balanced", "deep"}


def test_generate_watch_with_resume_after_a_dropped_connection(server, pki, stub):
    job = stub.Generate(pb.GenerateRequest(request_json=body(600)), metadata=auth(server.key), timeout=30).job
    assert job.job_id.startswith("syn_job_") and job.count == 600

    # Through a relay whose connections the test cuts, as a network failure would.
    proxy = CuttableProxy(server.grpc_port)
    seqs, lines, cuts, after = [], [], 0, 0
    final = None
    try:
        while final is None:
            ch = channel(pki, proxy.port, options=[("grpc.ssl_target_name_override", "localhost")])
            try:
                for ev in rpc.SynthdStub(ch).WatchJob(pb.WatchJobRequest(job_id=job.job_id, after_seq=after),
                                                      metadata=auth(server.key), timeout=120):
                    kind = ev.WhichOneof("event")
                    if kind == "record":
                        seqs.append(ev.record.seq)
                        lines.append(ev.record.json)
                        after = ev.record.seq
                        if ev.record.seq in (40, 250) and cuts < 2:
                            cuts += proxy.cut()
                    elif kind == "progress" and ev.progress.status == "succeeded" and after == ev.progress.last_seq:
                        final = ev.progress
            except grpc.RpcError as e:
                # The dropped connection: UNAVAILABLE, and the watch goes on after the last record seen.
                assert e.code() == grpc.StatusCode.UNAVAILABLE, e
            finally:
                ch.close()
    finally:
        proxy.close()
    assert cuts == 2 and proxy.accepted >= 3
    assert final.accepted == 600
    # Every record exactly once, in order, across the drops.
    assert seqs == list(range(1, 601))

    # The same records again in batches of JSON lines, straight to the end.
    batched = []
    for ev in stub.WatchJob(pb.WatchJobRequest(job_id=job.job_id, batch_bytes=65536), metadata=auth(server.key), timeout=60):
        if ev.WhichOneof("event") == "batch":
            b = ev.batch
            got = b.jsonl.split(b"\n")[:-1]
            assert len(got) == b.count and b.last_seq - b.first_seq + 1 == b.count
            batched += got
    assert batched == lines
    assert all(json.loads(line)["instruction"] for line in lines)


def test_fetch_splits_matches_the_manifest(server, stub):
    req = body(200, advanced={"output_split": {"train": 80, "test": 20}})
    job = stub.Generate(pb.GenerateRequest(request_json=req), metadata=auth(server.key), timeout=30).job
    wait_done(stub, server.key, job.job_id)
    for batch_bytes in (0, 16384):
        splits, current = {}, None
        for ev in stub.FetchSplits(pb.FetchSplitsRequest(job_id=job.job_id, batch_bytes=batch_bytes),
                                   metadata=auth(server.key), timeout=60):
            kind = ev.WhichOneof("item")
            if kind == "split":
                current = ev.split
                splits[current.name] = (current, [])
            elif kind == "record":
                splits[current.name][1].append(ev.record.json)
            else:
                splits[current.name][1].extend(ev.batch.jsonl.split(b"\n")[:-1])
        assert sorted(splits) == ["test", "train"]
        assert [len(r) for _, r in (splits["train"], splits["test"])] == [160, 40]
        for info, records in splits.values():
            assert info.count == len(records)
            assert hashlib.sha256(b"".join(r + b"\n" for r in records)).hexdigest() == info.sha256
    manifest = json.loads(stub.GetManifest(pb.GetManifestRequest(job_id=job.job_id), metadata=auth(server.key), timeout=10).json)
    assert {s["name"]: s["sha256"] for s in manifest["splits"]} == {i.name: i.sha256 for i, _ in splits.values()}


def test_a_missing_or_wrong_key_is_unauthenticated(stub):
    with pytest.raises(grpc.RpcError) as e:
        stub.ListJobs(pb.ListJobsRequest(), timeout=10)
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED and "authorization" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        stub.ListJobs(pb.ListJobsRequest(), metadata=auth("sk_live_" + "0" * 40), timeout=10)
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as e:
        stub.ListJobs(pb.ListJobsRequest(), metadata=[("authorization", "Basic abc")], timeout=10)
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED and "Bearer" in e.value.details()


def test_a_read_only_key_reads_and_is_refused_the_rest(server, stub):
    made = stub.CreateApiKey(pb.CreateApiKeyRequest(name="loader", scope="read"), metadata=auth(server.key), timeout=10)
    assert made.info.scope == "read" and made.key.startswith("sk_live_")
    stub.ListJobs(pb.ListJobsRequest(), metadata=auth(made.key), timeout=10)
    with pytest.raises(grpc.RpcError) as e:
        stub.Generate(pb.GenerateRequest(request_json=body(5)), metadata=auth(made.key), timeout=10)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert trailers(e.value)["synthd-error-code"] == "KEY_SCOPE"
    assert status_of(e.value).error_code == "KEY_SCOPE"


def test_a_validation_error_names_every_field_in_the_trailers(server, stub):
    bad = json.dumps({"schema": "instruction_v2", "domain": "customer support", "count": 0, "model": "fast",
                      "advanced": {"temprature": 0.5}})
    with pytest.raises(grpc.RpcError) as e:
        stub.Generate(pb.GenerateRequest(request_json=bad), metadata=auth(server.key), timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    t = trailers(e.value)
    assert t["synthd-error-code"] == "VALIDATION_ERROR"
    s = status_of(e.value)
    assert s.code == status_pb2.INVALID_ARGUMENT and s.message == e.value.details()
    fields = {f.field for f in s.field_errors}
    assert {"schema", "count", "advanced.temprature"} <= fields, fields
    # Unknown fields in the binary request are refused too, as on the framed protocol.
    raw = pb.GetJobRequest(job_id="syn_job_x").SerializeToString() + b"\xa0\x06\x01"
    with pytest.raises(grpc.RpcError) as e:
        stub.GetJob(pb.GetJobRequest.FromString(raw), metadata=auth(server.key), timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "does not define" in e.value.details()


def test_a_client_without_a_certificate_is_refused(server, pki):
    creds = grpc.ssl_channel_credentials(root_certificates=open(pki("ca.pem"), "rb").read())
    ch = grpc.secure_channel(f"localhost:{server.grpc_port}", creds)
    with pytest.raises(grpc.RpcError) as e:
        rpc.SynthdStub(ch).Health(pb.HealthRequest(), timeout=10)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    ch.close()


def test_grpc_calls_are_counted_with_the_framed_ones(server, stub):
    """The metrics count calls on the gRPC endpoint by method and code, a stream once."""
    import urllib.request
    from prometheus_client.parser import text_string_to_metric_families
    stub.Health(pb.HealthRequest(), timeout=10)
    with pytest.raises(grpc.RpcError):
        stub.GetJob(pb.GetJobRequest(job_id="syn_job_doesnotexist0000000000"), metadata=auth(server.key), timeout=10)
    with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=30) as r:
        text = r.read().decode()
    calls = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "synthd_calls_total":
                calls[(sample.labels["method"], sample.labels["code"])] = sample.value
    assert calls.get(("Health", "OK"), 0) >= 2, calls
    assert calls.get(("GetJob", "NOT_FOUND")) == 1, calls
    assert calls.get(("ListJobs", "UNAUTHENTICATED"), 0) >= 3, calls
    assert calls.get(("WatchJob", "OK"), 0) >= 1, calls
