"""Tests for tools/fake-provider: start the real server on port 0 and talk to
it over real HTTP with urllib (http.client for keep-alive checks).

Run:  python3 -m pytest -q tools/fake_provider/tests
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PKG = os.path.dirname(HERE)
LAUNCHER = os.path.join(os.path.dirname(PKG), "fake-provider")
sys.path.insert(0, PKG)

import content as C  # noqa: E402


# ------------------------------------------------------------------ helpers
class Provider:
    """A running fake-provider subprocess."""

    def __init__(self, *args: str):
        self.proc = subprocess.Popen([LAUNCHER, "--port", "0", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], 10)
        assert ready, "server did not print LISTENING in time"
        line = self.proc.stdout.readline()
        m = re.fullmatch(r"LISTENING (\d+)\n", line)
        assert m, f"unexpected first line {line!r}; stderr: {self.proc.stderr.read() if not line else ''}"
        self.port = int(m.group(1))
        self.base = f"http://127.0.0.1:{self.port}"

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(5)
        finally:
            self.proc.stdout.close()
            self.proc.stderr.close()

    # --- raw HTTP
    def request(self, method: str, path: str, body=None, headers=None, timeout: float = 10):
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def get_json(self, path: str):
        status, _, body = self.request("GET", path)
        assert status == 200
        return json.loads(body)

    def config(self, **changes):
        status, _, body = self.request("POST", "/config", changes)
        assert status == 200, body
        return json.loads(body)

    def stats(self):
        return self.get_json("/stats")

    # --- API calls
    def openai(self, user="Write one record.", system="SCHEMA: instruction_v1", headers=None, **extra):
        body = {"model": "fake-gpt-4o-mini", "temperature": 0.7,
                "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
                **extra}
        return self.request("POST", "/v1/chat/completions", body,
                            {"Authorization": "Bearer test-key", **(headers or {})})

    def anthropic(self, user="Write one record.", system="SCHEMA: instruction_v1", headers=None, **extra):
        body = {"model": "fake-claude-sonnet", "max_tokens": 4096, "system": system,
                "messages": [{"role": "user", "content": user}], **extra}
        return self.request("POST", "/v1/messages", body,
                            {"x-api-key": "test-key", "anthropic-version": "2023-06-01", **(headers or {})})


def openai_record(resp) -> dict:
    status, _, body = resp
    assert status == 200, body
    return json.loads(json.loads(body)["choices"][0]["message"]["content"])


def anthropic_record(resp) -> dict:
    status, _, body = resp
    assert status == 200, body
    return json.loads(json.loads(body)["content"][0]["text"])


@pytest.fixture
def provider(request):
    """Factory: provider('--rate-429', '1') starts a server, stopped at teardown."""
    started = []

    def start(*args):
        p = Provider("--seed", "1", *args)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


@pytest.fixture(scope="module")
def shared():
    p = Provider("--seed", "7")
    yield p
    p.stop()


# ---------------------------------------------------------------- launching
def test_launch_port_file_and_sigterm(tmp_path):
    port_file = tmp_path / "port"
    p = Provider("--seed", "1", "--port-file", str(port_file))
    assert port_file.read_text().strip() == str(p.port)
    assert p.get_json("/health") == {"status": "ok"}
    rc = p.stop()
    assert rc == 0
    # nothing else was printed on stdout besides the LISTENING line
    assert p.proc.stdout.closed


def test_sigterm_exits_promptly_even_with_hung_request(provider):
    p = provider("--rate-hang", "1", "--hang-seconds", "30")
    t = threading.Thread(target=lambda: _swallow(p.openai), daemon=True)
    t.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    p.proc.send_signal(signal.SIGTERM)
    assert p.proc.wait(5) == 0
    assert time.monotonic() - t0 < 3


def _swallow(fn):
    try:
        fn()
    except Exception:
        pass


def test_health_and_models(shared):
    assert shared.get_json("/health") == {"status": "ok"}
    models = shared.get_json("/v1/models")
    assert models["object"] == "list" and models["data"][0]["object"] == "model"
    status, _, body = shared.request("GET", "/v1/models", headers={"anthropic-version": "2023-06-01"})
    assert status == 200 and json.loads(body)["data"][0]["type"] == "model"


# ------------------------------------------------------------- wire formats
def test_openai_wire_format(shared):
    system = "You produce data.\nSCHEMA: instruction_v1\nDOMAIN: astronomy"
    user = "Make one record."
    status, headers, body = shared.openai(user=user, system=system)
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert int(headers["Content-Length"]) == len(body)
    for h in ("x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests",
              "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-request-id"):
        assert headers[h], h
    assert re.fullmatch(r"\d+(\.\d+)?(ms|s)|\d+m\d+s", headers["x-ratelimit-reset-requests"])
    obj = json.loads(body)
    assert obj["object"] == "chat.completion" and obj["id"].startswith("chatcmpl-")
    assert obj["model"] == "fake-gpt-4o-mini" and isinstance(obj["created"], int)
    choice = obj["choices"][0]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    content = choice["message"]["content"]
    record = json.loads(content)
    assert set(record) == {"instruction", "input", "output"}
    usage = obj["usage"]
    assert usage["prompt_tokens"] == max(1, round(len(system + "\n" + user) / 4))
    assert usage["completion_tokens"] == max(1, round(len(content) / 4))
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_openai_alias_path_and_response_format(shared):
    body = {"model": "m", "messages": [{"role": "user", "content": "no schema line here"}],
            "response_format": {"type": "json_schema",
                                "json_schema": {"name": "eval_v1", "schema": {}, "strict": True}}}
    status, _, raw = shared.request("POST", "/chat/completions", body)
    assert status == 200
    record = json.loads(json.loads(raw)["choices"][0]["message"]["content"])
    assert set(record) == {"input", "ideal_output", "metrics"}   # schema taken from json_schema name
    body["response_format"] = {"type": "json_object"}
    record = openai_record(shared.request("POST", "/chat/completions", body))
    assert set(record) == {"instruction", "input", "output"}      # fallback


def test_openai_content_parts_and_tool_call(shared):
    body = {"model": "m",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "SCHEMA: judge"}]}],
            "tools": [{"type": "function", "function": {"name": "emit", "parameters": {}}}],
            "tool_choice": {"type": "function", "function": {"name": "emit"}}}
    status, _, raw = shared.request("POST", "/v1/chat/completions", body)
    assert status == 200
    msg = json.loads(raw)["choices"][0]["message"]
    call = msg["tool_calls"][0]
    assert call["function"]["name"] == "emit"
    assert set(json.loads(call["function"]["arguments"])) == {"relevance", "accuracy", "completeness", "overall"}


def test_anthropic_wire_format(shared):
    status, headers, body = shared.anthropic(system="SCHEMA: eval_v1")
    assert status == 200
    for h in ("anthropic-ratelimit-requests-limit", "anthropic-ratelimit-requests-remaining",
              "anthropic-ratelimit-requests-reset", "request-id"):
        assert headers[h], h
    obj = json.loads(body)
    assert obj["type"] == "message" and obj["role"] == "assistant" and obj["id"].startswith("msg_")
    assert obj["stop_reason"] == "end_turn" and obj["model"] == "fake-claude-sonnet"
    assert obj["content"][0]["type"] == "text"
    assert set(json.loads(obj["content"][0]["text"])) == {"input", "ideal_output", "metrics"}
    assert obj["usage"]["input_tokens"] >= 1 and obj["usage"]["output_tokens"] >= 1


def test_anthropic_system_blocks_and_forced_tool(shared):
    tools = [{"name": "record", "description": "d", "input_schema": {"type": "object"}}]
    status, _, body = shared.anthropic(system=[{"type": "text", "text": "SCHEMA: preference_v1"}],
                                       tools=tools, tool_choice={"type": "tool", "name": "record"})
    assert status == 200
    obj = json.loads(body)
    assert obj["stop_reason"] == "tool_use"
    block = obj["content"][0]
    assert block["type"] == "tool_use" and block["name"] == "record" and block["id"].startswith("toolu_")
    assert {"prompt", "chosen", "rejected"} <= set(block["input"])


def test_anthropic_validation_errors(shared):
    status, _, body = shared.request("POST", "/v1/messages",
                                     {"model": "c", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]},
                                     {"x-api-key": "k"})   # no anthropic-version
    assert status == 400
    err = json.loads(body)
    assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error"
    status, _, body = shared.request("POST", "/v1/messages", {"model": "c", "messages": []},
                                     {"anthropic-version": "2023-06-01"})
    assert status == 400
    status, _, body = shared.request("POST", "/v1/chat/completions", b"{not json")
    assert status == 400 and json.loads(body)["error"]["type"] == "invalid_request_error"


def test_keep_alive_expect_continue_and_chunked(shared):
    conn = http.client.HTTPConnection("127.0.0.1", shared.port, timeout=5)
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "SCHEMA: judge"}]})
    socks = set()
    for i in range(3):
        headers = {"Content-Type": "application/json"}
        if i == 1:
            headers["Expect"] = "100-continue"
        conn.request("POST", "/v1/chat/completions", body=body, headers=headers)
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.getheader("Content-Length")
        json.loads(resp.read())
        socks.add(id(conn.sock))
    # chunked request body on the same connection
    conn.request("POST", "/v1/chat/completions", body=iter([body[:10].encode(), body[10:].encode()]),
                 headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
                 encode_chunked=True)
    resp = conn.getresponse()
    assert resp.status == 200
    resp.read()
    socks.add(id(conn.sock))
    assert len(socks) == 1, "connection was not kept alive"
    conn.close()


# ------------------------------------------------------------------ schemas
def _sentences_ok(text: str) -> bool:
    return text.endswith(".") and text[0].isupper()


def _check_main(text: str):
    assert 200 <= len(text) <= 800, len(text)
    assert _sentences_ok(text)
    assert "SCHEMA:" not in text


@pytest.mark.parametrize("api", ["openai", "anthropic"])
@pytest.mark.parametrize("schema", C.SCHEMAS)
def test_schema_shapes(shared, api, schema):
    system = f"Generate data.\nSCHEMA: {schema}\nCATEGORY: code_review\nTECHNIQUE: few_shot\nDOMAIN: logistics"
    for i in range(3):
        user = f"Item {i} for {schema} via {api}."
        r = (openai_record(shared.openai(user=user, system=system)) if api == "openai"
             else anthropic_record(shared.anthropic(user=user, system=system)))
        check_schema(schema, r)


def check_schema(schema: str, r: dict):
    if schema == "instruction_v1":
        assert set(r) == {"instruction", "input", "output"}
        assert all(isinstance(r[k], str) and r[k] for k in r)
        _check_main(r["output"])
        assert r["instruction"].endswith(".")
    elif schema == "preference_v1":
        assert set(r) == {"prompt", "chosen", "rejected", "chosen_score", "rejected_score", "reasoning"}
        _check_main(r["chosen"])
        _check_main(r["rejected"])
        assert 7 <= r["chosen_score"] <= 10 and 1 <= r["rejected_score"] <= 5
        assert round(r["chosen_score"], 1) == r["chosen_score"]
        assert round(r["rejected_score"], 1) == r["rejected_score"]
        assert r["reasoning"].endswith(".")
    elif schema == "eval_v1":
        assert set(r) == {"input", "ideal_output", "metrics"}
        _check_main(r["ideal_output"])
        assert 2 <= len(r["metrics"]) <= 4
        assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*", m) for m in r["metrics"])
    elif schema == "conflict_v1":
        assert set(r) == {"input", "axis", "tension_type", "responses", "resolution"}
        assert len(r["responses"]) == 2
        for resp in r["responses"]:
            assert set(resp) == {"drive", "output", "viable"} and resp["viable"] is True
            _check_main(resp["output"])
        res = r["resolution"]
        assert set(res) == {"preferred_drive", "losing_drive", "confidence", "override_condition", "reasoning"}
        assert {res["preferred_drive"], res["losing_drive"]} == {x["drive"] for x in r["responses"]}
        assert 0.5 <= res["confidence"] <= 0.95
    elif schema == "judge":
        assert set(r) == {"relevance", "accuracy", "completeness", "overall"}
        assert all(isinstance(v, float) and 7 <= v <= 10 for v in r.values())
    elif schema == "invariants":
        assert r == {"violations": []}


def test_conflict_uses_drives_and_axis(shared):
    system = "SCHEMA: conflict_v1\nAXIS: speed_vs_safety\nDRIVES: thrift, generosity"
    r = openai_record(shared.openai(system=system))
    assert r["axis"] == "speed_vs_safety"
    assert [x["drive"] for x in r["responses"]] == ["thrift", "generosity"]


def test_judge_assessments(shared):
    r = openai_record(shared.openai(system="SCHEMA: judge\nASSESS: helpfulness\n  ASSESS: tone_match\n", user="x"))
    assert set(r["assessments"]) == {"helpfulness", "tone_match"}
    assert all(1 <= v <= 10 for v in r["assessments"].values())


def test_schema_line_in_user_message_and_fallback(shared):
    r = openai_record(shared.openai(system="You are helpful.", user="Please.\nSCHEMA: judge\n"))
    assert set(r) == {"relevance", "accuracy", "completeness", "overall"}
    r = openai_record(shared.openai(system="You are helpful.", user="No directives."))
    assert set(r) == {"instruction", "input", "output"}
    r = openai_record(shared.openai(system="SCHEMA: bogus_v9"))
    assert set(r) == {"instruction", "input", "output"}


# ---------------------------------------------------- determinism / variety
def _sequence(p: Provider, n=6):
    out = []
    for i in range(n):
        schema = C.SCHEMAS[i % len(C.SCHEMAS)]
        out.append(p.openai(system=f"SCHEMA: {schema}", user=f"prompt {i % 3}")[2])
    return [json.loads(b)["choices"][0]["message"]["content"] for b in out]


def test_same_seed_is_deterministic(provider):
    a = provider("--seed", "42")
    b = provider("--seed", "42")
    c = provider("--seed", "43")
    sa, sb, sc = _sequence(a), _sequence(b), _sequence(c)
    assert sa == sb
    assert all(x != y for x, y in zip(sa, sc) if '"violations"' not in x)


def test_answer_chars_sets_the_main_texts_length(provider):
    p = provider("--answer-chars", "2000")
    for i in range(5):
        out = openai_record(p.openai(user=f"Write one record. VARIATION: {i}"))["output"]
        assert 1850 <= len(out) <= 2150 and _sentences_ok(out), len(out)
    pref = anthropic_record(p.anthropic(system="SCHEMA: preference_v1"))
    assert 1850 <= len(pref["chosen"]) <= 2150 and 1850 <= len(pref["rejected"]) <= 2150
    status, _, _ = p.request("POST", "/config", {"answer_chars": -1})
    assert status == 400


def test_vary_and_no_vary(provider):
    vary = provider()            # --vary is the default
    same_vary = [openai_record(vary.openai(user="identical")) for _ in range(3)]
    assert len({json.dumps(r) for r in same_vary}) == 3
    fixed = provider("--no-vary")
    same = [openai_record(fixed.openai(user="identical")) for _ in range(3)]
    assert len({json.dumps(r) for r in same}) == 1
    # with --vary the n-th repeat of a prompt is still deterministic
    again = provider()
    assert [openai_record(again.openai(user="identical")) for _ in range(3)] == same_vary


def test_variety_trigram_jaccard(shared):
    outputs, wholes = [], []
    for i in range(20):
        content = json.loads(shared.openai(user=f"Distinct prompt number {i}.")[2])["choices"][0]["message"]["content"]
        outputs.append(json.loads(content)["output"])
        wholes.append(content)
    worst = max(C.trigram_jaccard(a, b) for a, b in itertools.combinations(outputs, 2))
    assert worst < 0.4, worst
    worst_whole = max(C.trigram_jaccard(a, b) for a, b in itertools.combinations(wholes, 2))
    assert worst_whole < 0.5, worst_whole


def test_near_duplicates(provider):
    p = provider("--near-dup-rate", "1")
    first = openai_record(p.openai(user="one"))       # nothing earlier: generated fresh
    second = openai_record(p.openai(user="two"))      # copy of `first` with words changed
    assert second != first
    assert C.trigram_jaccard(first["output"], second["output"]) > 0.8
    changed = sum(a != b for a, b in zip(first["output"].split(), second["output"].split()))
    changed += sum(a != b for a, b in zip(first["instruction"].split(), second["instruction"].split()))
    assert 1 <= changed <= 2
    log = p.stats()["log"]
    assert log[1]["near_dup_of"] == log[0]["request_id"]
    assert p.stats()["near_dups"] == 1


# ------------------------------------------------------------------- faults
def test_rate_429_retry_after(provider):
    p = provider("--rate-429", "1", "--retry-after", "2")
    status, headers, body = p.openai()
    assert status == 429
    assert headers["retry-after"] == "2" and headers["retry-after-ms"] == "2000"
    assert json.loads(body)["error"]["code"] == "rate_limit_exceeded"
    status, headers, body = p.anthropic()
    assert status == 429 and headers["retry-after"] == "2"
    assert json.loads(body)["error"]["type"] == "rate_limit_error"
    log = p.stats()["log"]
    assert [e["status"] for e in log] == [429, 429] and all(e["retry_after"] == 2 for e in log)


def test_rate_500_and_529(provider):
    p = provider("--rate-500", "1")
    status, _, body = p.openai()
    assert status == 500 and json.loads(body)["error"]["type"] == "server_error"
    status, _, body = p.anthropic()
    assert status == 500 and json.loads(body)["error"]["type"] == "api_error"
    p.config(rate_500=0, rate_529=1)
    status, _, body = p.anthropic()
    assert status == 529
    assert json.loads(body) == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    status, _, body = p.openai()
    assert status == 503 and "overloaded" in json.loads(body)["error"]["message"]


def test_rate_400(provider):
    p = provider("--rate-400", "1")
    status, headers, body = p.openai()
    assert status == 400 and json.loads(body)["error"]["type"] == "invalid_request_error"
    assert "retry-after" not in headers
    status, _, body = p.anthropic()
    assert status == 400 and json.loads(body)["error"]["type"] == "invalid_request_error"


def test_rate_hang(provider):
    p = provider("--rate-hang", "1", "--hang-seconds", "0.6")
    t0 = time.monotonic()
    with pytest.raises((http.client.RemoteDisconnected, urllib.error.URLError, ConnectionError)):
        p.openai()
    assert time.monotonic() - t0 >= 0.55
    # a client timeout shorter than the hang fires first
    with pytest.raises((TimeoutError, socket.timeout, urllib.error.URLError)):
        p.request("POST", "/v1/messages", {"model": "c", "max_tokens": 5,
                                           "messages": [{"role": "user", "content": "x"}]},
                  {"anthropic-version": "2023-06-01"}, timeout=0.2)
    time.sleep(0.5)
    log = p.stats()["log"]
    assert [e["fault"] for e in log] == ["hang", "hang"] and log[0]["status"] is None


def test_rate_reset(provider):
    p = provider("--rate-reset", "1")
    with pytest.raises((ConnectionResetError, http.client.RemoteDisconnected, urllib.error.URLError)) as ei:
        p.openai()
    err = ei.value.reason if isinstance(ei.value, urllib.error.URLError) else ei.value
    assert isinstance(err, (ConnectionResetError, http.client.RemoteDisconnected))
    assert p.stats()["by_fault"] == {"reset": 1}
    assert p.get_json("/health") == {"status": "ok"}    # server survives


def test_rate_malformed(provider):
    p = provider("--rate-malformed", "1")
    kinds = set()
    for i in range(16):
        api = "openai" if i % 2 else "anthropic"
        status, _, body = p.openai(user=str(i)) if api == "openai" else p.anthropic(user=str(i))
        assert status == 200
        try:
            obj = json.loads(body)
        except ValueError:
            kinds.add("body")
            continue
        text = (obj["choices"][0]["message"]["content"] if api == "openai" else obj["content"][0]["text"])
        with pytest.raises(ValueError):
            json.loads(text)
        kinds.add("content")
    assert kinds == {"body", "content"}


def test_rate_truncate(provider):
    p = provider("--rate-truncate", "1")
    obj = json.loads(p.openai()[2])
    choice = obj["choices"][0]
    assert choice["finish_reason"] == "length"
    text = choice["message"]["content"]
    assert not text.endswith(".") and not text.endswith("}")
    with pytest.raises(ValueError):
        json.loads(text)
    obj = json.loads(p.anthropic()[2])
    assert obj["stop_reason"] == "max_tokens"
    assert not obj["content"][0]["text"].endswith("}")


def test_rate_truncate_tool_use(provider):
    p = provider("--rate-truncate", "1")
    tools = [{"name": "emit", "input_schema": {"type": "object"}}]
    obj = json.loads(p.anthropic(tools=tools, tool_choice={"type": "tool", "name": "emit"})[2])
    assert obj["stop_reason"] == "max_tokens"
    assert obj["content"][0]["type"] == "tool_use"
    assert not obj["content"][0]["input"]["output"].endswith(".")


def test_natural_max_tokens_truncation(shared):
    obj = json.loads(shared.openai(max_tokens=20)[2])
    assert obj["choices"][0]["finish_reason"] == "length"
    assert obj["usage"]["completion_tokens"] <= 20
    obj = json.loads(shared.anthropic(max_tokens=20)[2])
    assert obj["stop_reason"] == "max_tokens"


def test_rate_refusal(provider):
    p = provider("--rate-refusal", "1")
    msg = json.loads(p.openai()[2])["choices"][0]["message"]
    assert msg["content"] is None and msg["refusal"] == "I can't help with that."
    obj = json.loads(p.anthropic()[2])
    assert obj["content"] == [{"type": "text", "text": "I can't help with that."}]


def test_latency_and_jitter(provider):
    p = provider("--latency-ms", "150", "--jitter-ms", "100")
    times = []
    for i in range(3):
        t0 = time.monotonic()
        assert p.openai(user=str(i))[0] == 200
        times.append(time.monotonic() - t0)
    assert min(times) >= 0.15 and max(times) < 2.0


def test_max_concurrency(provider):
    p = provider("--max-concurrency", "2", "--latency-ms", "800")
    results = []
    lock = threading.Lock()

    def call(i):
        r = p.openai(user=str(i))
        with lock:
            results.append(r)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(r[0] for r in results)
    assert statuses == [200, 200, 429, 429, 429]
    assert all(r[1]["retry-after"] for r in results if r[0] == 429)
    stats = p.stats()
    assert stats["by_fault"] == {"concurrency": 3} and stats["max_in_flight"] >= 3


def test_rpm_limit(provider):
    p = provider("--rpm-limit", "3")
    statuses = [p.openai(user=str(i))[0] for i in range(4)]
    assert statuses == [200, 200, 200, 429]
    status, headers, _ = p.openai()
    assert status == 429 and int(headers["retry-after"]) >= 1


def test_rpm_window(provider):
    p = provider("--rpm-limit", "2", "--rpm-window", "0.5")
    first = p.openai(user="a")
    assert first[0] == 200 and first[1]["x-ratelimit-limit-requests"] == "2"
    assert first[1]["x-ratelimit-remaining-requests"] == "1"
    assert first[1]["x-ratelimit-reset-requests"].endswith("ms")
    assert int(first[1]["x-ratelimit-reset-requests"][:-2]) <= 500
    assert [p.openai(user=str(i))[0] for i in range(2)] == [200, 429]
    time.sleep(0.6)
    assert p.openai(user="c")[0] == 200


def test_fault_rates_and_reproducibility(provider):
    def run(seed):
        p = provider("--seed", str(seed), "--rate-500", "0.3", "--rate-429", "0.1", "--retry-after", "0")
        return [p.openai(user=str(i % 5))[0] for i in range(150)]

    a, b, c = run(5), run(5), run(6)
    assert a == b and a != c
    share_500 = a.count(500) / len(a)
    share_429 = a.count(429) / len(a)
    assert 0.18 < share_500 < 0.42 and 0.02 < share_429 < 0.2


def test_fault_key_prompt_independent_of_order(provider):
    p = provider("--seed", "3", "--rate-500", "0.5", "--fault-key", "prompt")
    q = provider("--seed", "3", "--rate-500", "0.5", "--fault-key", "prompt")
    prompts = [f"p{i}" for i in range(12)]
    a = {u: p.openai(user=u)[0] for u in prompts}
    b = {u: q.openai(user=u)[0] for u in reversed(prompts)}
    assert a == b and set(a.values()) == {200, 500}


# ------------------------------------------------------------------- plants
PLANT_CASES = [
    ("leakage", "instruction_v1", lambda r: r["output"].startswith("SCHEMA: instruction_v1")),
    ("truncation", "instruction_v1", lambda r: not r["output"].endswith(".")),
    ("empty", "eval_v1", lambda r: r["ideal_output"] == ""),
    ("low_margin", "preference_v1", lambda r: r["chosen_score"] - r["rejected_score"] < 2),
    ("low_judge", "judge", lambda r: r["overall"] < 6),
    ("invariant_violation", "invariants",
     lambda r: r["violations"] and r["violations"][0]["rule_index"] == 0 and r["violations"][0]["explanation"]),
]


@pytest.mark.parametrize("kind,schema,check", PLANT_CASES, ids=[c[0] for c in PLANT_CASES])
def test_plants(provider, kind, schema, check):
    p = provider("--plant", f"{kind}:1")
    status, _, body = p.openai(system=f"SCHEMA: {schema}\nCATEGORY: qa")
    obj = json.loads(body)
    assert obj["choices"][0]["finish_reason"] == "stop"
    assert check(json.loads(obj["choices"][0]["message"]["content"]))
    assert p.stats()["planted"] == {kind: 1}
    # a plant that does not apply to the schema is not counted
    p.openai(system="SCHEMA: invariants" if schema != "invariants" else "SCHEMA: judge")
    assert p.stats()["planted"] == {kind: 1}


# ------------------------------------------------------- stats / config / auth
def test_stats_and_reset(provider):
    p = provider("--rate-429", "0.5", "--retry-after", "0.25")
    served_prompt = served_completion = 0
    bodies = []
    for i in range(12):
        status, headers, body = p.openai(user=f"q{i}") if i % 3 else p.anthropic(user=f"q{i}")
        bodies.append(body)
        if status == 200:
            u = json.loads(body)["usage"]
            served_prompt += u.get("prompt_tokens", u.get("input_tokens"))
            served_completion += u.get("completion_tokens", u.get("output_tokens"))
        else:
            assert headers["retry-after"] == "0.25" and headers["retry-after-ms"] == "250"
    s = p.stats()
    assert s["requests_total"] == 12
    assert s["by_path"] == {"/v1/chat/completions": 8, "/v1/messages": 4}
    assert sum(s["by_status"].values()) == 12 and set(s["by_status"]) <= {"200", "429"}
    assert s["prompt_tokens"] == served_prompt and s["completion_tokens"] == served_completion
    log = s["log"]
    assert len(log) == 12
    assert all({"t", "path", "status", "retry_after", "request_id", "body_sha"} <= set(e) for e in log)
    assert all(e["retry_after"] == 0.25 for e in log if e["status"] == 429)
    assert all(e["retry_after"] is None for e in log if e["status"] == 200)
    assert [e["t"] for e in log] == sorted(e["t"] for e in log)
    assert len({e["body_sha"] for e in log}) == 12
    assert "log" not in p.get_json("/stats?log=0")
    status, _, _ = p.request("POST", "/reset")
    assert status == 200
    s = p.stats()
    assert s["requests_total"] == 0 and s["log"] == [] and s["prompt_tokens"] == 0


def test_reset_all_restarts_counters(provider):
    p = provider("--rate-500", "0.5")
    def run():
        out = []
        for _ in range(8):
            status, _, body = p.openai(user="same")
            out.append((status, json.loads(body)["choices"][0]["message"]["content"] if status == 200 else None))
        return out

    first = run()
    p.request("POST", "/reset", {"all": True})
    assert run() == first                     # same statuses and same contents
    assert {status for status, _ in first} == {200, 500}
    assert p.stats()["generation_requests"] == 8


def test_config_endpoint(provider):
    p = provider()
    assert p.openai()[0] == 200
    cfg = p.config(rate_429=1.0, retry_after=3)
    assert cfg["rate_429"] == 1.0 and cfg["retry_after"] == 3.0
    status, headers, _ = p.openai()
    assert status == 429 and headers["retry-after"] == "3"
    cfg = p.config(rate_429=0, plant={"empty": 1.0}, latency_ms=0)
    assert cfg["plant"] == {"empty": 1.0}
    assert openai_record(p.openai())["output"] == ""
    p.config(plant=["leakage:1"])
    assert openai_record(p.openai())["output"].startswith("SCHEMA:")
    for bad in ({"rate_429": 2}, {"no_such": 1}, {"plant": ["bogus:1"]}, {"vary": "yes"}):
        status, _, body = p.request("POST", "/config", bad)
        assert status == 400, bad
    assert p.get_json("/config")["plant"] == {"leakage": 1.0}


def test_require_key(provider):
    p = provider("--require-key", "sk-right")
    status, _, body = p.openai(headers={"Authorization": "Bearer sk-wrong-key"})
    assert status == 401
    err = json.loads(body)["error"]
    assert err["type"] == "invalid_request_error" and err["code"] == "invalid_api_key" and err["message"]
    status, _, body = p.request("POST", "/v1/chat/completions",
                                {"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert status == 401 and json.loads(body)["error"]["code"] == "invalid_api_key"
    assert p.openai(headers={"Authorization": "Bearer sk-right"})[0] == 200
    status, _, body = p.anthropic(headers={"x-api-key": "nope"})
    assert status == 401 and json.loads(body)["error"]["type"] == "authentication_error"
    assert p.anthropic(headers={"x-api-key": "sk-right"})[0] == 200
    assert p.request("GET", "/v1/models")[0] == 401


# ------------------------------------------------------- event loop server
def _raw_exchange(port: int, data: bytes, answers: int, timeout: float = 5.0, shut_wr: bool = False):
    """Send raw bytes, read `answers` HTTP answers (Content-Length framed); returns
    ([(status line, headers, body)], whether the server closed the connection afterwards)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        if shut_wr:
            s.shutdown(socket.SHUT_WR)
        buf, out = b"", []
        while len(out) < answers:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                head = buf[:end].decode("latin-1").split("\r\n")
                headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:])}
                n = int(headers.get("content-length", 0))
                if len(buf) >= end + 4 + n:
                    out.append((head[0], headers, buf[end + 4:end + 4 + n]))
                    buf = buf[end + 4 + n:]
                    continue
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        try:
            s.settimeout(0.5)
            closed = s.recv(1) == b""
        except (socket.timeout, TimeoutError):
            closed = False
        except ConnectionResetError:
            closed = True
        return out, closed
    finally:
        s.close()


