"""Tests of the C client (libsynthc and synth-c-watch), run by `make -C clients/c test`.

They start a real synthd (with the fake LLM provider from tools/fake_provider) and run the C programs
built in clients/c/build against it:
  - tests/test_client.c: every call, error paths included, natively and under valgrind;
  - synth-c-watch: its output against `synth results` / `synth splits`, byte for byte, live and
    finished, over Unix and TCP, resumed across a synthd restart, and under valgrind;
  - tests/probe.c against tests/fake_server.py: malformed, oversized, truncated and out-of-place
    frames are refused with a clean error, under valgrind;
  - tests/offline.c: the client's frames equal the golden frames in proto/testdata, and its JSON
    reader agrees with Python's protobuf json_format;
  - `make install` into a temporary prefix, and a program built with the installed synthc.pc.

synthd and synth come from $SYNTHD_BIN_DIR, else from `swift build --show-bin-path` at the repo root
(which only prints the path; it does not build).
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
CDIR = HERE.parent
ROOT = CDIR.parent.parent
# tools/test-sanitize builds the client with AddressSanitizer and UBSan into another directory.
BUILD = Path(os.environ.get("SYNTHC_BUILD_DIR", CDIR / "build"))
TEST_CLIENT = BUILD / "tests" / "test_client"
PROBE = BUILD / "tests" / "probe"
OFFLINE = BUILD / "tests" / "offline"
WATCH = BUILD / "synth-c-watch"
VALGRIND = ["valgrind", "-q", "--leak-check=full", "--show-leak-kinds=definite,indirect,possible",
            "--errors-for-leak-kinds=definite,indirect,possible", "--error-exitcode=99"]
if os.environ.get("SYNTHC_SANITIZED"):
    # Built with AddressSanitizer, which valgrind cannot run: those runs are native, and ASan (with
    # its leak check) looks for what valgrind would.
    VALGRIND = []

FAST_TESTS = ["health", "tcp", "pricing", "auth", "validation", "plan", "jobs", "streams", "keys", "connect_errors", "lifecycle"]
SLOW_TESTS = ["live_watch", "cancel", "stream_cancel", "stream_deadline", "revoke_during_watch"]


def bin_dir():
    d = os.environ.get("SYNTHD_BIN_DIR")
    if not d:
        d = subprocess.run(["swift", "build", "--show-bin-path"], cwd=ROOT, capture_output=True, text=True,
                           check=True, timeout=120).stdout.strip()
    return Path(d)


BIN = bin_dir()
SYNTHD = str(BIN / "synthd")
SYNTH = str(BIN / "synth")


def run(cmd, timeout=300, **kw):
    return subprocess.run([str(c) for c in cmd], capture_output=True, timeout=timeout, **kw)


def die_with_parent():
    """In the child: SIGTERM when the test process dies, however it dies (Linux), so that a killed test
    run leaves no server behind."""
    os.setsid()
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def start_line(cmd, prefix, **kw):
    p = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True,
                         preexec_fn=die_with_parent, **kw)
    line = p.stdout.readline()
    if not line.startswith(prefix):
        stop(p)
        raise RuntimeError(f"{cmd[0]} did not start: {line!r}")
    return p, line.split()


def stop(p, sig=signal.SIGTERM):
    if p.poll() is None:
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            pass
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(5)


# ---- A real synthd ---------------------------------------------------------------------------------

class FakeProvider:
    def __init__(self):
        self.proc, parts = start_line([sys.executable, ROOT / "tools/fake_provider/server.py", "--port", "0",
                                       "--seed", "7"], "LISTENING")
        self.port = int(parts[1])

    def set_latency(self, ms):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/config", data=json.dumps({"latency_ms": ms}).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 200


class Synthd:
    """synthd serving a data directory on a Unix socket and a TCP port, against the fake provider."""

    def __init__(self, work, provider):
        self.work = Path(work)
        self.data = self.work / "data"
        self.sock = str(self.work / "s.sock")
        config = {"engine": {
            "providers": {
                "openai": {"kind": "openai", "base_url": f"http://127.0.0.1:{provider.port}/v1", "max_in_flight": 32},
                "anthropic": {"kind": "anthropic", "base_url": f"http://127.0.0.1:{provider.port}", "max_in_flight": 32},
            },
            "job_concurrency": 16,
        }, "server": {"rate_limit_per_minute": 0}}   # many calls a second from one org
        self.config = self.work / "config.json"
        self.config.write_text(json.dumps(config))
        self.proc = None
        self.start()

    def admin(self, *args):
        r = run([SYNTHD, "admin", *args, "--data", self.data], timeout=60)
        assert r.returncode == 0, r.stderr.decode()
        return r.stdout.decode().strip()

    def new_org(self, name):
        self.admin("create-org", name)
        return self.admin("create-key", "--org", name)

    def start(self):
        self.log = open(self.work / "synthd.log", "a")
        self.proc, parts = start_line([SYNTHD, "serve", "--data", self.data, "--unix", self.sock, "--tcp", "127.0.0.1:0",
                                       "--config", self.config], "LISTENING", stderr=self.log)
        fields = dict(p.split("=", 1) for p in parts[1:])
        self.address = "unix:" + fields["unix"]
        self.tcp = "127.0.0.1:" + fields["tcp"]

    def stop(self):
        stop(self.proc)
        self.log.close()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope="session")
def provider():
    p = FakeProvider()
    yield p
    stop(p.proc)


@pytest.fixture(scope="session")
def server(provider):
    work = tempfile.mkdtemp(prefix="synthc-", dir="/tmp")  # short: Unix socket paths are limited
    s = Synthd(work, provider)
    s.key = s.new_org("c-client-a")
    s.other_key = s.new_org("c-client-b")
    s.keys_key = s.new_org("c-client-keys")
    yield s
    s.stop()
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def slow(provider):
    """The provider answers each request after 150 ms, so that a job runs for seconds."""
    provider.set_latency(150)
    yield
    provider.set_latency(0)


def client_env(server):
    return dict(os.environ, SYNTH_ADDRESS=server.address, SYNTH_API_KEY=server.key, SYNTHC_TCP_ADDRESS=server.tcp,
                SYNTHC_OTHER_KEY=server.other_key, SYNTHC_KEYS_KEY=server.keys_key,
                SYNTHC_MISSING_SOCKET=str(server.work / "nothing.sock"), SYNTHC_CLOSED_PORT=str(free_port()))


def check_test_client(r, names):
    out = r.stdout.decode()
    assert r.returncode == 0, out + r.stderr.decode()[-6000:]
    for n in names:
        assert re.search(rf"^ok {n} ", out, re.M), f"{n} did not pass:\n{out}{r.stderr.decode()[-4000:]}"


def synth(server, *args, key=None):
    env = dict(os.environ, SYNTH_ADDRESS=server.address, SYNTH_API_KEY=key or server.key)
    return run([SYNTH, *args], env=env, timeout=300)


def generate(server, request, key=None):
    path = server.work / f"req-{time.monotonic_ns()}.json"
    path.write_text(json.dumps(request) if isinstance(request, dict) else request)
    r = synth(server, "generate", "--request", path, "--json", key=key)
    assert r.returncode == 0, r.stderr.decode()
    return json.loads(r.stdout)["job_id"]


def results(server, job_id):
    r = synth(server, "results", job_id)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout


def watch(server, *args, env_key=True, valgrind=False, timeout=300):
    env = dict(os.environ, SYNTH_ADDRESS=server.address, SYNTH_API_KEY=server.key) if env_key else \
        {k: v for k, v in os.environ.items() if k not in ("SYNTH_ADDRESS", "SYNTH_API_KEY")}
    return run((VALGRIND if valgrind else []) + [WATCH, *args], env=env, timeout=timeout)


ADVANCED = json.loads((ROOT / "tools/examples/advanced-full.json").read_text())


# ---- The calls -------------------------------------------------------------------------------------

def test_every_call(server):
    r = run([TEST_CLIENT, *FAST_TESTS], env=client_env(server))
    check_test_client(r, FAST_TESTS)


def test_every_call_on_live_jobs(server, slow):
    r = run([TEST_CLIENT, *SLOW_TESTS], env=client_env(server))
    check_test_client(r, SLOW_TESTS)


def test_every_call_valgrind(server):
    r = run(VALGRIND + [TEST_CLIENT, *FAST_TESTS], env=client_env(server), timeout=600)
    check_test_client(r, FAST_TESTS)


def test_live_streams_valgrind(server, slow):
    r = run(VALGRIND + [TEST_CLIENT, *SLOW_TESTS], env=client_env(server), timeout=600)
    check_test_client(r, SLOW_TESTS)


# ---- synth-c-watch ---------------------------------------------------------------------------------

def test_watch_live_equals_results(server, slow):
    job = generate(server, {"schema": "instruction_v1", "domain": "customer support for a SaaS product",
                            "count": 400, "model": "fast"})
    r = watch(server, job)  # started at once: the job is still running
    assert r.returncode == 0, r.stderr.decode()
    lines = r.stdout.split(b"\n")
    assert len(lines) == 401 and lines[-1] == b""
    assert r.stdout == results(server, job)


def test_watch_finished_job_and_tcp(server):
    job = generate(server, ADVANCED)
    first = watch(server, job)
    assert first.returncode == 0, first.stderr.decode()
    want = results(server, job)
    assert first.stdout == want and want.count(b"\n") == 500
    # Address and key as arguments instead of the environment, over TCP.
    r = watch(server, "--address", server.tcp, "--api-key", server.key, job, env_key=False)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == want
    # Batches (the default, 1 MiB) against one message per record and small batches: the same bytes.
    for size in ("0", "4096"):
        r = watch(server, "--batch-bytes", size, job)
        assert r.returncode == 0 and r.stdout == want, (size, r.stderr.decode())
    # Resume after a sequence number.
    r = watch(server, "--after-seq", "450", job)
    assert r.returncode == 0 and r.stdout == b"".join(want.splitlines(keepends=True)[450:])
    r = watch(server, "--after-seq", "500", job)
    assert r.returncode == 0 and r.stdout == b""
    # Progress on stderr.
    r = watch(server, "--progress", job)
    assert r.returncode == 0 and r.stdout == want
    assert f"{job} succeeded 500/500".encode() in r.stderr


def test_splits_equal_synth_splits(server):
    job = generate(server, ADVANCED)
    assert watch(server, job).returncode == 0  # wait for it to finish
    ours, theirs = server.work / f"ours-{job}", server.work / f"theirs-{job}"
    r = watch(server, "--splits", "--dir", ours, job)
    assert r.returncode == 0, r.stderr.decode()
    t = synth(server, "splits", job, "--dir", theirs)
    assert t.returncode == 0, t.stderr.decode()
    names = sorted(os.listdir(theirs))
    assert names == ["train.jsonl", "validation.jsonl"]
    assert sorted(os.listdir(ours)) == names
    for n in names:
        assert (ours / n).read_bytes() == (theirs / n).read_bytes(), n
    # One split to stdout; all splits to stdout, concatenated in the order synthd sends them.
    r = watch(server, "--split", "validation", job)
    assert r.returncode == 0 and r.stdout == (theirs / "validation.jsonl").read_bytes()
    r = watch(server, "--splits", job)
    assert r.returncode == 0
    assert sorted(r.stdout.splitlines()) == sorted((theirs / "train.jsonl").read_bytes().splitlines()
                                                   + (theirs / "validation.jsonl").read_bytes().splitlines())
    r = watch(server, "--split", "validation", "--batch-bytes", "0", job)
    assert r.returncode == 0 and r.stdout == (theirs / "validation.jsonl").read_bytes()
    r = watch(server, "--split", "nope", job)
    assert r.returncode == 4 and b"NOT_FOUND" in r.stderr and r.stdout == b""


def test_watch_exit_codes(server, slow):
    r = watch(server, "syn_job_doesnotexist")
    assert r.returncode == 4 and b"NOT_FOUND" in r.stderr
    r = watch(server, "--api-key", "sk_live_nope", "syn_job_doesnotexist")
    assert r.returncode == 3 and b"UNAUTHENTICATED" in r.stderr
    r = watch(server, "--address", "unix:" + str(server.work / "missing.sock"), "x")
    assert r.returncode == 6 and b"CONNECT_FAILED" in r.stderr
    r = watch(server, "--address", "nonsense", "x")
    assert r.returncode == 64 and b"BAD_ADDRESS" in r.stderr
    assert watch(server).returncode == 64
    assert watch(server, "--bogus", "x").returncode == 64
    assert watch(server, "--help").returncode == 0
    # A job that ends cancelled: its records so far, then exit status 1.
    job = generate(server, {"schema": "instruction_v1", "domain": "support", "count": 3000, "model": "fast"})
    p = subprocess.Popen([WATCH, job], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=dict(os.environ, SYNTH_ADDRESS=server.address, SYNTH_API_KEY=server.key))
    time.sleep(1)
    assert synth(server, "cancel", job).returncode == 0
    out, err = p.communicate(timeout=60)
    assert p.returncode == 1 and b"cancelled" in err
    assert out == results(server, job)
    # What it kept is delivered as a finished job's is: its splits hold exactly those records.
    r = watch(server, "--splits", job)
    assert r.returncode == 0 and sorted(r.stdout.splitlines()) == sorted(out.splitlines())


def test_watch_resumes_across_a_restart(provider, slow):
    work = tempfile.mkdtemp(prefix="synthc-r-", dir="/tmp")
    s = Synthd(work, provider)
    try:
        s.key = s.new_org("restart")
        job = generate(s, {"schema": "instruction_v1", "domain": "support", "count": 600, "model": "fast"})
        p = subprocess.Popen([WATCH, "--retry-for", "30", job], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=dict(os.environ, SYNTH_ADDRESS=s.address, SYNTH_API_KEY=s.key))
        time.sleep(1.5)
        s.stop()
        time.sleep(1)
        s.start()
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
        assert b"reconnecting to resume after record" in err
        assert out == results(s, job) and out.count(b"\n") == 600
    finally:
        s.stop()
        shutil.rmtree(work, ignore_errors=True)


def test_watch_valgrind(server, slow):
    job = generate(server, {"schema": "preference_v1", "domain": "writing assistance", "count": 150, "model": "deep",
                            "advanced": {"output_split": {"train": 90, "validation": 10}}})
    r = watch(server, job, valgrind=True)  # live
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == results(server, job)
    r = watch(server, "--splits", "--dir", server.work / f"vg-{job}", job, valgrind=True)
    assert r.returncode == 0, r.stderr.decode()
    for args, code in ((["syn_job_doesnotexist"], 4), (["--api-key", "sk_live_nope", job], 3),
                       (["--split", "nope", job], 4), (["--address", "nonsense", job], 64)):
        r = watch(server, *args, valgrind=True)
        assert r.returncode == code, (args, r.returncode, r.stderr.decode())


# ---- Malformed frames from a fake server -----------------------------------------------------------

OK_ = ("ok", "OK", "OK", "-", "1", "OK/-")


def proto_err(ecode):
    return ("err", "PROTOCOL", "INTERNAL", ecode, "0", "ARG/NOT_CONNECTED")


CLOSED = ("err", "ARG/NOT_CONNECTED")
EXPECT = {
    # name: (rc, err, code, error_code, connected, after), and what else must hold
    "unary_ok": OK_,
    "unary_status_error": ("err", "STATUS", "NOT_FOUND", "-", "1", "OK/-"),
    "unary_oversized": proto_err("FRAME_TOO_LARGE"),
    "unary_oversized_by_one": proto_err("FRAME_TOO_LARGE"),
    "maxframe_limit": proto_err("FRAME_TOO_LARGE"),
    "maxframe_fits": OK_,
    "unary_empty_frame": proto_err("EMPTY_FRAME"),
    "unary_truncated_body": proto_err("TRUNCATED_FRAME"),
    "unary_truncated_header": proto_err("TRUNCATED_FRAME"),
    "unary_closed": ("err", "IO", "UNAVAILABLE", "CONNECTION_CLOSED", "0", "ARG/NOT_CONNECTED"),
    "unary_garbage": proto_err("MALFORMED_FRAME"),
    "unary_bad_wiretype": proto_err("MALFORMED_FRAME"),
    "unary_huge_varint": proto_err("MALFORMED_FRAME"),
    "unary_length_overrun": proto_err("MALFORMED_FRAME"),
    "unary_no_kind": proto_err("MALFORMED_FRAME"),
    "unary_bad_status": proto_err("MALFORMED_FRAME"),
    "unary_open_frame": proto_err("UNEXPECTED_FRAME"),
    "unary_cancel_frame": proto_err("UNEXPECTED_FRAME"),
    "unary_unknown_call": proto_err("UNEXPECTED_FRAME"),
    "unary_wrong_type": proto_err("MALFORMED_MESSAGE"),
    "unary_garbage_message": proto_err("MALFORMED_MESSAGE"),
    "unary_two_messages": proto_err("UNEXPECTED_FRAME"),
    "unary_no_message": proto_err("UNEXPECTED_FRAME"),
    "unary_call0": ("err", "STATUS", "RESOURCE_EXHAUSTED", "FRAME_TOO_LARGE", "0", "ARG/NOT_CONNECTED"),
    "unary_call0_ok": proto_err("UNEXPECTED_FRAME"),
    "unary_call0_message": proto_err("UNEXPECTED_FRAME"),
    "hang_forever": ("err", "IO", "DEADLINE_EXCEEDED", "TIMEOUT", "0", "ARG/NOT_CONNECTED"),
    "unary_drip": OK_,
    "watch_ok": OK_,
    "watch_status_midstream": ("err", "STATUS", "INTERNAL", "-", "1", "OK/-"),
    "watch_call0_midstream": ("err", "STATUS", "INVALID_ARGUMENT", "MALFORMED_FRAME", "0", "ARG/NOT_CONNECTED"),
    "watch_closed_midstream": ("err", "IO", "UNAVAILABLE", "CONNECTION_CLOSED", "0", "ARG/NOT_CONNECTED"),
    "watch_truncated_midstream": proto_err("TRUNCATED_FRAME"),
    "watch_out_of_order": proto_err("BAD_SEQUENCE"),
    "watch_seq_zero": proto_err("BAD_SEQUENCE"),
    "watch_bad_record": proto_err("MALFORMED_MESSAGE"),
    "watch_bad_event": proto_err("MALFORMED_MESSAGE"),
    "watch_bad_progress": proto_err("MALFORMED_MESSAGE"),
    "watch_no_progress": proto_err("BAD_SEQUENCE"),
    "watch_empty_ok": proto_err("BAD_SEQUENCE"),
    "watch_immediate_error": ("err", "STATUS", "NOT_FOUND", "-", "1", "OK/-"),
    "watch_unknown_event": OK_,
    "watch_big_record": OK_,
    "watch_big_then_small": OK_,
    "watch_many": OK_,
    "splits_ok": OK_,
    "splits_short": proto_err("BAD_SEQUENCE"),
    "splits_extra": proto_err("BAD_SEQUENCE"),
    "splits_early_next": proto_err("BAD_SEQUENCE"),
    "splits_record_first": proto_err("BAD_SEQUENCE"),
    "splits_negative": proto_err("BAD_SEQUENCE"),
    "abandon_watch": OK_,
    "bwatch_ok": OK_,
    "bwatch_records": OK_,
    "bwatch_overlap": proto_err("BAD_SEQUENCE"),
    "bwatch_count_zero": proto_err("MALFORMED_MESSAGE"),
    "bwatch_count_above_span": proto_err("BAD_SEQUENCE"),
    "bwatch_cut_line": proto_err("MALFORMED_MESSAGE"),
    "bwatch_bad_batch": proto_err("MALFORMED_MESSAGE"),
    "watch_unasked_batch": proto_err("UNEXPECTED_FRAME"),
    "bsplits_ok": OK_,
    "bsplits_extra": proto_err("BAD_SEQUENCE"),
}


def fnv(records):
    h = 14695981039346656037
    for r in records:
        for b in r + b"\n":
            h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def test_malformed_frames_are_refused_cleanly(tmp_path):
    sys.path.insert(0, str(HERE))
    import fake_server  # the record contents, to check what came through
    assert sorted(EXPECT) == sorted(fake_server.SCENARIOS), "every scenario has an expectation"
    sock = tempfile.mktemp(prefix="synthc-fake-", suffix=".sock", dir="/tmp")
    p, _ = start_line([sys.executable, HERE / "fake_server.py", sock], "LISTENING")
    try:
        r = run(VALGRIND + [PROBE, "unix:" + sock, *EXPECT], timeout=600)
    finally:
        p.stdin.close()  # the fake server's signal to stop
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            stop(p)
        if os.path.exists(sock):
            os.unlink(sock)
    out = r.stdout.decode()
    assert r.returncode == 0, f"valgrind or the probe failed ({r.returncode}):\n{r.stderr.decode()[-6000:]}"
    got = {}
    for line in out.splitlines():
        name, rest = line.split(" ", 1)
        fields = dict(re.findall(r"(\w+)=(\S*)", rest.split(" msg=")[0]))
        fields["msg"] = rest.split(" msg=", 1)[1] if " msg=" in rest else ""
        got[name] = fields
    problems = []
    for name, want in EXPECT.items():
        g = got.get(name)
        if g is None:
            problems.append(f"{name}: no result")
            continue
        have = (g["rc"], g["err"], g["code"], g["ecode"], g["connected"], g["after"])
        if have != want:
            problems.append(f"{name}: got {have}, want {want} ({g['msg']})")
        if g["rc"] == "err" and not g["msg"]:
            problems.append(f"{name}: no error message")
    rec = fake_server.rec_json
    stream_checks = {
        "watch_ok": (7, [rec(i) for i in range(1, 6)]),
        "watch_status_midstream": (4, [rec(i) for i in range(1, 4)]),
        "watch_closed_midstream": (4, [rec(i) for i in range(1, 4)]),
        "watch_unknown_event": (2, [rec(1)]),
        "watch_big_record": (4, [b'{"big":"' + b"a" * (5 << 20) + b'"}', rec(2)]),
        "watch_big_then_small": (4, [b'{"big":"' + b"b" * (3 << 20) + b'"}', rec(2)]),
        "watch_many": (20002, [rec(i) for i in range(1, 20001)]),
        "splits_ok": (5, [rec(5), rec(2), rec(9)]),
        "bwatch_ok": (4, [rec(i) for i in range(1, 6)]),
        "bwatch_records": (6, [rec(i) for i in range(1, 6)]),
        "bsplits_ok": (4, [rec(5), rec(2), rec(9)]),
    }
    for name, (items, records) in stream_checks.items():
        g = got.get(name, {})
        have = (g.get("items"), g.get("records"), g.get("bytes"), g.get("fnv"))
        want = (str(items), str(len(records)), str(sum(len(x) for x in records)), fnv(records))
        if have != want:
            problems.append(f"{name}: items/records/bytes/fnv {have}, want {want}")
    if got.get("unary_status_error", {}).get("field_errors") != "1":
        problems.append("unary_status_error: the status's field errors did not come through")
    assert not problems, "\n".join(problems)


# ---- No server -------------------------------------------------------------------------------------

def test_frames_equal_the_golden_frames():
    r = run(VALGRIND + [OFFLINE, "golden", ROOT / "proto/testdata"], timeout=300)
    out = r.stdout.decode()
    assert r.returncode == 0, out + r.stderr.decode()
    assert out.count("ok ") == 17, out


def pb_modules(tmp):
    """The generated Python code in clients/python/synthd/v1, imported without the synthd package."""
    pkg = Path(tmp) / "pb" / "synthd"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "v1").symlink_to(ROOT / "clients/python/synthd/v1")
    sys.path.insert(0, str(pkg.parent))
    for m in [m for m in sys.modules if m == "synthd" or m.startswith("synthd.")]:
        del sys.modules[m]
    from google.protobuf import json_format
    from synthd.v1 import request_pb2
    return json_format, request_pb2


JSON_OK = {
    "numbers-as-strings": '{"schema":"instruction_v1","domain":"d","count":"1200","constraints":{"min_tokens":"64"}}',
    "exponent": '{"schema":"instruction_v1","count":1e2,"advanced":{"output_split":{"a":12.5,"b":"87.5"}}}',
    "camel-case": '{"systemPrompt":"x","advanced":{"styleRules":["a","b"],"responsePolicy":{"k":"v"}}}',
    "nulls": '{"schema":null,"advanced":{"categories":null,"hard_negatives":{"percentage":null}}}',
    "escapes": '{"domain":"caf\\u00e9 \\ud83d\\ude00 \\"q\\" \\\\ \\/ \\n\\t","system_prompt":"\u00e9t\u00e9"}',
    "values": '{"advanced":{"metadata_fields":[{"name":"a","type":"constant","value":1.5},'
              '{"name":"b","type":"constant","value":true},{"name":"c","type":"constant","value":"s"},'
              '{"name":"d","type":"constant","value":null},{"name":"e","type":"constant","value":{"x":[1,"y",{"z":null}]}}],'
              '"hard_negatives":{"enabled":true,"techniques":["edge_cases",{"name":"n","description":"d"}]}}}',
    "whitespace": ' \n\t{ "count" : 5 , "verified" : false }\r\n ',
    "empty": "{}",
    "drive-pairs": '{"schema":"conflict_v1","conflict_config":{"drive_pairs":[{"a":"x","b":"y"},'
                   '{"axis_name":"n","drives":[{"name":"p"},{"name":"q","description":"r"}]}],'
                   '"axis_distribution":{"n":100},"resolution_mode":"graded"}}',
    "coverage": '{"advanced":{"coverage":{"dimensions":[{"name":"lang","values":["en","fr"]}],"mode":"each_value",'
                '"min_per_cell":3}}}',
}

JSON_BAD = {
    "unknown-field": ('{"schema":"instruction_v1","domian":"x"}', "domian"),
    "unknown-nested": ('{"advanced":{"categories":{"a":{"percent":5}}}}', "percent"),
    "duplicate": ('{"count":1,"count":2}', "duplicate"),
    "trailing": ('{"count":1} x', "after the JSON"),
    "not-object": ('[1,2]', "expected '{'"),
    "fraction-int": ('{"count":1.5}', "count"),
    "int-range": ('{"count":9223372036854775808}', "out of range"),
    "int-string-junk": ('{"count":"12abc"}', "count"),
    "bool-type": ('{"verified":"yes"}', "verified"),
    "string-type": ('{"domain":5}', "domain"),
    "array-type": ('{"advanced":{"style_rules":"x"}}', "style_rules"),
    "unterminated": ('{"domain":"abc', "unterminated"),
    "bad-escape": ('{"domain":"\\x"}', "escape"),
    "lone-surrogate": ('{"domain":"\\ud800"}', "escape"),
    "control-char": ('{"domain":"a\x01b"}', "control"),
    "leading-zero": ('{"count":012}', ""),
    "missing-colon": ('{"count" 1}', "':'"),
    "missing-comma": ('{"count":1 "domain":"x"}', ""),
    "truncated": ('{"count":', "number"),
    "deep": ('{"advanced":{"metadata_fields":[{"name":"a","value":' + "[" * 200 + "]" * 200 + '}]}}', "deeply"),
    "nan-int": ('{"count":"NaN"}', "count"),
    "inf-double": ('{"advanced":{"output_split":{"a":1e999}}}', "out of range"),
    "null-in-list": ('{"advanced":{"style_rules":[null]}}', "null"),
    "map-null": ('{"advanced":{"output_split":{"a":null}}}', "null"),
}


def test_json_requests_match_python_protobuf(tmp_path):
    json_format, request_pb2 = pb_modules(tmp_path)
    files = {p.stem: p.read_text() for p in sorted((ROOT / "tools/examples").glob("*.json"))}
    files.update(JSON_OK)
    paths = []
    for name, text in files.items():
        p = tmp_path / f"ok-{name}.json"
        p.write_bytes(text.encode())
        paths.append(p)
    bad_paths = {}
    for name, (text, _) in JSON_BAD.items():
        p = tmp_path / f"bad-{name}.json"
        p.write_bytes(text.encode("utf-8", "surrogatepass"))
        bad_paths[str(p)] = name
    invalid_utf8 = tmp_path / "bad-utf8.json"
    invalid_utf8.write_bytes(b'{"domain":"\xff\xfe"}')
    bad_paths[str(invalid_utf8)] = "utf8"
    r = run(VALGRIND + [OFFLINE, "json", *paths, *bad_paths], timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    lines = dict(l.split(" ", 1) for l in r.stdout.decode().splitlines())
    for p in paths:
        out = lines[str(p)]
        assert not out.startswith("ERR"), f"{p.name}: {out}"
        ours = request_pb2.JobRequest.FromString(bytes.fromhex(out))
        theirs = json_format.Parse(p.read_text(), request_pb2.JobRequest())
        assert ours == theirs, f"{p.name}:\nC:      {ours}\nPython: {theirs}"
    for path, name in bad_paths.items():
        out = lines[path]
        assert out.startswith("ERR MALFORMED_REQUEST: "), f"{name}: accepted: {out}"
        if name in JSON_BAD:
            assert JSON_BAD[name][1] in out, f"{name}: {out}"


# ---- Build and install -----------------------------------------------------------------------------

PROGRAM = r"""
#include <stdio.h>
#include <synthc.h>
int main(void) {
    synthc_client *c = synthc_connect(NULL, NULL);
    if (c == NULL || c->err) { fprintf(stderr, "%s\n", c ? c->errstr : "oom"); return 1; }
    Synthd__V1__HealthResponse *h = synthc_health(c);
    if (h == NULL) { fprintf(stderr, "%s: %s\n", synthc_code_name(c->code), c->errstr); synthc_close(c); return 1; }
    printf("health %s %s\n", h->status, SYNTHC_VERSION);
    synthc_free(h);
    synthc_close(c);
    return 0;
}
"""


def test_version_is_the_projects():
    # One version for the whole project: the VERSION file, the header, the library's file name
    # and what the tool says.
    version = (ROOT / "VERSION").read_text().strip()
    assert f'#define SYNTHC_VERSION "{version}"' in (CDIR / "include/synthc.h").read_text()
    r = run([BUILD / "synth-c-watch", "--version"])
    assert r.returncode == 0 and r.stdout.decode() == f"synth-c-watch {version}\n", r
    assert (BUILD / f"libsynthc.so.{version}").exists()


def test_install_and_pkg_config(server, tmp_path):
    prefix = tmp_path / "prefix"
    r = run(["make", "-C", CDIR, "install", f"PREFIX={prefix}"], timeout=600)
    assert r.returncode == 0, r.stderr.decode()
    pc_path = prefix / "lib/pkgconfig"
    for f in ["include/synthc/synthc.h", "include/synthc/synthd/v1/service.pb-c.h",
              "include/synthc/google/protobuf/struct.pb-c.h", "lib/libsynthc.a", "lib/libsynthc.so",
              "lib/libsynthc.so.1", "lib/pkgconfig/synthc.pc", "bin/synth-c-watch"]:
        assert (prefix / f).exists(), f
    env = dict(os.environ, PKG_CONFIG_PATH=str(pc_path), SYNTH_ADDRESS=server.address, SYNTH_API_KEY=server.key)
    pc = lambda *a: run(["pkg-config", *a, "synthc"], env=env).stdout.decode().split()  # noqa: E731
    version = (ROOT / "VERSION").read_text().strip()
    assert run(["pkg-config", "--modversion", "synthc"], env=env).stdout.decode().strip() == version
    src = tmp_path / "prog.c"
    src.write_text(PROGRAM)
    # Shared, through pkg-config alone.
    shared = tmp_path / "prog-shared"
    r = run(["cc", "-Wall", "-Wextra", "-Werror", "-o", shared, src, *pc("--cflags"), *pc("--libs")], env=env)
    assert r.returncode == 0, r.stderr.decode()
    r = run([shared], env=dict(env, LD_LIBRARY_PATH=str(prefix / "lib")))
    assert r.returncode == 0 and r.stdout.decode().startswith(f"health ok {version}"), r.stderr.decode()
    assert b"libsynthc.so.1" in run(["ldd", shared], env=dict(env, LD_LIBRARY_PATH=str(prefix / "lib"))).stdout
    # Static.
    static = tmp_path / "prog-static"
    r = run(["cc", "-o", static, src, *pc("--cflags"), str(prefix / "lib/libsynthc.a"),
             *[a for a in pc("--static", "--libs") if a != "-lsynthc"]], env=env)
    assert r.returncode == 0, r.stderr.decode()
    r = run([static], env=env)
    assert r.returncode == 0 and r.stdout.startswith(b"health ok"), r.stderr.decode()
    assert b"libsynthc" not in run(["ldd", static]).stdout
    # The installed synth-c-watch runs.
    assert run([prefix / "bin/synth-c-watch", "--help"]).returncode == 0
    # DESTDIR stages the same tree under another root.
    dest = tmp_path / "dest"
    r = run(["make", "-C", CDIR, "install", "PREFIX=/opt/synthc", f"DESTDIR={dest}"], timeout=600)
    assert r.returncode == 0, r.stderr.decode()
    staged = (dest / "opt/synthc/lib/pkgconfig/synthc.pc").read_text()
    assert "prefix=/opt/synthc" in staged and str(dest) not in staged
    r = run(["make", "-C", CDIR, "uninstall", "PREFIX=/opt/synthc", f"DESTDIR={dest}"])
    assert r.returncode == 0 and not (dest / "opt/synthc/lib/libsynthc.a").exists()


def compilers():
    found = ["cc"]
    clang = shutil.which("clang") or ("/opt/swift/usr/bin/clang" if os.path.exists("/opt/swift/usr/bin/clang") else None)
    if clang:
        found.append(clang)
    return found


@pytest.mark.parametrize("cc", compilers())
def test_builds_without_warnings(cc, tmp_path):
    r = run(["make", "-C", CDIR, f"BUILD={tmp_path}/build", f"CC={cc}", "CFLAGS=-O2 -g -Werror",
             "all", f"{tmp_path}/build/tests/test_client", f"{tmp_path}/build/tests/probe",
             f"{tmp_path}/build/tests/offline"], timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr).decode()[-6000:]


# ---- TLS ---------------------------------------------------------------------------------------------

def make_pki(d):
    """A CA, a server certificate for 127.0.0.1 and localhost, a client certificate, and another CA."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for name in ("ca", "other-ca"):
        r = run(["openssl", "req", "-x509", *ec, "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
                 "-subj", f"/CN=synthd test {name}", "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign"], cwd=d)
        assert r.returncode == 0, r.stderr.decode()
    (Path(d) / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    (Path(d) / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, ext in (("server", "server.ext"), ("client", "client.ext")):
        for cmd in (["openssl", "req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}"],
                    ["openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                     "-out", f"{name}.pem", "-days", "2", "-extfile", ext]):
            r = run(cmd, cwd=d)
            assert r.returncode == 0, r.stderr.decode()
    return lambda name: str(Path(d) / name)


def test_watch_over_mutual_tls_valgrind(provider):
    """synth-c-watch through OpenSSL against a synthd that wants client certificates: the records
    arrive whole under valgrind; a server of another CA and a missing client certificate are refused
    with a clear error."""
    work = tempfile.mkdtemp(prefix="synthc-tls-", dir="/tmp")
    try:
        pki = make_pki(work)
        s = Synthd.__new__(Synthd)
        s.work, s.data, s.sock = Path(work), Path(work) / "data", str(Path(work) / "s.sock")
        s.config = Path(work) / "config.json"
        s.config.write_text(json.dumps({"engine": {"providers": {
            "openai": {"kind": "openai", "base_url": f"http://127.0.0.1:{provider.port}/v1"},
            "anthropic": {"kind": "anthropic", "base_url": f"http://127.0.0.1:{provider.port}"}}},
            "server": {"rate_limit_per_minute": 0, "tls": {"certificate_chain": pki("server.pem"),
                                                            "private_key": pki("server.key"), "client_ca": pki("ca.pem")}}}))
        s.start()
        try:
            s.key = s.new_org("c-tls")
            job = generate(s, ADVANCED)
            want = results(s, job)
            tls = ["--address", "tls:" + s.tcp, "--api-key", s.key, "--tls-ca", pki("ca.pem")]
            mine = ["--tls-cert", pki("client.pem"), "--tls-key", pki("client.key")]
            r = run(VALGRIND + [WATCH, *tls, *mine, job], timeout=300)
            assert r.returncode == 0, r.stderr.decode()
            assert r.stdout == want and want.count(b"\n") == 500
            # The synth CLI over the same mutual TLS, as a second witness.
            r = run([SYNTH, "results", job, *tls, *mine])
            assert r.returncode == 0 and r.stdout == want, r.stderr.decode()
            wrong_ca = ["--address", "tls:" + s.tcp, "--api-key", s.key, "--tls-ca", pki("other-ca.pem")]
            r = run(VALGRIND + [WATCH, *wrong_ca, *mine, "--retry-for", "0", job])
            assert r.returncode == 6 and b"TLS" in r.stderr and b"certificate" in r.stderr, r.stderr.decode()
            r = run(VALGRIND + [WATCH, *tls, "--retry-for", "0", job])
            assert r.returncode == 6 and b"certificate" in r.stderr.lower(), r.stderr.decode()
            assert r.stdout == b""
        finally:
            s.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
