"""The providers' batch APIs, faked: OpenAI's Files + Batches (a JSONL file of requests uploaded as
multipart form data, `/v1/batches`, an output file and an error file) and Anthropic's Message
Batches (`/v1/messages/batches`, a JSONL results stream).

Every request of a batch is answered when the batch is created, through the same generation path
as a request sent on its own (content, faults, usage, /stats), but without the connection's limits
or latency. The batch then reports itself in progress until `batch_delay_ms` after it was created,
and ended after. `batch_expire_rate` is the share of batches that expire (their first half
answered, the rest expired), and `batch_error_rate` the share of requests that fail inside a batch
(a 500 of their own). Both are decided by the seed, per batch and per request.

State lives in `Batches`, under the server state's lock."""
from __future__ import annotations

import hashlib
import json
import random
import time
from datetime import datetime, timezone

MAX_REQUESTS = 50_000


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class BatchError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class Batches:
    def __init__(self):
        self.files: dict[str, dict] = {}
        self.batches: dict[str, dict] = {}
        self.seq = 0

    def clear(self) -> None:
        self.files.clear()
        self.batches.clear()

    def new_id(self, prefix: str, seed: int) -> str:
        self.seq += 1
        # Deterministic per seed and order: a test's batch fails the same requests every run.
        return prefix + hashlib.sha256(f"{seed}:{prefix}:{self.seq}".encode()).hexdigest()[:24]

    # ------------------------------------------------------------------ files (OpenAI)
    def add_file(self, data: bytes, filename: str, purpose: str, seed: int) -> dict:
        fid = self.new_id("file-", seed)
        meta = {"id": fid, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                "filename": filename, "purpose": purpose, "status": "processed"}
        self.files[fid] = {"meta": meta, "data": data}
        return meta

    def file(self, fid: str) -> dict:
        f = self.files.get(fid)
        if f is None:
            raise BatchError(404, f"No such File object: {fid}")
        return f


def parse_multipart(body: bytes, content_type: str) -> dict[str, tuple[str | None, bytes]]:
    """name -> (filename, bytes) of a multipart/form-data body."""
    boundary = None
    for part in content_type.split(";"):
        part = part.strip()
        if part.lower().startswith("boundary="):
            boundary = part[9:].strip('"')
    if not boundary:
        raise BatchError(400, "a multipart/form-data body with a boundary is required")
    out: dict[str, tuple[str | None, bytes]] = {}
    delimiter = b"--" + boundary.encode()
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        chunk = chunk[2:] if chunk.startswith(b"\r\n") else chunk
        head, sep, data = chunk.partition(b"\r\n\r\n")
        if not sep:
            continue
        if data.endswith(b"\r\n"):
            data = data[:-2]
        name = filename = None
        for line in head.decode("utf-8", "replace").split("\r\n"):
            if line.lower().startswith("content-disposition:"):
                for item in line.split(";")[1:]:
                    key, _, value = item.strip().partition("=")
                    if key == "name":
                        name = value.strip('"')
                    elif key == "filename":
                        filename = value.strip('"')
        if name:
            out[name] = (filename, data)
    return out


def decide(seed: int, batch_id: str, n: int, expire_rate: float, error_rate: float):
    """Whether the batch expires, and which of its n requests fail on their own."""
    rng = random.Random(f"{seed}:batch:{batch_id}")
    expires = rng.random() < expire_rate
    errors = [rng.random() < error_rate for _ in range(n)]
    return expires, errors


def openai_batch_object(b: dict) -> dict:
    return {k: v for k, v in b.items() if not k.startswith("_")}


def settle(b: dict, store: Batches, now: float, seed: int) -> None:
    """Ends a batch whose time has come: counts, and its output and error files (OpenAI)."""
    if b["_ended"] or now < b["_ready_at"]:
        return
    b["_ended"] = True
    items = b["_items"]
    if b["_api"] == "openai":
        out_lines, err_lines = [], []
        for i, (custom_id, status, body) in enumerate(items):
            digest = hashlib.sha256(f"{b['id']}:{i}".encode()).hexdigest()[:24]
            rid = f"batch_req_{digest}"
            if b["_cancelled"] or (b["_expires"] and i >= len(items) // 2):
                code, message = (("batch_cancelled", "This request was not executed: the batch was cancelled.") if b["_cancelled"]
                                 else ("batch_expired", "This request could not be executed before the completion window expired."))
                err_lines.append({"id": rid, "custom_id": custom_id, "response": None, "error": {"code": code, "message": message}})
            elif status == 200:
                out_lines.append({"id": rid, "custom_id": custom_id,
                                  "response": {"status_code": 200, "request_id": rid, "body": body}, "error": None})
            else:
                err_lines.append({"id": rid, "custom_id": custom_id,
                                  "response": {"status_code": status, "request_id": rid, "body": body}, "error": None})
        done = len(out_lines)
        b["request_counts"] = {"total": len(items), "completed": done, "failed": len(items) - done}
        if out_lines:
            b["output_file_id"] = store.add_file(_jsonl(out_lines), "batch_output.jsonl", "batch_output", seed)["id"]
        if err_lines:
            b["error_file_id"] = store.add_file(_jsonl(err_lines), "batch_errors.jsonl", "batch_output", seed)["id"]
        t = int(now_wall(now, b))
        if b["_cancelled"]:
            b["status"], b["cancelled_at"] = "cancelled", t
        elif b["_expires"]:
            b["status"], b["expired_at"] = "expired", t
        else:
            b["status"], b["finalizing_at"], b["completed_at"] = "completed", t, t
    else:
        results = []
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        for i, (custom_id, status, body) in enumerate(items):
            if b["_cancelled"]:
                result = {"type": "canceled"}
            elif b["_expires"] and i >= len(items) // 2:
                result = {"type": "expired"}
            elif status == 200:
                result = {"type": "succeeded", "message": body}
            else:
                result = {"type": "errored", "error": body}
            counts[{"succeeded": "succeeded", "errored": "errored", "canceled": "canceled", "expired": "expired"}[result["type"]]] += 1
            results.append({"custom_id": custom_id, "result": result})
        b["_results"] = _jsonl(results)
        b["request_counts"] = counts
        b["processing_status"] = "ended"
        b["ended_at"] = _iso(now_wall(now, b))
        b["results_url"] = f"{b['_base']}/v1/messages/batches/{b['id']}/results"


def now_wall(now_mono: float, b: dict) -> float:
    return b["_created_wall"] + (now_mono - b["_created_mono"])


def _jsonl(lines: list[dict]) -> bytes:
    return b"".join(json.dumps(line, separators=(",", ":")).encode() + b"\n" for line in lines)


def anthropic_batch_object(b: dict) -> dict:
    return {k: v for k, v in b.items() if not k.startswith("_")}
