"""The protocol without synthd: addresses, the golden frames, and a misbehaving server."""

import json
import os
import socket
import struct
import tempfile
import threading

import pytest
from google.protobuf import json_format

import synthd
from synthd import _methods as M, _wire
from synthd._address import Address, parse_address, resolve_address
from synthd.v1 import frame_pb2, service_pb2 as pb, status_pb2
from harness import REPO

TESTDATA = REPO / "proto" / "testdata"


@pytest.mark.parametrize("text,want", [
    ("unix:/tmp/a.sock", Address("unix", path="/tmp/a.sock")),
    ("unix:///tmp/a.sock", Address("unix", path="/tmp/a.sock")),
    ("unix:rel.sock", Address("unix", path="rel.sock")),
    ("/var/run/s.sock", Address("unix", path="/var/run/s.sock")),
    ("./s.sock", Address("unix", path="./s.sock")),
    ("127.0.0.1:7000", Address("tcp", host="127.0.0.1", port=7000)),
    ("localhost:0", Address("tcp", host="localhost", port=0)),
    ("[::1]:7000", Address("tcp", host="::1", port=7000)),
    ("host:65535", Address("tcp", host="host", port=65535)),
    ("host:65536", None),
    (":7000", None),
    ("host", None),
    ("host:port", None),
    ("unix:", None),
    ("", None),
])
def test_addresses_parse_as_the_cli_parses_them(text, want):
    assert parse_address(text) == want


def test_address_comes_from_the_argument_then_the_environment_then_the_default(monkeypatch):
    monkeypatch.setenv("SYNTH_ADDRESS", "10.1.2.3:99")
    assert resolve_address("unix:/x") == Address("unix", path="/x")
    assert resolve_address(None) == Address("tcp", host="10.1.2.3", port=99)
    monkeypatch.delenv("SYNTH_ADDRESS")
    monkeypatch.setenv("HOME", "/home/someone")
    assert resolve_address(None) == Address("unix", path="/home/someone/.synthd/synthd.sock")
    with pytest.raises(ValueError):
        synthd.Client("not an address")


def test_api_key_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("SYNTH_API_KEY", "sk_live_from_env")
    assert synthd.Client("unix:/nowhere").api_key == "sk_live_from_env"
    assert synthd.Client("unix:/nowhere", "sk_live_arg").api_key == "sk_live_arg"


def golden_methods():
    return sorted(json.loads((TESTDATA / "Frame.json").read_text())["methods"].items())


@pytest.mark.parametrize("method,type_name", golden_methods())
def test_client_frames_are_the_golden_frames(method, type_name):
    """The frame this client sends to open each call is byte for byte proto/testdata/<Method>.frame;
    Generate and Plan go through job_request(), as a user's dict does."""
    env = json.loads((TESTDATA / "Frame.json").read_text())
    body = json.loads((TESTDATA / f"{method}.json").read_text())
    cls = M.BY_NAME[method].request_type
    assert cls.DESCRIPTOR.full_name == type_name
    if "request" in body and method in (M.GENERATE.name, M.PLAN.name):
        inner = body.pop("request")
        req = json_format.ParseDict(body, cls())
        req.request.CopyFrom(synthd.job_request(inner))
    else:
        req = json_format.ParseDict(body, cls())
    frame = _wire.open_frame(int(env["call_id"]), method, env["api_key"], int(env["timeout_ms"]),
                             req.SerializeToString(deterministic=True))
    assert _wire.encode_frame(frame) == (TESTDATA / f"{method}.frame").read_bytes()


def test_generate_golden_request_round_trips_through_the_documented_json():
    body = json.loads((TESTDATA / "Generate.json").read_text())["request"]
    req = synthd.job_request(body)
    # Both spellings of a 64-bit integer are accepted, and nothing is lost on the way back.
    assert synthd.job_request(json.dumps(body)) == req
    assert req.count == int(body["count"])


