#!/usr/bin/env python3
"""Fake LLM provider: a real HTTP/1.1 server speaking the OpenAI Chat
Completions and Anthropic Messages wire formats, with injectable faults.

Run `fake-provider --help` for the flags.  Standard library only.

Endpoints
    POST /v1/chat/completions, /chat/completions   OpenAI Chat Completions
    POST /v1/messages, /messages                   Anthropic Messages
    GET  /v1/models, /models                       model list
    GET  /health                                   {"status": "ok"}
    GET  /stats[?log=0]                            counters and per-request log
    POST /reset  [{"all": true}]                   clear stats (all: also counters/history)
    GET  /config, POST /config {...}               read / change fault config

Modules: content.py builds the records, faults.py holds the fault config and
the per-request decision, this file is the HTTP side.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
import os
import signal
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import content as C  # noqa: E402
import faults as F  # noqa: E402

OPENAI_PATHS = ("/v1/chat/completions", "/chat/completions")
ANTHROPIC_PATHS = ("/v1/messages", "/messages")
MODEL_PATHS = ("/v1/models", "/models")
MODELS = ("fake-gpt-4o-mini", "fake-gpt-4o", "fake-claude-sonnet", "fake-claude-haiku")

UNLIMITED_REQUESTS = 1_000_000  # reported when --rpm-limit is 0
TOKEN_LIMIT = 100_000_000       # reported, never enforced
HISTORY_PER_SCHEMA = 256        # records kept for near-duplicates


class ProviderError(Exception):
    """An error answered in the wire format of the API being called."""

    def __init__(self, status: int, kind: str, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.kind, self.message, self.code = status, kind, message, code


# ====================================================================== state
class State:
    """Everything shared between request threads.  Guarded by self.lock."""

    def __init__(self, cfg: F.FaultConfig, log_limit: int, verbose: bool):
        self.cfg = cfg
        self.log_limit = log_limit
        self.verbose = verbose
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.in_flight = 0
        self.reset_counters()
        self.reset_stats()

    def reset_counters(self) -> None:
        self.request_counter = 0            # generation requests seen
        self.prompt_counts: dict[str, int] = {}
        self.history: dict[str, list] = {}  # schema -> [(request_id, record)]
        self.window_start = time.monotonic()
        self.window_requests = 0
        self.window_tokens = 0

    def reset_stats(self) -> None:
        self.requests_total = 0
        self.by_path: dict[str, int] = {}
        self.by_status: dict[str, int] = {}
        self.by_fault: dict[str, int] = {}
        self.planted: dict[str, int] = {}
        self.near_dups = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.max_in_flight = self.in_flight
        self.log: list[dict] = []

    def config_snapshot(self) -> F.FaultConfig:
        with self.lock:
            return dataclasses.replace(self.cfg, plant=dict(self.cfg.plant))

    def roll_window(self, now: float) -> None:
        if now - self.window_start >= self.cfg.rpm_window:
            self.window_start = now
            self.window_requests = 0
            self.window_tokens = 0

    def record(self, entry: dict) -> None:
        """Account one finished provider request (lock held by caller)."""
        self.requests_total += 1
        _bump(self.by_path, entry["path"])
        status = entry["status"]
        _bump(self.by_status, str(status) if status is not None else "none")
        if entry.get("fault"):
            _bump(self.by_fault, entry["fault"])
        for kind in entry.get("planted") or ():
            _bump(self.planted, kind)
        if entry.get("near_dup_of"):
            self.near_dups += 1
        if status == 200 and entry.get("usage"):
            self.prompt_tokens += entry["usage"]["prompt_tokens"]
            self.completion_tokens += entry["usage"]["completion_tokens"]
        self.log.append(entry)
        if len(self.log) > self.log_limit:
            del self.log[: len(self.log) - self.log_limit]

    def stats(self, with_log: bool) -> dict:
        out = {
            "requests_total": self.requests_total,
            "by_path": dict(self.by_path),
            "by_status": dict(self.by_status),
            "by_fault": dict(self.by_fault),
            "planted": dict(self.planted),
            "near_dups": self.near_dups,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "generation_requests": self.request_counter,
            "now": time.monotonic(),
        }
        if with_log:
            out["log"] = [dict(e) for e in self.log]
        return out


def _bump(d: dict, key: str) -> None:
    d[key] = d.get(key, 0) + 1


# ================================================================ wire helpers
def text_of(content) -> str:
    """Plain text of an OpenAI/Anthropic message content (string or blocks)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, dict):
                if isinstance(block.get("text"), str):
                    parts.append(block["text"])
                elif "content" in block:
                    parts.append(text_of(block["content"]))
        return "\n".join(parts)
    return ""


