"""The synthd client: every method of the protocol, over a Unix socket or TCP."""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
import threading
import time
from typing import Any, Dict, Iterator, List, Mapping, Optional, Union

from google.protobuf import json_format

from . import _methods as M, _wire
from ._address import Address, resolve_address
from .errors import (Cancelled, ConnectionLost, DeadlineExceeded, FieldError, InvalidArgument, StatusCode,
                     SynthError, Unavailable)
from .models import Job, JobList, Record, SplitInfo, to_dict
from .v1 import request_pb2, service_pb2 as pb

RequestLike = Union[Mapping[str, Any], str, bytes, request_pb2.JobRequest]


def job_request(request: RequestLike) -> request_pb2.JobRequest:
    """The documentation's JSON body (a dict, or JSON text) as a ``JobRequest``.

    This is the proto3 JSON mapping with the proto field names, unknown fields refused, done here
    and stopping at the first problem (``MALFORMED_REQUEST``). `Client.generate` and `Client.plan`
    send a dict as JSON instead, and the server reports every problem of it at once.
    """
    if isinstance(request, request_pb2.JobRequest):
        return request
    if isinstance(request, (str, bytes, bytearray)):
        try:
            request = json.loads(request)
        except ValueError as e:
            raise _malformed("(body)", "the body must be one JSON object matching the request", str(e)) from None
    if not isinstance(request, Mapping):
        raise TypeError(f"request must be a dict (the documented JSON body), got {type(request).__name__}")
    try:
        return json_format.ParseDict(request, request_pb2.JobRequest(), ignore_unknown_fields=False)
    except json_format.ParseError as e:
        text = str(e)
        m = re.search(r'has no field named "([^"]+)" at "([^"]*)"', text)
        if m:
            path = ".".join(p for p in m.group(2).split(".")[1:] + [m.group(1)] if p)
            raise _malformed(path, "unknown field: not part of the request", m.group(1)) from None
        # "Failed to parse advanced field: Failed to parse coverage field: ..." names the path.
        path = ".".join(re.findall(r"Failed to parse (\w+) field", text)) or "(body)"
        raise _malformed(path, "a value has the wrong type for its field", text.split("\n")[0]) from None


def _request_fields(request: RequestLike) -> Dict[str, Any]:
    """How Generate and Plan carry a request: a ``JobRequest`` as it is; a dict or JSON text as
    ``request_json``, which the server reads with every problem reported in one answer (JSON syntax
    with line and column, unknown fields and wrong types with their paths, and the rules)."""
    if isinstance(request, request_pb2.JobRequest):
        return {"request": request}
    if isinstance(request, (bytes, bytearray)):
        return {"request_json": bytes(request).decode("utf-8", errors="replace")}
    if isinstance(request, str):
        return {"request_json": request}
    if not isinstance(request, Mapping):
        raise TypeError(f"request must be a dict (the documented JSON body), got {type(request).__name__}")
    try:
        return {"request_json": json.dumps(request, ensure_ascii=False, allow_nan=False, separators=(",", ":"))}
    except ValueError as e:
        raise _malformed("(body)", "numbers must be finite (JSON has no NaN or Infinity)", str(e)) from None


def _malformed(field: str, rule: str, value: str) -> InvalidArgument:
    return InvalidArgument(StatusCode.INVALID_ARGUMENT, "the request body is not a valid request", "MALFORMED_REQUEST",
                           [FieldError(field, rule, value)])