def test_unknown_fields_are_refused_with_their_path():
    with pytest.raises(synthd.InvalidArgument) as e:
        synthd.job_request({"schema": "instruction_v1", "advanced": {"hard_negatives": {"enabled": True, "bogus": 1}}})
    assert e.value.error_code == "MALFORMED_REQUEST"
    assert e.value.field_errors[0].field == "advanced.hard_negatives.bogus"
    with pytest.raises(synthd.InvalidArgument) as e:
        synthd.job_request({"count": "many"})
    assert e.value.field_errors[0].field == "count"
    with pytest.raises(synthd.InvalidArgument):
        synthd.job_request("{not json")
    with pytest.raises(TypeError):
        synthd.job_request(["schema"])


def test_errors_pickle_with_everything_they_carry():
    import pickle
    e = synthd.errors.error_for(3, "bad", "VALIDATION_ERROR", [synthd.FieldError("count", "positive", "0")], [], 1500)
    e2 = pickle.loads(pickle.dumps(e))
    assert type(e2) is synthd.InvalidArgument
    assert (e2.code, e2.message, e2.error_code, e2.field_errors, e2.retry_after) == \
        (synthd.StatusCode.INVALID_ARGUMENT, "bad", "VALIDATION_ERROR", [("count", "positive", "0")], 1.5)


# ---- a server that misbehaves ----------------------------------------------------------------

class OneShotServer:
    """On a Unix socket, answers each connection's first frame with `reply`, then ends it."""

    def __init__(self, reply: bytes):
        self.dir = tempfile.mkdtemp(prefix="sdpyw-", dir="/tmp")
        self.path = os.path.join(self.dir, "s.sock")
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(self.path)
        self.sock.listen(1)
        self.reply = reply
        self.got = None
        self.thread = threading.Thread(target=self.run, daemon=True)
        if reply is not None:
            self.thread.start()

    def run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                try:
                    n = struct.unpack(">I", conn.recv(4, socket.MSG_WAITALL))[0]
                    self.got = frame_pb2.Frame.FromString(conn.recv(n, socket.MSG_WAITALL))
                    conn.sendall(self.reply)
                    conn.shutdown(socket.SHUT_WR)
                    conn.recv(1)
                except OSError:
                    pass

    def close(self):
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        os.unlink(self.path)
        os.rmdir(self.dir)


def frame(**kw) -> bytes:
    return _wire.encode_frame(frame_pb2.Frame(**kw))


def status(code, message="", **kw):
    return status_pb2.Status(code=code, message=message, **kw)


def run_against(reply: bytes, call=lambda c: c.health(), **client_kw):
    srv = OneShotServer(reply)
    try:
        c = synthd.Client("unix:" + srv.path, "sk_live_x", reconnect_timeout=0, **client_kw)
        try:
            return call(c)
        finally:
            c.close()
    finally:
        srv.close()
        srv.thread.join(5)


def test_a_unary_answer_is_read_and_the_status_fields_reach_the_exception():
    resp = pb.HealthResponse(status="ok", version="9")
    assert run_against(frame(call_id=1, message=resp.SerializeToString()) + frame(call_id=1, status=status(0)))["version"] == "9"
    bad = status(8, "slow down", error_code="RATE_LIMITED", retry_after_ms=2500,
                 field_errors=[status_pb2.FieldError(field="f", rule="r", value="v")])
    with pytest.raises(synthd.ResourceExhausted) as e:
        run_against(frame(call_id=1, status=bad))
    assert e.value.retry_after == 2.5 and e.value.error_code == "RATE_LIMITED" and e.value.field_errors == [("f", "r", "v")]


def test_frames_for_other_calls_are_skipped():
    resp = pb.HealthResponse(status="ok")
    reply = frame(call_id=9, message=b"junk") + frame(call_id=1, message=resp.SerializeToString()) + frame(call_id=1, status=status(0))
    assert run_against(reply)["status"] == "ok"


@pytest.mark.parametrize("reply,error", [
    (b"\x00\x00\x00\x00", synthd.ProtocolError),                                  # N = 0
    (b"\x7f\x00\x00\x00", synthd.ProtocolError),                                  # N above the maximum
    (b"\x00\x00\x00\x03\xff\xff\xff", synthd.ProtocolError),                      # not a Frame
    (b"\x00\x00\x00\x02\x08\x01", synthd.ProtocolError),                          # a Frame with no kind
    (b"\x00\x00\x00\x10\x08\x01", synthd.ConnectionLost),                         # cut short
    (b"", synthd.ConnectionLost),                                                 # closed at once
])
def test_broken_framing_fails_the_call_cleanly(reply, error):
    with pytest.raises(error):
        run_against(reply)