def error_body(api: str, err: ProviderError) -> dict:
    if api == "anthropic":
        return {"type": "error", "error": {"type": err.kind, "message": err.message}}
    return {"error": {"message": err.message, "type": err.kind, "param": None, "code": err.code}}


def error_for(api: str, status: int, message: str) -> ProviderError:
    """The usual error kind for a status in each API."""
    openai = {400: ("invalid_request_error", None), 401: ("invalid_request_error", "invalid_api_key"),
              404: ("invalid_request_error", "unknown_url"), 429: ("requests", "rate_limit_exceeded"),
              500: ("server_error", None), 503: ("server_error", None)}
    anthropic = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
                 429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}
    if api == "anthropic":
        return ProviderError(status, anthropic[status], message)
    kind, code = openai[status]
    return ProviderError(status, kind, message, code)


def format_duration(seconds: float) -> str:
    """OpenAI style reset durations: '850ms', '1s', '12.5s', '1m0s'."""
    if seconds < 1:
        return f"{max(1, int(seconds * 1000))}ms"
    if seconds < 60:
        s = round(seconds, 1)
        return f"{int(s)}s" if s == int(s) else f"{s}s"
    return f"{int(seconds // 60)}m{int(seconds % 60)}s"


def format_seconds(value: float) -> str:
    """retry-after value: an integer when whole, else a short decimal."""
    return str(int(value)) if value == int(value) else f"{value:g}"