class Client:
    """A client of synthd.

    ``address``: ``unix:PATH``, a path, ``HOST:PORT``, or ``tls:HOST:PORT`` for TLS; default
    ``$SYNTH_ADDRESS``, else ``unix:~/.synthd/synthd.sock``. ``api_key``: default ``$SYNTH_API_KEY``.
    ``tls_ca``: the CA certificate (PEM) that signed synthd's, default ``$SYNTH_TLS_CA``, else the
    system's roots; ``tls_cert`` and ``tls_key``: a client certificate for mutual TLS (default
    ``$SYNTH_TLS_CERT``, ``$SYNTH_TLS_KEY``). The server's certificate must name the host dialled.
    ``timeout``: the deadline of unary calls, in seconds (sent to the server; None for none).
    ``reconnect_timeout``: how long a stream keeps trying to reconnect after its connection drops.

    Unary calls share one connection (safe to use from several threads: one call at a time).
    Each stream (`watch`, `records`, `fetch_splits`) gets a connection of its own, so a stream that
    is read slowly never stalls other calls. After a fork the child opens its own connections.
    """

    def __init__(self, address: Optional[str] = None, api_key: Optional[str] = None, *,
                 timeout: Optional[float] = 60.0, connect_timeout: float = 10.0, reconnect_timeout: float = 60.0,
                 max_frame_size: int = _wire.DEFAULT_MAX_FRAME_SIZE, tls_ca: Optional[str] = None,
                 tls_cert: Optional[str] = None, tls_key: Optional[str] = None):
        self.address: Address = resolve_address(address)
        self.tls_ca = tls_ca if tls_ca is not None else os.environ.get("SYNTH_TLS_CA")
        self.tls_cert = tls_cert if tls_cert is not None else os.environ.get("SYNTH_TLS_CERT")
        self.tls_key = tls_key if tls_key is not None else os.environ.get("SYNTH_TLS_KEY")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        self._ssl_context: Optional[ssl.SSLContext] = None
        self.api_key: str = api_key if api_key is not None else os.environ.get("SYNTH_API_KEY", "")
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.reconnect_timeout = reconnect_timeout
        self.max_frame_size = max_frame_size
        self._lock = threading.Lock()
        self._conn: Optional[_wire.Connection] = None
        self._pid = os.getpid()

    def __repr__(self) -> str:
        return f"Client(address={str(self.address)!r})"

    # Pickles as its settings: a DataLoader worker or another process reconnects on first use.
    def __getstate__(self):
        return {"address": str(self.address), "api_key": self.api_key, "timeout": self.timeout,
                "connect_timeout": self.connect_timeout, "reconnect_timeout": self.reconnect_timeout,
                "max_frame_size": self.max_frame_size, "tls_ca": self.tls_ca, "tls_cert": self.tls_cert,
                "tls_key": self.tls_key}

    def __setstate__(self, state):
        self.__init__(state.pop("address"), state.pop("api_key"), **state)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Closes the unary connection (streams close their own when they end)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # ---- plumbing --------------------------------------------------------------------------

    def _tls_context(self) -> Optional[ssl.SSLContext]:
        """The TLS context of a ``tls:`` address, made once: TLS 1.2 or newer, the server's
        certificate checked against the CA and the host name."""
        if self.address.kind != "tls":
            return None
        if self._ssl_context is None:
            context = ssl.create_default_context(cafile=self.tls_ca)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            if self.tls_cert is not None:
                context.load_cert_chain(self.tls_cert, self.tls_key)
            self._ssl_context = context
        return self._ssl_context

    def _connect(self) -> _wire.Connection:
        return _wire.Connection(self.address, connect_timeout=self.connect_timeout, max_frame_size=self.max_frame_size,
                                ssl_context=self._tls_context())

    def _unary(self, method: M.Method, request, *, retry: bool = True):
        """One unary call of ``method`` (from `synthd._methods`), which gives its response type.
        A stale connection (closed by the server while idle) is replaced first; when ``retry``
        (calls that change nothing, or Generate with an idempotency key), a call whose connection
        fails before its status arrives is tried once more on a new one."""
        _check_call(method, M.Kind.UNARY, request)
        timeout_ms = int(self.timeout * 1000) if self.timeout else 0
        with self._lock:
            if self._pid != os.getpid():
                # A forked child must not talk on its parent's connection; closing its own copy of
                # the descriptor leaves the parent's connection as it is.
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                self._pid = os.getpid()
            for attempt in (0, 1):
                if self._conn is not None and (self._conn.closed or self._conn.looks_closed()):
                    self._conn.close()
                    self._conn = None
                if self._conn is None:
                    self._conn = self._connect()
                conn = self._conn
                # The server ends the call at the deadline; the socket waits a little longer for that status.
                conn.sock_timeout = self.timeout + 5 if self.timeout else None
                conn.sock.settimeout(conn.sock_timeout)
                try:
                    call_id = conn.open_call(method.name, self.api_key, timeout_ms, request)
                    return conn.unary(call_id, method.response_type)
                except ConnectionLost:
                    conn.close()
                    self._conn = None
                    if attempt or not retry:
                        raise
                except socket.timeout as e:
                    conn.close()
                    self._conn = None
                    raise DeadlineExceeded(StatusCode.DEADLINE_EXCEEDED,
                                           f"no answer from synthd to {method.name} within {conn.sock_timeout} s") from e
                except SynthError:
                    if conn.closed:  # a status on call 0 ends the connection
                        self._conn = None
                    raise
                except BaseException:
                    # Interrupted part-way (KeyboardInterrupt, say): the connection may hold half a
                    # frame, so it is not used again.
                    conn.close()
                    self._conn = None
                    raise

    # ---- jobs ------------------------------------------------------------------------------

    def generate(self, request: RequestLike, *, idempotency_key: Optional[str] = None,
                 confirm_domain: bool = False) -> Job:
        """Starts a job from the documentation's JSON body (a dict or JSON text) and returns it, ``queued``.

        A body with problems raises `InvalidArgument` listing all of them (``VALIDATION_ERROR``;
        ``MALFORMED_REQUEST`` with line and column when JSON text does not parse).

        A repeat with the same ``idempotency_key`` and body returns the same job; the same key with
        another body raises `FailedPrecondition` (``IDEMPOTENCY_CONFLICT``). ``confirm_domain``
        skips the domain spell check.
        """
        req = pb.GenerateRequest(domain_confirmed=confirm_domain, idempotency_key=idempotency_key or "",
                                 **_request_fields(request))
        # Without an idempotency key a retry could start a second job: never retry then.
        return Job.from_proto(self._unary(M.GENERATE, req, retry=bool(idempotency_key)).job)

    def plan(self, request: RequestLike, *, confirm_domain: bool = False) -> Dict[str, Any]:
        """Validates and prices a request without starting a job.

        Returns ``{"plan": {...}, "cost": {...}, "effective_request": {...}}``: the exact counts per
        category / coverage cell / axis, techniques and splits, the cost estimate, and the request
        after defaults (as a JSON body).
        """
        resp = self._unary(M.PLAN, pb.PlanRequest(domain_confirmed=confirm_domain, **_request_fields(request)))
        return {"plan": to_dict(resp.plan), "cost": to_dict(resp.cost),
                "effective_request": to_dict(resp.effective_request, presence=True)}

    def job(self, job_id: str) -> Job:
        """One job."""
        return Job.from_proto(self._unary(M.GET_JOB, pb.GetJobRequest(job_id=job_id)).job)

    def jobs(self, status: Optional[str] = None, *, limit: int = 0, page_token: Optional[str] = None) -> JobList:
        """A page of the org's jobs, newest first (``limit`` 0 means 50; at most 500).
        The result is a list with ``next_page_token`` for the next page (empty at the end)."""
        resp = self._unary(M.LIST_JOBS, pb.ListJobsRequest(status=status or "", limit=limit, page_token=page_token or ""))
        return JobList([Job.from_proto(j) for j in resp.jobs], resp.next_page_token)

    def iter_jobs(self, status: Optional[str] = None, *, page_size: int = 500) -> Iterator[Job]:
        """Every job of the org, newest first, page after page."""
        token = None
        while True:
            page = self.jobs(status, limit=page_size, page_token=token)
            yield from page
            if not page.next_page_token:
                return
            token = page.next_page_token

    def cancel(self, job_id: str) -> Job:
        """Cancels a job; its accepted records are kept. A finished job raises `FailedPrecondition`."""
        return Job.from_proto(self._unary(M.CANCEL_JOB, pb.CancelJobRequest(job_id=job_id), retry=False).job)

    def delete(self, job_id: str) -> Dict[str, Any]:
        """Deletes an ended job with its records, events, manifest and exports; a queued or running job
        raises `FailedPrecondition` (JOB_NOT_ENDED): cancel it first. Returns what was removed."""
        resp = self._unary(M.DELETE_JOB, pb.DeleteJobRequest(job_id=job_id), retry=False)
        return {"job_id": resp.job_id, "records_deleted": resp.records_deleted, "export_bytes_deleted": resp.export_bytes_deleted}

    def usage(self) -> Dict[str, Any]:
        """The org's usage this month (UTC) and what its plan has left: records, jobs, cost_usd, quota,
        quota_used, quota_left (free and subscription), balance_usd and balance_left_usd (payg)."""
        resp = self._unary(M.GET_USAGE, pb.GetUsageRequest())
        return {f.name: getattr(resp, f.name) for f in resp.DESCRIPTOR.fields}

    def compare(self, job_a: str, job_b: str, *, limit: int = 1000) -> Dict[str, Any]:
        """Every near-duplicate pair between two jobs of the org, by the in-job rule (trigram Jaccard of
        the whole records, or of their prompt sides, above 0.7, found exactly): ``total`` pairs in all,
        ``records_a``, ``records_b``, and ``pairs`` (at most ``limit``, by seq_b then seq_a), each with
        ``seq_a``, ``seq_b``, ``similarity``, ``prompt_similarity`` and ``matched`` (record, prompt or both)."""
        resp = self._unary(M.COMPARE_JOBS, pb.CompareJobsRequest(job_a=job_a, job_b=job_b, limit=limit))
        return {
            "total": resp.total, "records_a": resp.records_a, "records_b": resp.records_b, "threshold": resp.threshold,
            "pairs": [{"seq_a": p.seq_a, "seq_b": p.seq_b, "similarity": p.similarity, "prompt_similarity": p.prompt_similarity,
                       "matched": p.matched} for p in resp.pairs],
        }

    def report(self, job_id: str) -> Dict[str, Any]:
        """The job's quality report, as manifest.json holds it (pass rate, diversity, grade, rejections)."""
        resp = self._unary(M.GET_QUALITY_REPORT, pb.GetQualityReportRequest(job_id=job_id))
        return json.loads(resp.json) if resp.json else to_dict(resp.report)

    def manifest(self, job_id: str, *, raw: bool = False) -> Union[Dict[str, Any], bytes]:
        """The manifest.json of a job that succeeded (parsed, or its bytes with ``raw=True``).
        Before that it raises `FailedPrecondition`."""
        resp = self._unary(M.GET_MANIFEST, pb.GetManifestRequest(job_id=job_id))
        return bytes(resp.json) if raw else json.loads(resp.json)

    # ---- public ----------------------------------------------------------------------------

    def pricing(self) -> Dict[str, Any]:
        """The price list per 1,000 accepted records, per tier, and the surcharges."""
        return to_dict(self._unary(M.GET_PRICING, pb.GetPricingRequest()))

    def health(self) -> Dict[str, Any]:
        """``{"status": "ok"|"degraded", "version": ..., "components": [{name, status, detail}]}``."""
        return to_dict(self._unary(M.HEALTH, pb.HealthRequest()))

    # ---- keys ------------------------------------------------------------------------------

    def keys(self) -> List[Dict[str, Any]]:
        """The org's API keys (never the secret): key_id, prefix, name, scope, created_at, expires_at,
        expired, last_used_at, revoked."""
        return [to_dict(k) for k in self._unary(M.LIST_API_KEYS, pb.ListApiKeysRequest()).keys]

    def create_key(self, name: str = "", *, read_only: bool = False, expires_in: Optional[float] = None) -> Dict[str, Any]:
        """A new key: ``{"key": "sk_live_...", "info": {...}}``. The key is shown only this once.

        ``read_only``: the key may call the read methods only (jobs, watch, records, splits,
        reports, manifests): what a training loader should hold. ``expires_in``: seconds (or a
        ``datetime.timedelta``) until the key stops working; None: never."""
        seconds = 0
        if expires_in is not None:
            total = expires_in.total_seconds() if hasattr(expires_in, "total_seconds") else float(expires_in)
            seconds = max(1, int(total))
        req = pb.CreateApiKeyRequest(name=name, scope="read" if read_only else "full", expires_in_seconds=seconds)
        resp = self._unary(M.CREATE_API_KEY, req, retry=False)
        return {"key": resp.key, "info": to_dict(resp.info)}

    def revoke_key(self, key_id: str) -> Dict[str, Any]:
        """Revokes a key by its id; returns its info."""
        return to_dict(self._unary(M.REVOKE_API_KEY, pb.RevokeApiKeyRequest(key_id=key_id), retry=False).key)

    # ---- streams ---------------------------------------------------------------------------

    def _resilient(self, method: M.Method, make_request, mode: int, on_item, resume) -> Iterator[Any]:
        """Runs a server stream of ``method`` (from `synthd._methods`) on a connection of its own.
        When the connection drops (or the server ends the call UNAVAILABLE or CANCELLED as it shuts
        down) it reconnects, with backoff, for up to ``reconnect_timeout`` seconds, and asks
        ``resume(last_seq)`` where to pick up: ``make_request()`` is then called again."""
        down_since = None
        delay = 0.05
        while True:
            conn = None
            connected_at = None
            try:
                try:
                    conn = self._connect()
                    request = make_request()
                    _check_call(method, M.Kind.SERVER_STREAMING, request)
                    call_id = conn.open_call(method.name, self.api_key, 0, request)
                except ConnectionLost:
                    if conn is not None:
                        conn.close()
                    conn = None
                    raise
                connected_at = time.monotonic()
                yield from conn.stream(call_id, method.response_type, mode, on_item, resume.skip_through())
                return
            except ConnectionLost as e:
                last_seq = getattr(e, "last_seq", None)
                resume.lost(last_seq)
                failure: SynthError = e
            except (Cancelled, Unavailable) as e:
                # This client never cancels a stream it is still reading: the server is going away
                # (it ends open calls UNAVAILABLE / SHUTTING_DOWN as it stops).
                last_seq = getattr(e, "last_seq", None)
                resume.lost(last_seq)
                failure = e
            finally:
                if conn is not None:
                    conn.close()
            now = time.monotonic()
            if last_seq is not None or (connected_at is not None and now - connected_at > 1.0):
                # The connection was doing its work: this is a new outage, not the same one.
                down_since = None
                delay = 0.05
            if down_since is None:
                down_since = now
            if now - down_since > self.reconnect_timeout:
                raise failure
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def watch(self, job_id: str, after_seq: int = 0, *, progress_only: bool = False) -> Iterator[Union[Job, Record]]:
        """Follows a job live: yields `Record` objects (``seq``, ``json`` bytes, ``data`` dict)
        and `Job` progress snapshots, in order, until the job is final and every record with
        ``seq > after_seq`` has been yielded. The last `Job` yielded is the final state.

        If the connection drops it reconnects and resumes after the last record it yielded, so
        no record is lost and none repeats.
        """
        state = _WatchResume(after_seq)
        return self._resilient(M.WATCH_JOB, lambda: pb.WatchJobRequest(job_id=job_id, after_seq=state.after_seq,
                                                                       progress_only=progress_only),
                               _wire.RECORD, _watch_item, state)

    def wait(self, job_id: str, timeout: Optional[float] = None) -> Job:
        """Blocks until the job is final and returns it. Raises `DeadlineExceeded` after ``timeout`` s."""
        deadline = time.monotonic() + timeout if timeout is not None else None
        last = None
        stream = self.watch(job_id, progress_only=True)
        try:
            for ev in stream:
                last = ev
                if ev.done:
                    return ev
                if deadline is not None and time.monotonic() > deadline:
                    break
        finally:
            stream.close()
        if last is not None and last.done:
            return last
        raise DeadlineExceeded(StatusCode.DEADLINE_EXCEEDED, f"job {job_id} is not final after {timeout} s")

    def records(self, job_id: str, split: Optional[str] = None, *, raw: bool = False,
                with_seq: bool = False) -> Iterator[Any]:
        """The records of a job, as dicts (``raw=True``: the exact JSON bytes of each line, no
        newline; ``with_seq=True``: ``(seq, record)`` pairs).

        Without ``split``: every record in seq order. If the job is still running this follows it
        until it is final. With ``split`` (a finished job's named split, e.g. ``"train"``; ``"all"``
        when the request had no ``output_split``): that split's records, in file order.
        Either way a dropped connection is resumed after the last record yielded.
        """
        mode = (_wire.SEQ_RAW if raw else _wire.SEQ_DICT) if with_seq else (_wire.RAW if raw else _wire.DICT)
        if split is None:
            state = _WatchResume(0)
            return self._resilient(M.WATCH_JOB, lambda: pb.WatchJobRequest(job_id=job_id, after_seq=state.after_seq),
                                   mode, _ignore, state)
        if not split:
            raise ValueError("split must be a split name such as 'train', or None for every record")
        state = _SplitResume()
        return self._resilient(M.FETCH_SPLITS, lambda: pb.FetchSplitsRequest(job_id=job_id, split=split),
                               mode, state.on_item_quiet, state)

    def fetch_splits(self, job_id: str, split: Optional[str] = None) -> Iterator[Union[SplitInfo, Record]]:
        """A succeeded job's splits: for each (or only ``split``), a `SplitInfo` then its `Record` s
        in file order. Resumes after a dropped connection without repeating anything."""
        state = _SplitResume()
        return self._resilient(M.FETCH_SPLITS, lambda: pb.FetchSplitsRequest(job_id=job_id, split=split or ""),
                               _wire.RECORD, state.on_item, state)

    def split_infos(self, job_id: str) -> List[SplitInfo]:
        """The names, sizes and hashes of a succeeded job's splits (reads the records past)."""
        return [x for x in self.fetch_splits(job_id) if isinstance(x, SplitInfo)]


