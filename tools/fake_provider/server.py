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
import asyncio
import collections
import copy
import dataclasses
import email.utils
import hashlib
import html
import json
import math
import os
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import batches as B  # noqa: E402
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
    """Everything shared by the requests of one process.  Guarded by self.lock (the requests run
    on one event loop thread, so the lock is never contended; it keeps State safe to share)."""

    def __init__(self, cfg: F.FaultConfig, log_limit: int, verbose: bool):
        self.cfg = cfg
        self._snapshot: F.FaultConfig | None = None
        self.log_limit = log_limit
        self.verbose = verbose
        self.lock = threading.Lock()
        self.in_flight = 0
        self.batches = B.Batches()
        self.reset_counters()
        self.reset_stats()

    def reset_counters(self) -> None:
        self.request_counter = 0            # generation requests seen
        self.batches.clear()
        self.prompt_counts: dict[str, int] = {}
        self.history: dict[str, list] = {}  # schema -> [(request_id, record)]
        self.window_start = time.monotonic()
        self.window_requests = 0
        self.window_tokens = 0

    def reset_stats(self) -> None:
        self.requests_total = 0
        self.by_path: dict[str, int] = {}
        # Calls of the batch APIs, by method and path (ids included).
        self.batch_calls: dict[str, int] = {}
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

    def snapshot(self) -> F.FaultConfig:
        """The config for one request (lock held by caller).  Shared, read-only: a copy made once
        per config change rather than once per request."""
        if self._snapshot is None:
            self._snapshot = dataclasses.replace(self.cfg, plant=dict(self.cfg.plant))
        return self._snapshot

    def update_config(self, changes: dict) -> None:
        """POST /config (lock held by caller)."""
        self.cfg.update(changes)
        self._snapshot = None

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
            "batch_calls": dict(self.batch_calls),
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


def new_entry(path: str, body: bytes, seq: int | None) -> dict:
    return {"seq": seq, "t": time.monotonic(), "path": path, "status": None,
            "retry_after": None, "request_id": None,
            "body_sha": hashlib.sha256(body).hexdigest(),
            "fault": None, "planted": [], "near_dup_of": None, "schema": None, "usage": None, "domain": None}


def prompt_digest(system, messages: list) -> str:
    """The prompt's identity for the content RNG and the per-prompt counter: the sha256 of
    json.dumps({"system": system, "messages": messages}, sort_keys=True, ensure_ascii=False),
    put together from each part's JSON, with the JSON of plain text messages (the same long
    system prompt on every request) cached."""
    canon = ('{"messages": [' + ", ".join(map(_json_of, messages)) + '], "system": '
             + _json_of(system) + "}")
    return hashlib.sha256(canon.encode()).hexdigest()


_JSON_CACHE: dict = {}
_JSON_CACHE_MAX = 1024


def _json_of(value) -> str:
    """json.dumps(value, sort_keys=True, ensure_ascii=False), cached for a string or a
    {"role", "content"} message with string values."""
    if value is None:
        return "null"
    if type(value) is str:
        key = value
    elif (type(value) is dict and len(value) == 2 and type(value.get("role")) is str
          and type(value.get("content")) is str):
        key = (value["role"], value["content"])
    else:
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    text = _JSON_CACHE.get(key)
    if text is None:
        text = json.dumps(value, sort_keys=True, ensure_ascii=False)
        if len(_JSON_CACHE) >= _JSON_CACHE_MAX:
            _JSON_CACHE.clear()
        _JSON_CACHE[key] = text
    return text


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


# ================================================================= HTTP layer
# One asyncio event loop per process serves every connection, with plain callbacks (no tasks):
#   arrival   parse the request, answer at once if it fails a check, else draw its faults and
#             set a timer for its latency (counted from the arrival);
#   waiting   make its record and, for a clean answer, its body (Server.work, one request per
#             turn of the loop, so this never holds up an answer that is due);
#   timer     everything that reads shared state (history, near-duplicates, plants, rate-limit
#             window), then record it in /stats and write the answer in one piece.
# A thread per connection with a sleeping thread per request used twice the CPU, and a burst of
# 128 arrivals delayed the answers that were due by tens of milliseconds.
RESPONSES = BaseHTTPRequestHandler.responses   # reason phrases, as http.server sends them
SERVER_HEADER = "fake-provider/1.0"
IDLE_TIMEOUT = 300.0      # idle keep-alive connections are dropped after this
MAX_HEAD = 1 << 20        # request line and header fields
MAX_HEADERS = 100


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class Headers(dict):
    """Request header fields by lower-case name; the first of repeated fields wins.  get() is
    case-insensitive, like http.server's message object."""

    def get(self, name: str, default=None):
        return dict.get(self, name.lower(), default)