# ==================================================================== handler
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-provider/1.0"
    timeout = 300  # idle keep-alive connections are dropped after this
    # TCP_NODELAY: with Nagle on, the body (a second write after the headers) waits for the
    # client's delayed ACK, adding up to 40 ms to every answer.
    disable_nagle_algorithm = True

    @property
    def state(self) -> State:
        return self.server.state  # type: ignore[attr-defined]

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, fmt, *args):  # noqa: D401 - quiet unless --verbose
        if self.state.verbose:
            super().log_message(fmt, *args)

    # ------------------------------------------------------------ plumbing
    def read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size_line = self.rfile.readline()
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def send_bytes(self, status: int, body: bytes, content_type: str = "application/json",
                   headers: list[tuple[str, str]] = ()) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for k, v in headers:
                self.send_header(k, v)
            # end_headers() without its flush, so that headers and body leave in one write.
            self._headers_buffer.append(b"\r\n" + body)
            self.flush_headers()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def send_json(self, status: int, obj, headers: list[tuple[str, str]] = ()) -> None:
        self.send_bytes(status, json.dumps(obj).encode(), "application/json", headers)

    def abort_connection(self) -> None:
        """Close with RST and no response (SO_LINGER 0)."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.rfile.close()
        self.connection.close()

    # -------------------------------------------------------------- routes
    def do_GET(self):
        url = urlsplit(self.path)
        if url.path == "/health":
            self.send_json(200, {"status": "ok"})
        elif url.path in MODEL_PATHS:
            self.models(url.path)
        elif url.path == "/stats":
            with_log = parse_qs(url.query).get("log", ["1"])[0] not in ("0", "false")
            with self.state.lock:
                stats = self.state.stats(with_log)
            self.send_json(200, stats)
        elif url.path == "/config":
            self.send_json(200, self.state.config_snapshot().to_dict())
        else:
            self.send_json(404, {"error": {"message": f"Unknown request URL: GET {url.path}",
                                           "type": "invalid_request_error", "code": "unknown_url"}})

    def do_POST(self):
        body = self.read_body()
        path = urlsplit(self.path).path
        if path in OPENAI_PATHS:
            self.generation("openai", path, body)
        elif path in ANTHROPIC_PATHS:
            self.generation("anthropic", path, body)
        elif path == "/config":
            self.post_config(body)
        elif path == "/reset":
            self.post_reset(body)
        else:
            self.send_json(404, {"error": {"message": f"Unknown request URL: POST {path}",
                                           "type": "invalid_request_error", "code": "unknown_url"}})

    def post_config(self, body: bytes) -> None:
        try:
            changes = json.loads(body or b"{}")
            with self.state.lock:
                self.state.cfg.update(changes)
        except (ValueError, TypeError) as e:
            self.send_json(400, {"error": str(e)})
            return
        self.send_json(200, self.state.config_snapshot().to_dict())

    def post_reset(self, body: bytes) -> None:
        try:
            opts = json.loads(body) if body.strip() else {}
        except ValueError:
            opts = {}
        with self.state.lock:
            self.state.reset_stats()
            if isinstance(opts, dict) and opts.get("all"):
                self.state.reset_counters()
        self.send_json(200, {"status": "reset"})

    def models(self, path: str) -> None:
        api = "anthropic" if self.headers.get("anthropic-version") else "openai"
        entry = self.new_entry(path, b"", seq=None)
        try:
            self.check_key(api, self.state.config_snapshot())
            created = int(time.time())
            if api == "anthropic":
                data = [{"type": "model", "id": m, "display_name": m, "created_at": "2024-01-01T00:00:00Z"}
                        for m in MODELS]
                obj = {"data": data, "has_more": False, "first_id": MODELS[0], "last_id": MODELS[-1]}
            else:
                obj = {"object": "list",
                       "data": [{"id": m, "object": "model", "created": created, "owned_by": "fake-provider"}
                                for m in MODELS]}
            self.send_json(200, obj)
            entry["status"] = 200
        except ProviderError as err:
            self.send_json(err.status, error_body(api, err))
            entry["status"] = err.status
        finally:
            with self.state.lock:
                self.state.record(entry)

    # ------------------------------------------------------- generation
    def new_entry(self, path: str, body: bytes, seq: int | None) -> dict:
        return {"seq": seq, "t": time.monotonic(), "path": path, "status": None,
                "retry_after": None, "request_id": None,
                "body_sha": hashlib.sha256(body).hexdigest(),
                "fault": None, "planted": [], "near_dup_of": None, "schema": None, "usage": None}

    def generation(self, api: str, path: str, body: bytes) -> None:
        st = self.state
        with st.lock:
            st.request_counter += 1
            n = st.request_counter
            st.in_flight += 1
            st.max_in_flight = max(st.max_in_flight, st.in_flight)
            in_flight = st.in_flight
            cfg = dataclasses.replace(st.cfg, plant=dict(st.cfg.plant))
        entry = self.new_entry(path, body, n)
        rid = hashlib.sha256(f"{cfg.seed}:{n}:{entry['t']}".encode()).hexdigest()[:24]
        entry["request_id"] = f"req_{rid}"
        # The answer is recorded in /stats before it is sent, so a client that reads /stats after
        # its answer arrives always finds it there.
        answer = None
        try:
            answer = self.generate_response(api, body, n, cfg, in_flight, entry, rid)
        except ProviderError as err:
            headers = self.ratelimit_headers(api, cfg, entry)
            if err.status == 429:
                headers += self.retry_headers(entry, entry["retry_after"] or cfg.retry_after)
            answer = (err.status, json.dumps(error_body(api, err)).encode(), "application/json", headers)
            entry["status"] = err.status
        finally:
            with st.lock:
                st.in_flight -= 1
                entry["t_end"] = time.monotonic()
                st.record(entry)
        if answer is not None:
            self.send_bytes(*answer)

    def retry_headers(self, entry: dict, seconds: float) -> list[tuple[str, str]]:
        entry["retry_after"] = seconds
        return [("retry-after", format_seconds(seconds)), ("retry-after-ms", str(int(seconds * 1000)))]

    def ratelimit_headers(self, api: str, cfg: F.FaultConfig, entry: dict) -> list[tuple[str, str]]:
        st = self.state
        with st.lock:
            now = time.monotonic()
            st.roll_window(now)
            limit = cfg.rpm_limit or UNLIMITED_REQUESTS
            remaining = max(0, limit - st.window_requests)
            tokens_remaining = max(0, TOKEN_LIMIT - st.window_tokens)
            reset_s = max(0.001, cfg.rpm_window - (now - st.window_start))
        rid = entry["request_id"]
        if api == "anthropic":
            reset_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + reset_s))
            return [("request-id", rid),
                    ("anthropic-ratelimit-requests-limit", str(limit)),
                    ("anthropic-ratelimit-requests-remaining", str(remaining)),
                    ("anthropic-ratelimit-requests-reset", reset_at),
                    ("anthropic-ratelimit-tokens-limit", str(TOKEN_LIMIT)),
                    ("anthropic-ratelimit-tokens-remaining", str(tokens_remaining)),
                    ("anthropic-ratelimit-tokens-reset", reset_at)]
        return [("x-request-id", rid),
                ("x-ratelimit-limit-requests", str(limit)),
                ("x-ratelimit-remaining-requests", str(remaining)),
                ("x-ratelimit-reset-requests", format_duration(reset_s)),
                ("x-ratelimit-limit-tokens", str(TOKEN_LIMIT)),
                ("x-ratelimit-remaining-tokens", str(tokens_remaining)),
                ("x-ratelimit-reset-tokens", format_duration(reset_s))]

    def check_key(self, api: str, cfg: F.FaultConfig) -> None:
        if cfg.require_key is None:
            return
        if api == "anthropic":
            key = self.headers.get("x-api-key")
        else:
            auth = self.headers.get("Authorization", "")
            key = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        if key != cfg.require_key:
            shown = (key[:3] + "..." + key[-4:]) if key and len(key) > 8 else (key or "")
            if api == "anthropic":
                raise ProviderError(401, "authentication_error", "invalid x-api-key")
            msg = (f"Incorrect API key provided: {shown}." if key else
                   "You didn't provide an API key. You need to provide your API key in an "
                   "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
            raise ProviderError(401, "invalid_request_error", msg, "invalid_api_key")

    def generate_response(self, api, body, n, cfg, in_flight, entry, rid) -> None:
        st = self.state
        # 1. capacity limits (before anything else, like a real gateway)
        if cfg.max_concurrency and in_flight > cfg.max_concurrency:
            entry["fault"] = "concurrency"
            raise error_for(api, 429, f"Too many concurrent requests (limit {cfg.max_concurrency}).")
        with st.lock:
            now = time.monotonic()
            st.roll_window(now)
            if cfg.rpm_limit and st.window_requests >= cfg.rpm_limit:
                entry["fault"] = "rpm_limit"
                entry["retry_after"] = float(max(1, int(cfg.rpm_window - (now - st.window_start) + 0.999)))
                raise error_for(api, 429, f"Rate limit reached for requests: limit {cfg.rpm_limit} per min.")
            st.window_requests += 1

        # 2. authenticate, parse, validate
        self.check_key(api, cfg)
        try:
            req = json.loads(body)
        except ValueError:
            raise error_for(api, 400, "We could not parse the JSON body of your request.") from None
        if not isinstance(req, dict):
            raise error_for(api, 400, "Request body must be a JSON object.")
        prompt_text, tool, hint, max_tokens = (self.parse_anthropic(req) if api == "anthropic"
                                               else self.parse_openai(req))
        model = req["model"]

        # 3. decide faults
        canon = json.dumps({"system": req.get("system"), "messages": req["messages"]},
                           sort_keys=True, ensure_ascii=False)
        prompt_hash = hashlib.sha256(canon.encode()).hexdigest()
        with st.lock:
            k = st.prompt_counts[prompt_hash] = st.prompt_counts.get(prompt_hash, 0) + 1
        key = f"request:{n}" if cfg.fault_key == "request" else f"prompt:{prompt_hash}:{k}"
        decision = F.decide(cfg, key)
        if decision.delay_s > 0 and st.stop.wait(decision.delay_s):
            self.close_connection = True   # shutting down
            return
        fault = decision.fault
        entry["fault"] = fault
        if fault == "400":
            raise error_for(api, 400, "Invalid 'messages': the request was rejected (injected fault).")
        if fault == "429":
            entry["retry_after"] = cfg.retry_after
            raise error_for(api, 429, "Rate limit reached for requests (injected fault). Please retry after "
                                      f"{format_seconds(cfg.retry_after)}s.")
        if fault == "500":
            raise error_for(api, 500, "The server had an error while processing your request (injected fault).")
        if fault == "529":
            if api == "anthropic":
                raise error_for(api, 529, "Overloaded")
            raise error_for(api, 503, "The engine is currently overloaded, please try again later.")
        if fault == "hang":
            st.stop.wait(cfg.hang_seconds)
            self.close_connection = True
            return
        if fault == "reset":
            self.abort_connection()
            return

        # 4. content
        info = C.parse_prompt(prompt_text, hint)
        entry["schema"] = info.schema
        content_rng = F.rng_for(cfg.seed, "content", prompt_hash, k if cfg.vary else 0)
        record = None
        if decision.near_dup and C.supports_near_dup(info.schema):
            with st.lock:
                earlier = list(st.history.get(info.schema, ()))
            if earlier:
                src_id, src = decision.rng.choice(earlier)
                record = C.near_duplicate(src, info.schema, decision.rng)
                entry["near_dup_of"] = src_id
        if record is None:
            record = C.generate(info, content_rng)
            if fault is None:
                with st.lock:
                    hist = st.history.setdefault(info.schema, [])
                    hist.append((entry["request_id"], copy.deepcopy(record)))
                    del hist[:-HISTORY_PER_SCHEMA]
            entry["planted"] = C.apply_plants(record, info, decision.plants, decision.rng)

        if api == "anthropic":
            status, payload, ctype = self.anthropic_body(record, fault, tool, model, rid, prompt_text,
                                                         max_tokens, decision, entry)
        else:
            status, payload, ctype = self.openai_body(record, fault, tool, model, rid, prompt_text,
                                                      max_tokens, decision, entry)
        if entry["usage"]:
            with st.lock:
                st.window_tokens += entry["usage"]["prompt_tokens"] + entry["usage"]["completion_tokens"]
        entry["status"] = status
        return status, payload, ctype, self.ratelimit_headers(api, cfg, entry)

    # ----------------------------------------------------------- requests
    def parse_openai(self, req: dict):
        if not isinstance(req.get("model"), str) or not req["model"]:
            raise error_for("openai", 400, "you must provide a model parameter")
        messages = req.get("messages")
        if not isinstance(messages, list) or not messages:
            raise error_for("openai", 400, "'messages' must be a non-empty array")
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str):
                raise error_for("openai", 400, f"Invalid 'messages[{i}]': expected an object with a 'role'.")
        if req.get("stream"):
            raise error_for("openai", 400, "stream=true is not supported by the fake provider")
        max_tokens = req.get("max_completion_tokens", req.get("max_tokens"))
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            raise error_for("openai", 400, "Invalid 'max_tokens': must be a positive integer.")
        hint = None
        rf = req.get("response_format")
        if isinstance(rf, dict) and rf.get("type") == "json_schema":
            hint = (rf.get("json_schema") or {}).get("name")
        tool = None
        tc, tools = req.get("tool_choice"), req.get("tools") or []
        if isinstance(tc, dict) and tc.get("type") == "function":
            tool = (tc.get("function") or {}).get("name")
        elif tc == "required" and tools:
            tool = (tools[0].get("function") or {}).get("name")
        if tool:
            hint = hint or tool
        text = "\n".join(text_of(m.get("content")) for m in messages)
        return text, tool, hint, max_tokens

    def parse_anthropic(self, req: dict):
        if not self.headers.get("anthropic-version"):
            raise error_for("anthropic", 400, "anthropic-version: header is required")
        if not isinstance(req.get("model"), str) or not req["model"]:
            raise error_for("anthropic", 400, "model: Field required")
        max_tokens = req.get("max_tokens")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise error_for("anthropic", 400, "max_tokens: Field required (a positive integer)")
        messages = req.get("messages")
        if not isinstance(messages, list) or not messages:
            raise error_for("anthropic", 400, "messages: at least one message is required")
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
                raise error_for("anthropic", 400, f"messages.{i}.role: Input should be 'user' or 'assistant'")
        if req.get("stream"):
            raise error_for("anthropic", 400, "stream=true is not supported by the fake provider")
        tools = req.get("tools") or []
        names = [t.get("name") for t in tools if isinstance(t, dict)]
        tc = req.get("tool_choice")
        tool = None
        if isinstance(tc, dict) and tc.get("type") == "tool":
            tool = tc.get("name")
            if tool not in names:
                raise error_for("anthropic", 400, f"tool_choice.name: tool {tool!r} is not in tools")
        elif isinstance(tc, dict) and tc.get("type") == "any" and names:
            tool = names[0]
        text = "\n".join([text_of(req.get("system"))] + [text_of(m.get("content")) for m in messages])
        return text, tool, tool, max_tokens

    # ---------------------------------------------------------- responses
    @staticmethod
    def malformed_text(record: dict, rng) -> str:
        """Content that looks like JSON but is not."""
        if rng.random() < 0.5:
            return repr(record)                              # single quotes, True
        return json.dumps(record).rstrip("}") + ",\n"        # trailing comma, no brace

    @staticmethod
    def malformed_body(api: str, rid: str, rng) -> tuple[bytes, str]:
        if rng.random() < 0.5:
            return (b"<html><head><title>502 Bad Gateway</title></head><body>"
                    b"<center><h1>502 Bad Gateway</h1></center></body></html>", "text/html")
        prefix = ('{"id": "chatcmpl-%s", "object": "chat.completion", "choices": [{"index": 0, '
                  '"message": {"role": "assistant", "content": "{\\"instr' if api == "openai" else
                  '{"id": "msg_%s", "type": "message", "role": "assistant", "content": [{"type": "te')
        return (prefix % rid).encode(), "application/json"

    @staticmethod
    def truncated_record(record: dict, schema: str, rng) -> dict:
        """For tool-call truncation: main text cut, or last key dropped."""
        rec = copy.deepcopy(record)
        paths = C.MAIN_TEXT[schema]
        if paths:
            C.set_path(rec, paths[0], C.cut_mid_sentence(C.get_path(rec, paths[0]), rng))
        elif len(rec) > 1:
            rec.pop(list(rec)[-1])
        return rec

    def openai_body(self, record, fault, tool, model, rid, prompt_text, max_tokens, decision, entry):
        rng = decision.rng
        if fault == "malformed" and rng.random() < 0.5:
            body, ctype = self.malformed_body("openai", rid, rng)
            return 200, body, ctype
        text = json.dumps(record, ensure_ascii=False)
        finish = "stop"
        message = {"role": "assistant", "content": text, "refusal": None}
        emitted = text
        if fault == "refusal":
            message = {"role": "assistant", "content": None, "refusal": C.REFUSAL_TEXT}
            emitted = C.REFUSAL_TEXT
        elif fault == "malformed":
            emitted = self.malformed_text(record, rng)
        elif fault == "truncate":
            emitted, finish = C.truncate_serialized(record, entry["schema"], rng), "length"
        elif max_tokens and C.estimate_tokens(text) > max_tokens:
            emitted, finish = text[: max_tokens * 4].rstrip(" ."), "length"
        if fault != "refusal":
            if tool:
                message = {"role": "assistant", "content": None, "refusal": None,
                           "tool_calls": [{"id": f"call_{rid[:20]}", "type": "function",
                                           "function": {"name": tool, "arguments": emitted}}]}
                finish = "tool_calls" if finish == "stop" else finish
            else:
                message["content"] = emitted
        usage = {"prompt_tokens": C.estimate_tokens(prompt_text),
                 "completion_tokens": C.estimate_tokens(emitted)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        entry["usage"] = usage
        obj = {"id": f"chatcmpl-{rid}", "object": "chat.completion", "created": int(time.time()),
               "model": model, "system_fingerprint": "fp_fake",
               "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
               "usage": usage}
        return 200, json.dumps(obj, ensure_ascii=False).encode(), "application/json"

    def anthropic_body(self, record, fault, tool, model, rid, prompt_text, max_tokens, decision, entry):
        rng = decision.rng
        if fault == "malformed" and rng.random() < 0.5:
            body, ctype = self.malformed_body("anthropic", rid, rng)
            return 200, body, ctype
        text = json.dumps(record, ensure_ascii=False)
        stop = "end_turn"
        if fault == "refusal":
            block = {"type": "text", "text": C.REFUSAL_TEXT}
        elif fault == "malformed":
            block = {"type": "text", "text": self.malformed_text(record, rng)}   # also: tool not called
        elif tool:
            rec, stop = record, "tool_use"
            if fault == "truncate":
                rec, stop = self.truncated_record(record, entry["schema"], rng), "max_tokens"
            block = {"type": "tool_use", "id": f"toolu_{rid[:24]}", "name": tool, "input": rec}
        elif fault == "truncate":
            block, stop = {"type": "text", "text": C.truncate_serialized(record, entry["schema"], rng)}, "max_tokens"
        elif C.estimate_tokens(text) > max_tokens:
            block, stop = {"type": "text", "text": text[: max_tokens * 4].rstrip(" .")}, "max_tokens"
        else:
            block = {"type": "text", "text": text}
        emitted = block["text"] if block["type"] == "text" else json.dumps(block["input"], ensure_ascii=False)
        usage = {"input_tokens": C.estimate_tokens(prompt_text), "output_tokens": C.estimate_tokens(emitted)}
        entry["usage"] = {"prompt_tokens": usage["input_tokens"], "completion_tokens": usage["output_tokens"]}
        obj = {"id": f"msg_{rid}", "type": "message", "role": "assistant", "model": model,
               "content": [block], "stop_reason": stop, "stop_sequence": None, "usage": usage}
        return 200, json.dumps(obj, ensure_ascii=False).encode(), "application/json"


# ======================================================================= main
class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, addr, state: State):
        self.state = state
        super().__init__(addr, Handler)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fake-provider",
        description="Fake OpenAI / Anthropic LLM provider with injectable faults.")
    a = p.add_argument
    a("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    a("--port", type=int, default=0, help="port; 0 picks a free one (default 0)")
    a("--port-file", help="also write the bound port to this file")
    a("--seed", type=int, default=0, help="seed for content and faults (default 0)")
    a("--vary", action=argparse.BooleanOptionalAction, default=True,
      help="identical prompts give different records on each request (default on)")
    a("--near-dup-rate", type=float, default=0.0, help="share of near-duplicate responses (0-1)")
    a("--latency-ms", type=float, default=0.0, help="fixed added latency per request")
    a("--jitter-ms", type=float, default=0.0, help="extra uniform random latency 0..J ms")
    a("--max-concurrency", type=int, default=0, help="answer 429 beyond this many in flight (0 = off)")
    a("--rpm-limit", type=int, default=0, help="answer 429 beyond this many requests per minute (0 = off)")
    a("--rpm-window", type=float, default=60.0, help="seconds of the --rpm-limit window (default 60)")
    a("--retry-after", type=float, default=1.0, help="retry-after seconds sent with 429 (default 1)")
    a("--hang-seconds", type=float, default=30.0, help="how long a hung request stalls (default 30)")
    for name in F.TRANSPORT_FAULTS:
        a("--" + name.replace("_", "-"), type=float, default=0.0, metavar="R",
          help=f"fraction of requests with fault {name[5:]}")
    a("--plant", action="append", default=[], metavar="KIND:RATE",
      help=f"plant a content fault; KIND in {', '.join(F.PLANT_KINDS)}; repeatable")
    a("--fault-key", choices=F.FAULT_KEYS, default="request",
      help="'request': faults keyed by the global request counter (default); 'prompt': by "
           "(prompt, n-th time seen), which is independent of request interleaving")
    a("--require-key", help="API key required in Authorization: Bearer / x-api-key")
    a("--workers", type=int, default=1, help="processes serving the one port, for load benchmarks; each keeps its own "
      "counters and /stats (default 1)")
    a("--log-limit", type=int, default=100_000, help="per-request log entries kept in /stats")
    a("--verbose", action="store_true", help="access log on stderr")
    return p


def config_from_args(args) -> F.FaultConfig:
    cfg = F.FaultConfig(
        seed=args.seed, latency_ms=args.latency_ms, jitter_ms=args.jitter_ms,
        max_concurrency=args.max_concurrency, rpm_limit=args.rpm_limit, rpm_window=args.rpm_window,
        retry_after=args.retry_after, hang_seconds=args.hang_seconds,
        near_dup_rate=args.near_dup_rate, vary=args.vary, fault_key=args.fault_key,
        plant=dict(F.parse_plant(s) for s in args.plant), require_key=args.require_key,
        **{name: getattr(args, name) for name in F.TRANSPORT_FAULTS})
    cfg.validate()
    return cfg


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args)
    except ValueError as e:
        parser.error(str(e))
    state = State(cfg, args.log_limit, args.verbose)
    server = Server((args.host, args.port), state)
    port = server.server_address[1]
    # More processes on the one listening socket, for load benchmarks: each has its own GIL, and
    # its own counters, history and /stats.
    children = []
    for _ in range(args.workers - 1):
        pid = os.fork()
        if pid == 0:
            children = None
            _die_with_parent()
            break
        children.append(pid)

    def on_signal(signum, frame):
        state.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # A parent that spawned us from a thread with signals blocked (libdispatch workers do) passes
    # that mask on: unblock, or SIGTERM would never arrive.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})

    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    if children is None:   # a worker: serve until told to stop
        while not state.stop.wait(0.1):
            pass
        os._exit(0)
    if args.port_file:
        tmp = f"{args.port_file}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(f"{port}\n")
        os.replace(tmp, args.port_file)
    sys.stdout.write(f"LISTENING {port}\n")
    sys.stdout.flush()

    while not state.stop.wait(0.1):
        pass
    for pid in children:
        try:
            os.kill(pid, signal.SIGTERM)
            os.waitpid(pid, 0)
        except OSError:
            pass
    server.shutdown()
    server.server_close()
    return 0


def _die_with_parent() -> None:
    """A worker gets SIGTERM when the first process dies, however it dies (Linux)."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


if __name__ == "__main__":
    sys.exit(main())