def _check_call(method: M.Method, kind: M.Kind, request) -> None:
    """A call site that passes the wrong request, or a stream to `_unary`, is a bug in this client."""
    if method.kind is not kind or type(request) is not method.request_type:
        raise TypeError(f"{method.name} is a {method.kind.value} call taking a "
                        f"{method.request_type.DESCRIPTOR.full_name}; got a {kind.value} call with a {type(request).__name__}")


def _watch_item(item):
    return Job.from_proto(item.progress) if item.HasField("progress") else None


def _ignore(item):
    return None


class _WatchResume:
    """Where a WatchJob stream picks up after a drop: after the last record yielded."""

    def __init__(self, after_seq: int):
        self.after_seq = after_seq

    def lost(self, last_seq: Optional[int]) -> None:
        if last_seq is not None:
            self.after_seq = last_seq

    def skip_through(self) -> None:
        return None


class _SplitResume:
    """Where a FetchSplits stream picks up after a drop. The split files of a succeeded job never
    change, so the stream is asked again and what was yielded already is dropped: the split
    headers seen, and the records through the last one yielded."""

    def __init__(self):
        self.headers_seen = 0
        self.headers_now = 0
        self.last_seq: Optional[int] = None

    def lost(self, last_seq: Optional[int]) -> None:
        if last_seq is not None:
            self.last_seq = last_seq
        self.headers_now = 0

    def skip_through(self) -> Optional[int]:
        return self.last_seq

    def on_item(self, item):
        if not item.HasField("split"):
            return None
        self.headers_now += 1
        if self.headers_now <= self.headers_seen:
            return None
        self.headers_seen = self.headers_now
        s = item.split
        return SplitInfo(s.name, s.count, s.sha256)

    def on_item_quiet(self, item):
        self.on_item(item)
        return None