def test_a_status_on_call_zero_ends_the_connection():
    with pytest.raises(synthd.InvalidArgument) as e:
        run_against(frame(call_id=0, status=status(3, "bad frame", error_code="MALFORMED_FRAME")))
    assert e.value.error_code == "MALFORMED_FRAME"


def test_a_stream_record_in_an_unexpected_layout_still_arrives():
    """A record whose fields come in another order (legal protobuf) goes through the slow path."""
    rec = b'{"a":1}'
    # WatchJobResponse{record{json, seq}} with json (field 2) before seq (field 1).
    record = b"\x12" + bytes([len(rec)]) + rec + b"\x08\x05"
    item = b"\x12" + bytes([len(record)]) + record
    reply = frame(call_id=1, message=item) + frame(call_id=1, status=status(0))
    got = run_against(reply, lambda c: list(c.records("syn_job_x", with_seq=True)))
    assert got == [(5, {"a": 1})]


def test_a_record_that_is_not_json_is_a_protocol_error():
    item = pb.WatchJobResponse(record=pb.Record(seq=1, json=b"{nope"))
    reply = frame(call_id=1, message=item.SerializeToString()) + frame(call_id=1, status=status(0))
    with pytest.raises(synthd.ProtocolError):
        run_against(reply, lambda c: list(c.records("syn_job_x")))


def test_a_server_that_never_answers_fails_the_call_after_the_deadline():
    srv = OneShotServer(None)  # serves nothing by itself: the loop below reads calls and never answers

    def silent(conn):
        with conn:
            conn.recv(65536)
            conn.recv(1)  # until the client goes away

    def run():
        while True:
            try:
                conn, _ = srv.sock.accept()
            except OSError:
                return
            threading.Thread(target=silent, args=(conn,), daemon=True).start()
    srv.run = run
    try:
        threading.Thread(target=run, daemon=True).start()
        c = synthd.Client("unix:" + srv.path, "sk_live_x", timeout=0.2)
        import time
        t0 = time.monotonic()
        with pytest.raises(synthd.DeadlineExceeded):
            c.job("syn_job_x")
        assert 5.0 <= time.monotonic() - t0 < 15  # the server's deadline plus a 5 s grace
    finally:
        srv.close()


def test_records_of_every_size_and_seq_width_in_every_mode():
    """The fast record path against records whose seq and JSON length need 1 to 4 varint bytes."""
    cases = [(1, {"a": 1}), (127, {"b": "x" * 100}), (128, {"c": "é" * 70}), (16383, {"d": "y" * 20000}),
             (16384, {"e": [1, 2.5, None, True]}), (2_097_152, {"f": "z" * 3_000_000}), (300_000_000, {})]
    reply = b"".join(frame(call_id=1, message=pb.WatchJobResponse(record=pb.Record(seq=s, json=json.dumps(d).encode())).SerializeToString())
                     for s, d in cases)
    reply += frame(call_id=1, message=pb.WatchJobResponse(progress=pb.Job(job_id="j", status="succeeded")).SerializeToString())
    reply += frame(call_id=1, status=status(0))
    want_raw = [json.dumps(d).encode() for _, d in cases]
    assert run_against(reply, lambda c: list(c.records("j"))) == [d for _, d in cases]
    assert run_against(reply, lambda c: list(c.records("j", raw=True))) == want_raw
    assert run_against(reply, lambda c: list(c.records("j", with_seq=True))) == cases
    assert run_against(reply, lambda c: list(c.records("j", raw=True, with_seq=True))) == [(s, r) for (s, _), r in zip(cases, want_raw)]
    events = run_against(reply, lambda c: list(c.watch("j")))
    assert [(e.seq, e.data) for e in events[:-1]] == cases and events[-1].status == "succeeded"