def _post(path: str, obj, extra: str = "", version: str = "HTTP/1.1") -> bytes:
    body = json.dumps(obj).encode()
    return (f"POST {path} {version}\r\nHost: x\r\nContent-Type: application/json\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def _chat(schema: str, user: str = "x") -> dict:
    return {"model": "m", "messages": [{"role": "system", "content": f"SCHEMA: {schema}"},
                                       {"role": "user", "content": user}]}


def test_pipelined_requests_answered_in_order(provider):
    p = provider("--latency-ms", "50")
    data = _post("/v1/chat/completions", _chat("judge")) + _post("/v1/chat/completions", _chat("invariants"))
    t0 = time.monotonic()
    answers, closed = _raw_exchange(p.port, data, 2)
    assert time.monotonic() - t0 >= 0.1          # one at a time, each with its latency
    assert [a[0] for a in answers] == ["HTTP/1.1 200 OK"] * 2 and not closed
    first, second = (json.loads(json.loads(a[2])["choices"][0]["message"]["content"]) for a in answers)
    assert "overall" in first and second == {"violations": []}


def test_http10_bad_requests_and_methods(provider):
    p = provider()
    answers, closed = _raw_exchange(p.port, b"GET /health HTTP/1.0\r\n\r\n", 1)
    assert answers[0][0] == "HTTP/1.1 200 OK" and json.loads(answers[0][2]) == {"status": "ok"}
    assert closed, "HTTP/1.0 without keep-alive: the answer ends the connection"
    answers, closed = _raw_exchange(p.port, b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" * 2, 2)
    assert len(answers) == 2 and not closed
    answers, closed = _raw_exchange(p.port, b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n", 1)
    assert answers[0][1]["connection"] == "close" and closed
    answers, closed = _raw_exchange(p.port, b"NONSENSE\r\n\r\n", 1)
    assert answers[0][0].startswith("HTTP/1.1 400") and closed
    answers, _ = _raw_exchange(p.port, b"PUT /health HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 1)
    assert answers[0][0].startswith("HTTP/1.1 501")
    answers, closed = _raw_exchange(p.port, b"POST /reset HTTP/1.1\r\nContent-Length: x\r\n\r\n", 1)
    assert answers[0][0].startswith("HTTP/1.1 400") and closed
    assert p.get_json("/health") == {"status": "ok"}


def test_half_closed_client_still_gets_its_answer(provider):
    p = provider("--latency-ms", "100")
    answers, closed = _raw_exchange(p.port, _post("/v1/chat/completions", _chat("judge")), 1, shut_wr=True)
    assert answers and answers[0][0] == "HTTP/1.1 200 OK" and closed


def test_expect_continue_before_body(provider):
    p = provider()
    body = json.dumps(_chat("judge")).encode()
    s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    try:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body))
        assert s.recv(65536).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        s.sendall(body)
        got = b""
        while b"\r\n\r\n" not in got:
            got += s.recv(65536)
        assert got.startswith(b"HTTP/1.1 200 OK")
    finally:
        s.close()


def test_concurrent_requests_wait_together(provider):
    p = provider("--latency-ms", "300")
    results, lock = [], threading.Lock()

    def call(i):
        t0 = time.monotonic()
        r = p.anthropic(user=f"c{i}", system="SCHEMA: preference_v1") if i % 2 else p.openai(user=f"c{i}")
        with lock:
            results.append((i, time.monotonic() - t0, r))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(40)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.monotonic() - t0 < 6          # 40 x 0.3 s one after the other would be 12 s
    assert len(results) == 40 and all(took >= 0.29 for _, took, _ in results)
    for i, _, r in results:
        if i % 2:
            check_schema("preference_v1", anthropic_record(r))
        else:
            check_schema("instruction_v1", openai_record(r))
    assert p.stats()["max_in_flight"] > 1


def test_latency_does_not_change_answers_or_stats(provider):
    """Content made while a request waits, and answers built then, are what answering at the end
    gives: a server with latency and one without answer a sequence of requests the same way."""
    flags = ("--seed", "11", "--near-dup-rate", "0.3", "--plant", "leakage:0.2", "--plant", "low_margin:0.5",
             "--rate-truncate", "0.1", "--rate-malformed", "0.1", "--rate-500", "0.1")
    slow, fast = provider(*flags, "--latency-ms", "15", "--jitter-ms", "5"), provider(*flags)

    def run(p):
        out = []
        for i in range(40):
            schema = C.SCHEMAS[i % 4]
            status, _, body = (p.openai(system=f"SCHEMA: {schema}", user=f"u{i % 7}") if i % 3
                               else p.anthropic(system=f"SCHEMA: {schema}", user=f"u{i % 7}"))
            try:
                obj = json.loads(body)
            except ValueError:
                out.append((status, re.sub(rb"[0-9a-f]{24}", b"ID", body)))   # malformed: no ids
                continue
            for k in ("id", "created"):
                obj.pop(k, None)
            for block in obj.get("content", []):
                block.pop("id", None)
            out.append((status, obj))
        stats = p.stats()
        ids = {e["request_id"]: i for i, e in enumerate(stats["log"])}
        log = [(e["status"], e["fault"], e["planted"], ids.get(e["near_dup_of"]), e["schema"], e["usage"])
               for e in stats["log"]]
        return out, log, stats["near_dups"], stats["planted"], stats["by_fault"]

    a, b = run(slow), run(fast)
    assert a == b
    assert a[2] > 0 and a[3] and a[4]      # near-duplicates, plants and faults all came up


def test_workers_share_the_port_and_stop_together(provider):
    p = provider("--workers", "2")

    def children():
        kids = []
        for path in os.listdir(f"/proc/{p.proc.pid}/task"):
            with open(f"/proc/{p.proc.pid}/task/{path}/children") as f:
                kids += [int(x) for x in f.read().split()]
        return kids

    kids = children()
    assert len(kids) == 1
    assert [p.openai(user=str(i))[0] for i in range(6)] == [200] * 6
    assert p.stop() == 0
    for pid in kids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                assert f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")   # exited (maybe not reaped yet)
        except FileNotFoundError:
            pass


# ------------------------------------------------------------ fast paths
def test_fast_word_draws_match_random_choice(monkeypatch):
    import random
    assert C._draw_index_ok(), "the fast path should be the one in use on CPython"
    infos = [C.parse_prompt(f"SCHEMA: {s}\nDOMAIN: a customer portal\nCATEGORY: io_e\nDRIVES: x, y\nASSESS: t")
             for s in C.SCHEMAS]
    fast = [C.generate(info, random.Random(seed)) for info in infos for seed in range(40)]
    monkeypatch.setattr(C, "_FAST_DRAW", False)
    slow = [C.generate(info, random.Random(seed)) for info in infos for seed in range(40)]
    assert fast == slow


def test_parse_prompt_by_parts_matches_whole_text():
    import random
    rng = random.Random(3)
    lines = ["SCHEMA: judge", "  SCHEMA : eval_v1", "CATEGORY: qa", "DOMAIN: a b c", "ASSESS: x", "ASSESS: y.z",
             "DRIVES: p, q", "AXIS: s_t", "text SCHEMA: no", "", "TECHNIQUE:\tfew_shot  ", "\r", "DOMAIN: later"]
    for _ in range(300):
        parts = ["\n".join(rng.choice(lines) for _ in range(rng.randint(0, 5))) for _ in range(rng.randint(1, 4))]
        text = "\n".join(parts)
        hint = rng.choice([None, "conflict_v1", "bogus"])
        whole = C.parse_prompt(text, hint)
        assert C.parse_prompt(text, hint, parts).__dict__ == whole.__dict__
        assert C.parse_prompt(text, hint, parts).__dict__ == whole.__dict__   # from the cache


def test_prompt_digest_is_the_canonical_json_hash():
    import hashlib
    import server as S
    cases = [
        (None, [{"role": "user", "content": "x"}]),
        ("sys ünïcode \u2028", [{"role": "user", "content": "a\nb"}, {"role": "assistant", "content": "c"}]),
        ([{"type": "text", "text": "s"}], [{"role": "user", "content": [{"type": "text", "text": "t"}]}]),
        (None, [{"role": "system", "content": "s", "name": "n"}, {"content": "x", "role": "user"}]),
        (None, [{"role": "user", "content": None}, {"role": "user", "content": 3.5}]),
    ]
    for system, messages in cases:
        for _ in range(2):         # the second time from the cache
            want = hashlib.sha256(json.dumps({"system": system, "messages": messages}, sort_keys=True,
                                             ensure_ascii=False).encode()).hexdigest()
            assert S.prompt_digest(system, messages) == want


def test_copy_record_is_a_deep_copy():
    rec = {"a": [1, {"b": "c"}], "d": {"e": ["f"]}, "g": 1.5, "h": None}
    dup = C.copy_record(rec)
    assert dup == rec
    dup["a"][1]["b"] = "changed"
    dup["d"]["e"].append("g")
    assert rec == {"a": [1, {"b": "c"}], "d": {"e": ["f"]}, "g": 1.5, "h": None}


def test_decision_rng_is_made_on_first_use():
    import faults as F
    d = F.decide(F.FaultConfig(seed=9, jitter_ms=10), "request:3")
    assert d._rng is None
    want = F.rng_for(9, "sub", "request:3")
    assert [d.rng.random() for _ in range(3)] == [want.random() for _ in range(3)]


# ---------------------------------------------------------------- batch APIs
def _openai_batch_lines(n, prefix="r"):
    return b"".join(json.dumps({"custom_id": f"{prefix}{i}", "method": "POST", "url": "/v1/chat/completions",
                                "body": {"model": "fake-gpt-4o-mini", "max_tokens": 4096,
                                         "messages": [{"role": "system", "content": "SCHEMA: instruction_v1"},
                                                      {"role": "user", "content": f"VARIATION: {i}"}]}}).encode() + b"\n"
                    for i in range(n))


def _upload(p, data: bytes):
    boundary = "fakeboundary7"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\n"
            f"Content-Type: application/jsonl\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    status, _, out = p.request("POST", "/v1/files", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert status == 200, out
    meta = json.loads(out)
    assert meta["object"] == "file" and meta["bytes"] == len(data) and meta["purpose"] == "batch"
    return meta["id"]


def _jsonl(data: bytes):
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def test_openai_batch_lifecycle_output_and_error_files(provider):
    p = provider("--batch-delay-ms", "300", "--batch-error-rate", "0.3")
    fid = _upload(p, _openai_batch_lines(20))
    status, _, body = p.request("POST", "/v1/batches", {"input_file_id": fid, "endpoint": "/v1/chat/completions",
                                                        "completion_window": "24h"})
    assert status == 200, body
    batch = json.loads(body)
    assert batch["object"] == "batch" and batch["status"] == "in_progress" and batch["output_file_id"] is None
    time.sleep(0.35)
    done = p.get_json(f"/v1/batches/{batch['id']}")
    assert done["status"] == "completed"
    counts = done["request_counts"]
    assert counts["total"] == 20 and counts["completed"] + counts["failed"] == 20 and 0 < counts["failed"] < 20
    status, _, out = p.request("GET", f"/v1/files/{done['output_file_id']}/content")
    lines = _jsonl(out)
    assert len(lines) == counts["completed"]
    for line in lines:
        assert line["response"]["status_code"] == 200 and line["error"] is None
        record = json.loads(line["response"]["body"]["choices"][0]["message"]["content"])
        assert record["output"]
    _, _, err = p.request("GET", f"/v1/files/{done['error_file_id']}/content")
    errors = _jsonl(err)
    assert len(errors) == counts["failed"] and all(e["response"]["status_code"] == 500 for e in errors)
    assert {x["custom_id"] for x in lines + errors} == {f"r{i}" for i in range(20)}
    # Every request of the batch is in /stats with its usage.
    stats = p.stats()
    assert stats["generation_requests"] == 20
    assert stats["completion_tokens"] == sum(x["response"]["body"]["usage"]["completion_tokens"] for x in lines)


def test_openai_batch_expiry_cancel_and_bad_input(provider):
    p = provider("--batch-expire-rate", "1")
    fid = _upload(p, _openai_batch_lines(10))
    batch = json.loads(p.request("POST", "/v1/batches", {"input_file_id": fid, "endpoint": "/v1/chat/completions",
                                                         "completion_window": "24h"})[2])
    assert batch["status"] == "expired" and batch["request_counts"] == {"total": 10, "completed": 5, "failed": 5}
    errors = _jsonl(p.request("GET", f"/v1/files/{batch['error_file_id']}/content")[2])
    assert [e["error"]["code"] for e in errors] == ["batch_expired"] * 5
    p.config(batch_expire_rate=0, batch_delay_ms=60_000)
    fid = _upload(p, _openai_batch_lines(4))
    batch = json.loads(p.request("POST", "/v1/batches", {"input_file_id": fid, "endpoint": "/v1/chat/completions",
                                                         "completion_window": "24h"})[2])
    status, _, body = p.request("POST", f"/v1/batches/{batch['id']}/cancel", {})
    assert status == 200
    assert p.get_json(f"/v1/batches/{batch['id']}")["status"] == "cancelled"
    for bad in ({"input_file_id": "file-nope", "endpoint": "/v1/chat/completions", "completion_window": "24h"},
                {"input_file_id": fid, "endpoint": "/v1/embeddings", "completion_window": "24h"}):
        status, _, _ = p.request("POST", "/v1/batches", bad)
        assert status in (400, 404)
    dup = _upload(p, _openai_batch_lines(2) + _openai_batch_lines(1))
    status, _, body = p.request("POST", "/v1/batches", {"input_file_id": dup, "endpoint": "/v1/chat/completions",
                                                        "completion_window": "24h"})
    assert status == 400 and b"unique" in body


def test_anthropic_message_batches(provider):
    p = provider("--batch-delay-ms", "200", "--batch-error-rate", "0.25", "--require-key", "k-1")
    headers = {"x-api-key": "k-1", "anthropic-version": "2023-06-01"}
    requests = [{"custom_id": f"m{i}", "params": {"model": "fake-claude-haiku", "max_tokens": 4096,
                                                  "system": "SCHEMA: instruction_v1",
                                                  "messages": [{"role": "user", "content": f"VARIATION: {i}"}]}}
                for i in range(16)]
    status, _, body = p.request("POST", "/v1/messages/batches", {"requests": requests}, headers)
    assert status == 200, body
    batch = json.loads(body)
    assert batch["type"] == "message_batch" and batch["processing_status"] == "in_progress"
    assert batch["request_counts"]["processing"] == 16
    status, _, _ = p.request("GET", f"/v1/messages/batches/{batch['id']}/results", headers=headers)
    assert status == 400  # not ended yet
    assert p.request("GET", f"/v1/messages/batches/{batch['id']}")[0] == 401  # the key is required
    time.sleep(0.25)
    status, _, body = p.request("GET", f"/v1/messages/batches/{batch['id']}", headers=headers)
    ended = json.loads(body)
    assert ended["processing_status"] == "ended" and ended["results_url"].endswith(f"/v1/messages/batches/{batch['id']}/results")
    counts = ended["request_counts"]
    assert counts["succeeded"] + counts["errored"] == 16 and counts["errored"] > 0
    results = _jsonl(p.request("GET", f"/v1/messages/batches/{batch['id']}/results", headers=headers)[2])
    assert sorted(r["custom_id"] for r in results) == sorted(f"m{i}" for i in range(16))
    for r in results:
        if r["result"]["type"] == "succeeded":
            assert json.loads(r["result"]["message"]["content"][0]["text"])["output"]
        else:
            assert r["result"]["type"] == "errored" and r["result"]["error"]["error"]["type"] == "api_error"