def parse_head(head: bytes) -> tuple[str, str, str, tuple[int, int], Headers]:
    """Request line and header fields (CRLF or bare LF line ends)."""
    lines = head.decode("iso-8859-1").split("\n")
    request_line = lines[0].rstrip("\r")
    words = request_line.split()
    if len(words) != 3:
        raise BadRequest(400, f"Bad request syntax ({request_line!r})")
    method, target, version = words
    try:
        if not version.startswith("HTTP/"):
            raise ValueError
        major, minor = version[5:].split(".")
        if not (major.isdigit() and minor.isdigit()):
            raise ValueError
        ver = (int(major), int(minor))
    except ValueError:
        raise BadRequest(400, f"Bad request version ({version!r})") from None
    if ver >= (2, 0):
        raise BadRequest(505, f"Invalid HTTP version ({version})")
    if len(lines) > MAX_HEADERS + 1:
        raise BadRequest(431, "Too many headers")
    headers = Headers()
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            key = name.strip().lower()
            if key not in headers:
                headers[key] = value.strip()
    return request_line, method, target, ver, headers


def parse_chunked(buf: bytearray, pos: int) -> tuple[bytes, int] | None:
    """A chunked body starting at buf[pos]: (body, index after it), or None while incomplete.
    Raises ValueError on a bad chunk size."""
    chunks = []
    while True:
        eol = buf.find(b"\n", pos)
        if eol < 0:
            return None
        size = int(bytes(buf[pos:eol]).split(b";")[0].strip() or b"0", 16)
        if size < 0:
            raise ValueError("negative chunk size")
        pos = eol + 1
        if size == 0:
            while True:                     # trailer fields, up to an empty line
                eol = buf.find(b"\n", pos)
                if eol < 0:
                    return None
                empty = eol == pos or (eol == pos + 1 and buf[pos] == 13)
                pos = eol + 1
                if empty:
                    return b"".join(chunks), pos
        if len(buf) < pos + size:
            return None
        chunks.append(bytes(buf[pos:pos + size]))
        pos += size
        eol = buf.find(b"\n", pos)
        if eol < 0:
            return None
        pos = eol + 1


def find_head_end(buf: bytearray) -> tuple[int, int]:
    """(end of the header block, start of the body), or (-1, -1)."""
    crlf = buf.find(b"\r\n\r\n")
    lf = buf.find(b"\n\n", 0, crlf if crlf >= 0 else len(buf))
    if lf >= 0:
        return lf, lf + 2
    if crlf >= 0:
        return crlf, crlf + 4
    return -1, -1


_date_cache = [0, ""]


def http_date() -> str:
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[0], _date_cache[1] = now, email.utils.formatdate(now, usegmt=True)
    return _date_cache[1]


# Faults that answer 200 with content (None: a clean answer); the others need no record.
CONTENT_FAULTS = (None, "malformed", "truncate", "refusal")


class Plan:
    """A generation request between its fault decision and its answer (the latency wait)."""

    __slots__ = ("api", "cfg", "entry", "rid", "req", "prompt_text", "prompt_parts", "tool", "hint",
                 "max_tokens", "prompt_hash", "k", "decision", "info", "fresh", "prebuilt", "due")

    def __init__(self, api, cfg, entry, rid, req, prompt_text, prompt_parts, tool, hint, max_tokens,
                 prompt_hash, k, decision):
        self.api, self.cfg, self.entry, self.rid, self.req = api, cfg, entry, rid, req
        self.prompt_text, self.prompt_parts, self.tool, self.hint = prompt_text, prompt_parts, tool, hint
        self.max_tokens, self.prompt_hash, self.k, self.decision = max_tokens, prompt_hash, k, decision
        # Made while waiting (Connection.make_content), else when answering:
        self.info = None             # PromptInfo
        self.fresh = None            # the freshly generated record
        self.prebuilt = None         # (status, body, content type) of a clean answer
        self.due = False             # the answer is being (or has been) made: no more waiting work


class Connection(asyncio.Protocol):
    """One client connection: HTTP/1.1 keep-alive, one request at a time (pipelined requests wait
    in the buffer), `Content-Length` answers written in one piece."""

    def __init__(self, server: "Server"):
        self.server = server
        self.state = server.state
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.busy = False            # a request is waiting for its timer
        self.closed = False
        self.eof = False
        self.close_after = False     # close once the current answer is written
        self.continue_sent = False
        self.headers = Headers()
        self.requestline = ""
        self.command = ""
        self.client = "-"
        self.last_active = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.pending_entry: dict | None = None
        self.scheduled = False       # process() is due on the next turn of the loop
        self.arrived = 0.0           # when the latest bytes came in (loop.time())

    # ---------------------------------------------------------- transport
    def connection_made(self, transport) -> None:
        self.transport = transport
        self.server.connections.add(self)
        peer = transport.get_extra_info("peername")
        self.client = peer[0] if peer else "-"
        self.last_active = self.server.loop.time()

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.server.connections.discard(self)

    def eof_received(self) -> bool:
        self.eof = True
        # Keep the socket open to answer the requests in progress or still to be read.
        return self.busy or self.scheduled or bool(self.buf)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self.arrived = self.last_active = self.server.loop.time()
        if not self.busy and not self.scheduled:
            # Read it on the next turn of the loop: the answers that are due now (timers, which run
            # after this turn's reads) go out first, not after this request's parsing.
            self.scheduled = True
            self.server.loop.call_soon(self.process_soon)

    def process_soon(self) -> None:
        self.scheduled = False
        if not self.busy:
            self.process()

    def process(self) -> None:
        """Serve every complete request in the buffer, until one has to wait."""
        while not self.busy and not self.closed and self.buf:
            buf = self.buf
            if buf[0] in (13, 10):   # stray line ends between requests
                del buf[:len(buf) - len(buf.lstrip(b"\r\n"))]
                continue
            end, body_start = find_head_end(buf)
            if end < 0:
                if len(buf) > MAX_HEAD:
                    self.send_error(431, "Request header fields too large", close=True)
                    self.resume()
                elif self.eof:
                    self.transport.close()
                return
            try:
                self.requestline, method, target, version, headers = parse_head(bytes(buf[:end]))
            except BadRequest as e:
                self.command = ""
                self.requestline = bytes(buf[:buf.find(b"\n")]).decode("iso-8859-1").rstrip("\r")
                self.send_error(e.status, e.message, close=True)
                self.resume()
                return
            self.headers = headers
            self.command = method
            try:
                if "chunked" in headers.get("transfer-encoding", "").lower():
                    got = parse_chunked(buf, body_start)
                else:
                    length = int(headers.get("content-length") or 0)
                    if length < 0:
                        raise ValueError("negative Content-Length")
                    after = body_start + length
                    got = (bytes(buf[body_start:after]), after) if len(buf) >= after else None
            except ValueError:
                self.send_error(400, "Bad request body framing", close=True)
                self.resume()
                return
            if got is None:          # the body is still on its way
                if self.eof:
                    self.transport.close()
                elif (not self.continue_sent and version >= (1, 1)
                        and headers.get("expect", "").lower() == "100-continue"):
                    self.continue_sent = True
                    self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                return
            body, after = got
            del buf[:after]
            self.continue_sent = False
            conntype = headers.get("connection", "").lower()
            self.close_after = version < (1, 1)
            if conntype == "close":
                self.close_after = True
            elif conntype == "keep-alive":
                self.close_after = False
            self.dispatch(method, target, body)
            if not self.busy:
                self.resume()
                if self.close_after:
                    return

    def resume(self) -> None:
        """After an answer: close if asked to, else go on with the buffer."""
        if self.closed:
            return
        if self.close_after or (self.eof and not self.buf):
            self.close_after = True
            self.transport.close()
            return
        if self.busy:                # called from a timer: the request is done now
            self.busy = False
            self.process()

    def send_bytes(self, status: int, body: bytes, content_type: str = "application/json",
                   headers: list[tuple[str, str]] = ()) -> None:
        phrase = RESPONSES[status][0] if status in RESPONSES else ""
        head = [f"HTTP/1.1 {status} {phrase}\r\nServer: {SERVER_HEADER}\r\nDate: {http_date()}\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"]
        for k, v in headers:
            head.append(f"{k}: {v}\r\n")
        if self.close_after:
            head.append("Connection: close\r\n")
        head.append("\r\n")
        if self.state.verbose:
            self.log_request(status)
        if not self.closed and not self.transport.is_closing():
            self.transport.write("".join(head).encode("latin-1") + body)

    def send_json(self, status: int, obj, headers: list[tuple[str, str]] = ()) -> None:
        self.send_bytes(status, json.dumps(obj).encode(), "application/json", headers)

    def send_error(self, status: int, message: str, close: bool = False) -> None:
        if close:
            self.close_after = True
        body = b""
        if self.command != "HEAD":
            body = ('<!DOCTYPE HTML>\n<html lang="en">\n<head><meta charset="utf-8">'
                    "<title>Error response</title></head>\n<body><h1>Error response</h1>"
                    f"<p>Error code: {status}</p><p>Message: {html.escape(message)}.</p></body></html>\n").encode()
        self.send_bytes(status, body, "text/html;charset=utf-8")

    def log_request(self, status) -> None:
        sys.stderr.write('%s - - [%s] "%s" %s -\n' % (
            self.client, time.strftime("%d/%b/%Y %H:%M:%S"), self.requestline, status))

    def abort_connection(self) -> None:
        """Close with RST and no response (SO_LINGER 0)."""
        self.close_after = True
        if self.closed:
            return
        sock = self.transport.get_extra_info("socket")
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.transport.abort()

    # -------------------------------------------------------------- routes
    def dispatch(self, method: str, target: str, body: bytes) -> None:
        try:
            if method == "POST":
                self.do_POST(target, body)
            elif method == "GET":
                self.do_GET(target)
            else:
                self.send_error(501, f"Unsupported method ({method!r})")
        except Exception:            # a bug: say so on stderr, answer 500, keep serving
            traceback.print_exc()
            if self.pending_entry is not None:
                self.finish(self.pending_entry, None)
            self.busy = False
            self.send_error(500, "Internal error in the fake provider", close=True)

    def do_GET(self, target: str) -> None:
        url = urlsplit(target)
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
        elif url.path.startswith("/v1/files/") or url.path.startswith("/v1/batches/") or url.path.startswith("/v1/messages/batches/"):
            with self.state.lock:
                _bump(self.state.batch_calls, "GET " + url.path)
            self.batch_get(url.path)
        else:
            self.send_json(404, {"error": {"message": f"Unknown request URL: GET {url.path}",
                                           "type": "invalid_request_error", "code": "unknown_url"}})

    def do_POST(self, target: str, body: bytes) -> None:
        path = urlsplit(target).path
        if path in OPENAI_PATHS:
            self.generation("openai", path, body)
        elif path in ANTHROPIC_PATHS:
            self.generation("anthropic", path, body)
        elif path == "/config":
            self.post_config(body)
        elif path == "/reset":
            self.post_reset(body)
        elif path in ("/v1/files", "/v1/batches", "/v1/messages/batches") or path.endswith("/cancel"):
            with self.state.lock:
                _bump(self.state.batch_calls, "POST " + path)
            self.batch_post(path, body)
        else:
            self.send_json(404, {"error": {"message": f"Unknown request URL: POST {path}",
                                           "type": "invalid_request_error", "code": "unknown_url"}})

    def post_config(self, body: bytes) -> None:
        try:
            changes = json.loads(body or b"{}")
            with self.state.lock:
                self.state.update_config(changes)
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
        entry = new_entry(path, b"", seq=None)
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
            entry["status"] = 200
        except ProviderError as err:
            obj = error_body(api, err)
            entry["status"] = err.status
        with self.state.lock:
            self.state.record(entry)
        self.send_json(entry["status"], obj)

    # ------------------------------------------------------- generation
    # A generation request runs in steps (see the HTTP layer's comment): on arrival (prepare), the
    # checks that answer at once (limits, key, parsing) and the fault decision; while it waits
    # (make_content), what depends on the request alone; when its timer fires (deliver), the fault
    # or the content.  The result is the same as doing it all at the end, as the threaded server
    # did.  The answer is recorded in /stats before it is sent, so a client that reads /stats
    # after its answer arrives always finds it there.
    def generation(self, api: str, path: str, body: bytes) -> None:
        st = self.state
        with st.lock:
            st.request_counter += 1
            n = st.request_counter
            st.in_flight += 1
            st.max_in_flight = max(st.max_in_flight, st.in_flight)
            in_flight = st.in_flight
            cfg = st.snapshot()
        entry = new_entry(path, body, n)
        self.pending_entry = entry
        rid = hashlib.sha256(f"{cfg.seed}:{n}:{entry['t']}".encode()).hexdigest()[:24]
        entry["request_id"] = f"req_{rid}"
        try:
            plan = self.prepare(api, body, n, cfg, in_flight, entry, rid)
        except ProviderError as err:
            self.finish(entry, self.error_answer(api, cfg, entry, err))
            return
        if plan.decision.delay_s > 0:
            # The latency counts from the request's arrival: the work done since is part of it.
            self.busy = True
            arrived = min(self.arrived, entry["t"])
            self.timer = self.server.loop.call_at(arrived + plan.decision.delay_s, self.after_delay, plan)
            if plan.decision.fault in CONTENT_FAULTS:
                self.server.defer(self, plan)
        else:
            self.after_delay(plan)

    def after_delay(self, plan: Plan) -> None:
        self.timer = None
        plan.due = True
        from_timer = self.busy       # else called from process(), which goes on by itself
        try:
            answer = self.deliver(plan)
        except ProviderError as err:
            answer = self.error_answer(plan.api, plan.cfg, plan.entry, err)
        except Exception:
            if not from_timer:
                raise                # dispatch() reports it
            traceback.print_exc()
            self.finish(plan.entry, None)
            self.abort_connection()
            return
        if answer == "hang":         # no answer; the socket is closed after --hang-seconds
            self.busy = True
            self.timer = self.server.loop.call_later(plan.cfg.hang_seconds, self.end_hang, plan.entry)
            return
        if answer == "reset":
            self.finish(plan.entry, None)
            self.abort_connection()
            return
        self.finish(plan.entry, answer)
        if from_timer:
            self.resume()

    def end_hang(self, entry: dict) -> None:
        self.timer = None
        self.finish(entry, None)
        self.close_after = True
        self.resume()

    def finish(self, entry: dict, answer) -> None:
        """Record a generation request in /stats, then send its answer (if any)."""
        st = self.state
        self.pending_entry = None
        with st.lock:
            st.in_flight -= 1
            entry["t_end"] = time.monotonic()
            st.record(entry)
        if answer is not None:
            self.send_bytes(*answer)

    def error_answer(self, api: str, cfg: F.FaultConfig, entry: dict, err: ProviderError):
        headers = self.ratelimit_headers(api, cfg, entry)
        if err.status == 429:
            headers += self.retry_headers(entry, entry["retry_after"] or cfg.retry_after, cfg)
        entry["status"] = err.status
        return err.status, json.dumps(error_body(api, err)).encode(), "application/json", headers

    def retry_headers(self, entry: dict, seconds: float, cfg: F.FaultConfig) -> list[tuple[str, str]]:
        if cfg.retry_after_format == "http-date":
            # An HTTP date has whole seconds: the first one at least `seconds` from now.
            at = math.ceil(time.time() + seconds)
            entry["retry_after"] = at - time.time()
            # On the log's clock (time.monotonic, as its "t").
            entry["retry_after_until"] = time.monotonic() + entry["retry_after"]
            return [("retry-after", email.utils.formatdate(at, usegmt=True))]
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

    def prepare(self, api, body, n, cfg, in_flight, entry, rid, in_batch=False) -> Plan:
        """Steps 1-3 of a generation request, on arrival: limits, key, parsing, fault decision.
        A request of a batch skips the connection's limits and key (the batch had them)."""
        st = self.state
        if in_batch:
            return self.parse_and_decide(api, body, n, cfg, entry, rid)
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
        return self.parse_and_decide(api, body, n, cfg, entry, rid)

    def parse_and_decide(self, api, body, n, cfg, entry, rid) -> Plan:
        st = self.state
        try:
            req = json.loads(body) if isinstance(body, (bytes, str)) else body
        except ValueError:
            raise error_for(api, 400, "We could not parse the JSON body of your request.") from None
        if not isinstance(req, dict):
            raise error_for(api, 400, "Request body must be a JSON object.")
        prompt_parts, tool, hint, max_tokens = (self.parse_anthropic(req) if api == "anthropic"
                                                else self.parse_openai(req))
        prompt_text = "\n".join(prompt_parts)     # what the directives are read from
        # The request's DOMAIN line in the log: tests tell apart the jobs a request served.
        at = prompt_text.find("DOMAIN: ")
        if at >= 0:
            end = prompt_text.find("\n", at)
            entry["domain"] = prompt_text[at + 8:end if end >= 0 else len(prompt_text)][:80]

        # 3. decide faults
        prompt_hash = prompt_digest(req.get("system"), req["messages"])
        with st.lock:
            k = st.prompt_counts[prompt_hash] = st.prompt_counts.get(prompt_hash, 0) + 1
        key = f"request:{n}" if cfg.fault_key == "request" else f"prompt:{prompt_hash}:{k}"
        decision = F.decide(cfg, key)
        plan = Plan(api=api, cfg=cfg, entry=entry, rid=rid, req=req, prompt_text=prompt_text,
                    prompt_parts=prompt_parts, tool=tool,
                    hint=hint, max_tokens=max_tokens, prompt_hash=prompt_hash, k=k, decision=decision)
        return plan

    def make_content(self, plan: Plan) -> None:
        """While a request waits out its latency: the parts of its answer that depend on nothing but
        the request (see Server.work).  The fresh record depends only on (seed, prompt, k); whether
        it is used, or a near-duplicate of an earlier record instead, is decided when answering, as
        is everything that reads shared state (history, rate-limit window).  A clean answer without
        plants or a near-duplicate draw is serialised here too."""
        cfg, decision = plan.cfg, plan.decision
        plan.info = info = C.parse_prompt(plan.prompt_text, plan.hint, plan.prompt_parts)
        maybe_dup = decision.near_dup and C.supports_near_dup(info.schema)
        if maybe_dup and self.state.history.get(info.schema):
            return                   # a near-duplicate for sure: history only grows (until /reset)
        plan.fresh = C.generate(info, F.rng_for(cfg.seed, "content", plan.prompt_hash, plan.k if cfg.vary else 0), cfg.main_len())
        if decision.fault is None and not decision.plants and not maybe_dup:
            plan.entry["schema"] = info.schema
            if info.axis_description:
                plan.entry["axis_description"] = info.axis_description
            plan.prebuilt = self.build_body(plan, plan.fresh)

    def deliver(self, plan: Plan):
        """Step 4, after the latency: the answer (status, body, content type, headers), or "hang"
        or "reset" for those faults.  Raises ProviderError for an error answer."""
        st = self.state
        api, cfg, entry, rid, decision = plan.api, plan.cfg, plan.entry, plan.rid, plan.decision
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
        if fault in ("hang", "reset"):
            return fault

        # 4. content
        info = plan.info or C.parse_prompt(plan.prompt_text, plan.hint, plan.prompt_parts)
        entry["schema"] = info.schema
        if info.axis_description:
            entry["axis_description"] = info.axis_description
        if plan.prebuilt is not None:
            # A clean answer, serialised while waiting.  Nothing plants in the record: it goes into
            # the history as it is.
            with st.lock:
                hist = st.history.setdefault(info.schema, [])
                hist.append((entry["request_id"], plan.fresh))
                del hist[:-HISTORY_PER_SCHEMA]
            return self.finish_body(plan, plan.prebuilt)
        record = None
        if decision.near_dup and C.supports_near_dup(info.schema):
            with st.lock:
                earlier = list(st.history.get(info.schema, ()))
            if earlier:
                src_id, src = decision.rng.choice(earlier)
                record = C.near_duplicate(src, info.schema, decision.rng)
                entry["near_dup_of"] = src_id
        if record is None:
            record = plan.fresh
            if record is None:
                record = C.generate(info, F.rng_for(cfg.seed, "content", plan.prompt_hash,
                                                    plan.k if cfg.vary else 0), cfg.main_len())
            if fault is None:
                with st.lock:
                    hist = st.history.setdefault(info.schema, [])
                    hist.append((entry["request_id"], C.copy_record(record)))
                    del hist[:-HISTORY_PER_SCHEMA]
            if decision.plants:
                entry["planted"] = C.apply_plants(record, info, decision.plants, decision.rng)

        return self.finish_body(plan, self.build_body(plan, record))

    def build_body(self, plan: Plan, record: dict) -> tuple[int, bytes, str]:
        """(status, body, content type) of a 200 answer carrying `record`; sets the entry's usage."""
        model = plan.req["model"]
        body = self.anthropic_body if plan.api == "anthropic" else self.openai_body
        return body(record, plan.decision.fault, plan.tool, model, plan.rid, plan.prompt_text,
                    plan.max_tokens, plan.decision, plan.entry)

    def finish_body(self, plan: Plan, built: tuple[int, bytes, str]):
        """The answer for a built body: the token window and the rate-limit headers, as of now."""
        st, entry = self.state, plan.entry
        status, payload, ctype = built
        if entry["usage"]:
            with st.lock:
                st.window_tokens += entry["usage"]["prompt_tokens"] + entry["usage"]["completion_tokens"]
        entry["status"] = status
        return status, payload, ctype, self.ratelimit_headers(plan.api, plan.cfg, entry)

    # ----------------------------------------------------------- batches
    def answer_item(self, api: str, body, cfg: F.FaultConfig, fails: bool) -> tuple[int, dict]:
        """One request of a batch, answered now: the generation path without the connection's
        limits, key check or latency. (status, answer or error body); recorded in /stats."""
        st = self.state
        with st.lock:
            st.request_counter += 1
            n = st.request_counter
        path = "/v1/chat/completions" if api == "openai" else "/v1/messages"
        raw = json.dumps(body).encode()
        entry = new_entry(path, raw, n)
        entry["batch"] = True
        rid = hashlib.sha256(f"{cfg.seed}:{n}:{entry['t']}".encode()).hexdigest()[:24]
        entry["request_id"] = f"req_{rid}"
        try:
            if fails:
                entry["fault"] = "batch_item"
                raise error_for(api, 500, "The server had an error while processing your request (injected batch fault).")
            plan = self.prepare(api, raw, n, cfg, 0, entry, rid, in_batch=True)
            answer = self.deliver(plan)
            if answer in ("hang", "reset"):
                raise error_for(api, 500, "The server had an error while processing your request.")
            status, payload = answer[0], answer[1]
            try:
                obj = json.loads(payload)
            except ValueError:
                raise error_for(api, 500, "The server had an error while processing your request.") from None
        except ProviderError as err:
            status, obj = err.status, error_body(api, err)
            entry["status"] = status
        with st.lock:
            entry["t_end"] = time.monotonic()
            st.record(entry)
        return status, obj

    def batch_fail(self, api: str, status: int, message: str) -> None:
        kind = "not_found_error" if status == 404 else "invalid_request_error"
        self.send_json(status, error_body(api, ProviderError(status, kind, message)))

    def batch_caller(self, path: str):
        """(api, config) of a batch route's request once its key is checked; None when refused
        (the answer is sent)."""
        api = "anthropic" if path.startswith("/v1/messages") else "openai"
        cfg = self.state.config_snapshot()
        try:
            self.check_key(api, cfg)
        except ProviderError as err:
            self.send_json(err.status, error_body(api, err))
            return None
        return api, cfg

    def batch_post(self, path: str, body: bytes) -> None:
        caller = self.batch_caller(path)
        if caller is None:
            return
        api, cfg = caller
        st = self.state
        try:
            if path == "/v1/files":
                parts = B.parse_multipart(body, self.headers.get("Content-Type", ""))
                if "file" not in parts or "purpose" not in parts:
                    raise B.BatchError(400, "'file' and 'purpose' are required")
                filename, data = parts["file"]
                with st.lock:
                    meta = st.batches.add_file(data, filename or "upload.jsonl", parts["purpose"][1].decode(), cfg.seed)
                self.send_json(200, meta)
            elif path in ("/v1/batches", "/v1/messages/batches"):
                self.create_batch(api, body, cfg)
            else:
                bid = path.split("/")[-2]
                with st.lock:
                    b = st.batches.batches.get(bid)
                    if b is None or b["_api"] != api:
                        raise B.BatchError(404, f"No such batch: {bid}")
                    if not b["_ended"]:
                        b["_cancelled"] = True
                        b["_ready_at"] = time.monotonic()
                        if api == "openai":
                            b["status"] = "cancelling"
                            b["cancelling_at"] = int(time.time())
                        else:
                            b["cancel_initiated_at"] = B._iso(time.time())
                            b["processing_status"] = "canceling"
                    obj = B.openai_batch_object(b) if api == "openai" else B.anthropic_batch_object(b)
                self.send_json(200, obj)
        except B.BatchError as e:
            self.batch_fail(api, e.status, e.message)

    def create_batch(self, api: str, body: bytes, cfg: F.FaultConfig) -> None:
        st = self.state
        try:
            req = json.loads(body or b"{}")
        except ValueError:
            raise B.BatchError(400, "We could not parse the JSON body of your request.") from None
        if not isinstance(req, dict):
            raise B.BatchError(400, "Request body must be a JSON object.")
        requests: list[tuple[str, dict]] = []
        if api == "openai":
            if req.get("endpoint") != "/v1/chat/completions":
                raise B.BatchError(400, "endpoint must be /v1/chat/completions")
            if req.get("completion_window") != "24h":
                raise B.BatchError(400, "completion_window must be 24h")
            with st.lock:
                data = st.batches.file(str(req.get("input_file_id")))["data"]
            for number, line in enumerate(data.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    item = json.loads(line)
                except ValueError:
                    raise B.BatchError(400, f"line {number} of the input file is not JSON") from None
                if not isinstance(item, dict) or not isinstance(item.get("body"), dict) or not item.get("custom_id") \
                        or item.get("method") != "POST" or item.get("url") != "/v1/chat/completions":
                    raise B.BatchError(400, f"line {number}: needs custom_id, method POST, url /v1/chat/completions and a body")
                requests.append((str(item["custom_id"]), item["body"]))
        else:
            items = req.get("requests")
            if not isinstance(items, list) or not items:
                raise B.BatchError(400, "requests: a non-empty list is required")
            for i, item in enumerate(items):
                if not isinstance(item, dict) or not item.get("custom_id") or not isinstance(item.get("params"), dict):
                    raise B.BatchError(400, f"requests.{i}: needs custom_id and params")
                requests.append((str(item["custom_id"]), item["params"]))
        if len(requests) > B.MAX_REQUESTS:
            raise B.BatchError(400, f"a batch holds at most {B.MAX_REQUESTS} requests")
        if len({c for c, _ in requests}) != len(requests):
            raise B.BatchError(400, "custom_id values must be unique within a batch")
        with st.lock:
            bid = st.batches.new_id("batch_" if api == "openai" else "msgbatch_", cfg.seed)
        expires, fails = B.decide(cfg.seed, bid, len(requests), cfg.batch_expire_rate, cfg.batch_error_rate)
        answered = []
        for (custom_id, params), fail in zip(requests, fails):
            status, obj = self.answer_item(api, params, cfg, fail)
            answered.append((custom_id, status, obj))
        now, wall = time.monotonic(), time.time()
        common = {"_api": api, "_items": answered, "_expires": expires, "_cancelled": False, "_ended": False,
                  "_ready_at": now + cfg.batch_delay_ms / 1000, "_created_mono": now, "_created_wall": wall,
                  "_base": f"http://{self.headers.get('Host', '127.0.0.1')}"}
        if api == "openai":
            b = {"id": bid, "object": "batch", "endpoint": "/v1/chat/completions", "errors": None,
                 "input_file_id": req["input_file_id"], "completion_window": "24h", "status": "in_progress",
                 "output_file_id": None, "error_file_id": None, "created_at": int(wall), "in_progress_at": int(wall),
                 "expires_at": int(wall) + 86400, "finalizing_at": None, "completed_at": None, "failed_at": None,
                 "expired_at": None, "cancelling_at": None, "cancelled_at": None,
                 "request_counts": {"total": len(answered), "completed": 0, "failed": 0},
                 "metadata": req.get("metadata"), **common}
        else:
            b = {"id": bid, "type": "message_batch", "processing_status": "in_progress",
                 "request_counts": {"processing": len(answered), "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0},
                 "ended_at": None, "created_at": B._iso(wall), "expires_at": B._iso(wall + 86400),
                 "archived_at": None, "cancel_initiated_at": None, "results_url": None, **common}
        with st.lock:
            st.batches.batches[bid] = b
            B.settle(b, st.batches, now, cfg.seed)
            obj = B.openai_batch_object(b) if api == "openai" else B.anthropic_batch_object(b)
        self.send_json(200, obj)

    def batch_get(self, path: str) -> None:
        caller = self.batch_caller(path)
        if caller is None:
            return
        api, cfg = caller
        st = self.state
        parts = path.split("/")
        try:
            with st.lock:
                if path.startswith("/v1/files/"):
                    f = st.batches.file(parts[3])
                    if len(parts) == 5 and parts[4] == "content":
                        data = f["data"]
                    elif len(parts) == 4:
                        data = json.dumps(f["meta"]).encode()
                    else:
                        raise B.BatchError(404, f"Unknown request URL: GET {path}")
                    ctype = "application/octet-stream" if len(parts) == 5 else "application/json"
                else:
                    bid = parts[3] if api == "openai" else parts[4]
                    b = st.batches.batches.get(bid)
                    if b is None or b["_api"] != api:
                        raise B.BatchError(404, f"No such batch: {bid}")
                    B.settle(b, st.batches, time.monotonic(), cfg.seed)
                    if api == "anthropic" and parts[-1] == "results":
                        if not b["_ended"]:
                            raise B.BatchError(400, f"Batch {bid} has not ended yet: its results are not available")
                        data, ctype = b["_results"], "application/binary"
                    else:
                        obj = B.openai_batch_object(b) if api == "openai" else B.anthropic_batch_object(b)
                        data, ctype = json.dumps(obj).encode(), "application/json"
        except B.BatchError as e:
            self.batch_fail(api, e.status, e.message)
            return
        self.send_bytes(200, data, ctype)

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
        parts = [text_of(m.get("content")) for m in messages]
        return parts, tool, hint, max_tokens

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
        parts = [text_of(req.get("system"))] + [text_of(m.get("content")) for m in messages]
        return parts, tool, tool, max_tokens

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
        rng = decision.rng if fault in ("malformed", "truncate") else None   # made on first use
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
        rng = decision.rng if fault in ("malformed", "truncate") else None   # made on first use
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
LISTEN_BACKLOG = 1024


class Server:
    """The event loop of one process, serving the shared listening socket."""

    def __init__(self, sock: socket.socket, state: State):
        self.sock = sock
        self.state = state
        self.connections: set[Connection] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.backlog: collections.deque = collections.deque()   # (connection, plan) to make content for
        self.working = False

    def defer(self, conn: "Connection", plan: "Plan") -> None:
        """Make a waiting request's content in the background (see work)."""
        self.backlog.append((conn, plan))
        if not self.working:
            self.working = True
            self.loop.call_soon(self.work)

    def work(self) -> None:
        """Content for one waiting request per turn of the event loop: each turn first reads what
        arrived and sends the answers that are due, so a burst of arrivals never holds up an
        answer by more than one record's making.  A request whose answer comes due first simply
        makes its content then."""
        while self.backlog:
            conn, plan = self.backlog.popleft()
            if not plan.due and not conn.closed:
                try:
                    conn.make_content(plan)
                except Exception:    # reported, and made again when answering
                    traceback.print_exc()
                    plan.info = plan.fresh = plan.prebuilt = None
                break
        if self.backlog:
            self.loop.call_soon(self.work)
        else:
            self.working = False

    async def serve(self, on_ready=None) -> None:
        """Serve until SIGTERM or SIGINT."""
        self.loop = loop = asyncio.get_running_loop()
        stop = loop.create_future()

        def on_signal():
            if not stop.done():
                stop.set_result(None)

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        server = await loop.create_server(lambda: Connection(self), sock=self.sock, backlog=LISTEN_BACKLOG)
        sweeper = loop.call_later(IDLE_TIMEOUT / 10, self.sweep)
        if on_ready is not None:
            on_ready()
        await stop
        # Stop at once: hung and waiting requests are dropped with their connections.
        sweeper.cancel()
        server.close()
        for conn in list(self.connections):
            if conn.timer is not None:
                conn.timer.cancel()
            conn.transport.abort()

    def sweep(self) -> None:
        """Drop keep-alive connections idle for IDLE_TIMEOUT."""
        now = self.loop.time()
        for conn in list(self.connections):
            if not conn.busy and now - conn.last_active > IDLE_TIMEOUT:
                conn.transport.close()
        self.loop.call_later(IDLE_TIMEOUT / 10, self.sweep)


def listen(host: str, port: int) -> socket.socket:
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(LISTEN_BACKLOG)
    sock.setblocking(False)
    return sock


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
    a("--batch-delay-ms", type=float, default=0.0, help="a batch is in progress this long after it is made")
    a("--batch-expire-rate", type=float, default=0.0, help="share of batches that expire, half answered (0-1)")
    a("--batch-error-rate", type=float, default=0.0, help="share of a batch's requests that fail with a 500 (0-1)")
    a("--answer-chars", type=int, default=0, help="main answer text (output, chosen, ...) about this many characters "
                                                  "(0: 200 to 800)")
    a("--latency-ms", type=float, default=0.0, help="fixed added latency per request")
    a("--jitter-ms", type=float, default=0.0, help="extra uniform random latency 0..J ms")
    a("--max-concurrency", type=int, default=0, help="answer 429 beyond this many in flight (0 = off)")
    a("--rpm-limit", type=int, default=0, help="answer 429 beyond this many requests per minute (0 = off)")
    a("--rpm-window", type=float, default=60.0, help="seconds of the --rpm-limit window (default 60)")
    a("--retry-after", type=float, default=1.0, help="retry-after seconds sent with 429 (default 1)")
    a("--retry-after-format", choices=["seconds", "http-date"], default="seconds",
      help="send retry-after as seconds (with retry-after-ms) or as an HTTP date (default seconds)")
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
        retry_after=args.retry_after, retry_after_format=args.retry_after_format, hang_seconds=args.hang_seconds,
        near_dup_rate=args.near_dup_rate, answer_chars=args.answer_chars, vary=args.vary,
        batch_delay_ms=args.batch_delay_ms, batch_expire_rate=args.batch_expire_rate, batch_error_rate=args.batch_error_rate, fault_key=args.fault_key,
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
    sock = listen(args.host, args.port)
    port = sock.getsockname()[1]
    # A parent that spawned us from a thread with signals blocked (libdispatch workers do) passes
    # that mask on: unblock, or SIGTERM would never arrive.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    # More processes on the one listening socket, for load benchmarks: each has its own event
    # loop, and its own counters, history and /stats.
    children = []
    for _ in range(args.workers - 1):
        pid = os.fork()
        if pid == 0:
            _die_with_parent()
            try:
                asyncio.run(Server(sock, state).serve())
            finally:
                os._exit(0)
        children.append(pid)

    def ready():
        if args.port_file:
            tmp = f"{args.port_file}.tmp{os.getpid()}"
            with open(tmp, "w") as f:
                f.write(f"{port}\n")
            os.replace(tmp, args.port_file)
        sys.stdout.write(f"LISTENING {port}\n")
        sys.stdout.flush()

    try:
        asyncio.run(Server(sock, state).serve(ready))
    finally:
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
                os.waitpid(pid, 0)
            except OSError:
                pass
        sock.close()
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
