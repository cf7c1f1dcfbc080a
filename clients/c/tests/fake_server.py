#!/usr/bin/env python3
"""A deliberately broken synthd for the C client's defences: it answers the first call of each
connection with the scenario named by that call's API key (malformed, oversized, truncated frames,
wrong message types, statuses mid-stream, ...). Later calls on the connection get sane answers:
Health is answered OK, a cancel ends its call with CANCELLED. It is not a model of synthd: the tests
of the real protocol run against the real server.

Frames are encoded by hand, so that they can be broken on purpose.

Usage: fake_server.py SOCKET_PATH       (prints "LISTENING SOCKET_PATH" once it accepts connections)
"""
import os
import socket
import socketserver
import struct
import sys
import threading
import time

# ---- Protobuf by hand ------------------------------------------------------------------------------


def varint(n):
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def f_varint(num, v):
    return varint(num << 3) + varint(v)


def f_bytes(num, b):
    if isinstance(b, str):
        b = b.encode()
    return varint(num << 3 | 2) + varint(len(b)) + b


def frame_bytes(body):
    return struct.pack(">I", len(body)) + body


def frame(call_id, kind, body):
    return frame_bytes((f_varint(1, call_id) if call_id else b"") + f_bytes(kind, body))


MESSAGE, STATUS = 3, 4
OK, CANCELLED, INVALID_ARGUMENT, NOT_FOUND, RESOURCE_EXHAUSTED, INTERNAL = 0, 1, 3, 5, 8, 13


def status(code, message="", error_code="", field_errors=()):
    b = (f_varint(1, code) if code else b"") + (f_bytes(2, message) if message else b"")
    b += f_bytes(3, error_code) if error_code else b""
    for field, rule, value in field_errors:
        b += f_bytes(4, f_bytes(1, field) + f_bytes(2, rule) + f_bytes(3, value))
    return b


def job(job_id="syn_job_probe", st="running", last_seq=0):
    return f_bytes(1, job_id) + f_bytes(2, st) + (f_varint(10, last_seq) if last_seq else b"")


def get_job_response(st="succeeded"):
    return f_bytes(1, job(st=st))


def record(seq, json):
    return f_varint(1, seq) + f_bytes(2, json)


def rec_json(seq):
    return b'{"seq":%d,"instruction":"probe record %d","output":"\\u00e9t\\u00e9 \xc3\xa9"}' % (seq, seq)


def w_record(seq, json=None):  # WatchJobResponse{record} and FetchSplitsResponse{record}
    return f_bytes(2, record(seq, rec_json(seq) if json is None else json))


def w_batch(seqs, first=None, last=None, count=None, jsonl=None, sequenced=True):
    """WatchJobResponse{batch} / FetchSplitsResponse{batch} holding the records `seqs` as JSONL."""
    body = b"".join(rec_json(i) + b"\n" for i in seqs) if jsonl is None else jsonl
    first = (seqs[0] if sequenced else 0) if first is None else first
    last = (seqs[-1] if sequenced else 0) if last is None else last
    count = len(seqs) if count is None else count
    return f_bytes(3, (f_varint(1, first) if first else b"") + (f_varint(2, last) if last else b"")
                   + (f_varint(3, count) if count else b"") + f_bytes(4, body))


def w_progress(st="running", last_seq=0):
    return f_bytes(1, job(st=st, last_seq=last_seq))


def s_split(name, count):
    return f_bytes(1, f_bytes(1, name) + f_varint(2, count))


def health_response():
    return f_bytes(1, "ok") + f_bytes(2, "fake")


# ---- Scenarios -------------------------------------------------------------------------------------
# Each takes the call id and returns (bytes to send, what to do after: "serve", "close" or "hang").

def msg(cid, body):
    return frame(cid, MESSAGE, body)


def ok(cid):
    return frame(cid, STATUS, b"")


def watch_head(cid):
    return msg(cid, w_progress()) + b"".join(msg(cid, w_record(i)) for i in (1, 2, 3))


SCENARIOS = {
    # Sanity: a correct answer, so that the probe and this server are known to agree.
    "unary_ok": lambda c: (msg(c, get_job_response()) + ok(c), "serve"),
    "unary_status_error": lambda c: (frame(c, STATUS, status(NOT_FOUND, "job syn_job_probe not found", "",
                                                              [("job_id", "must exist", "syn_job_probe")])), "serve"),
    # Framing.
    "unary_oversized": lambda c: (b"\x7f\xff\xff\xff", "hang"),
    "unary_oversized_by_one": lambda c: (struct.pack(">I", 16 * 1024 * 1024 + 1), "hang"),
    "maxframe_limit": lambda c: (msg(c, f_bytes(1, f_bytes(1, "x" * 2000))) + ok(c), "serve"),
    "maxframe_fits": lambda c: (msg(c, f_bytes(1, f_bytes(1, "x" * 900))) + ok(c), "serve"),
    "unary_empty_frame": lambda c: (b"\x00\x00\x00\x00", "hang"),
    "unary_truncated_body": lambda c: (struct.pack(">I", 100) + b"\x08\x01\x1a\x20" + b"x" * 6, "close"),
    "unary_truncated_header": lambda c: (b"\x00\x00", "close"),
    "unary_closed": lambda c: (b"", "close"),
    "unary_garbage": lambda c: (frame_bytes(b"\xff" * 16), "hang"),
    "unary_bad_wiretype": lambda c: (frame_bytes(f_bytes(1, b"\x01") + f_bytes(3, b"")), "hang"),
    "unary_huge_varint": lambda c: (frame_bytes(b"\x08" + b"\xff" * 10 + b"\x01" + f_bytes(4, b"")), "hang"),
    "unary_length_overrun": lambda c: (frame_bytes(f_varint(1, c) + b"\x1a\x7f" + b"abc"), "hang"),
    "unary_no_kind": lambda c: (frame_bytes(f_varint(1, c)), "hang"),
    "unary_bad_status": lambda c: (frame(c, STATUS, b"\x0a\xff\xff"), "hang"),
    # Frames that do not fit the call.
    "unary_open_frame": lambda c: (frame(c, 2, f_bytes(1, "GetJob")), "hang"),
    "unary_cancel_frame": lambda c: (frame(c, 5, b""), "hang"),
    "unary_unknown_call": lambda c: (msg(c + 100, get_job_response()) + ok(c), "hang"),
    "unary_wrong_type": lambda c: (msg(c, health_response()) + ok(c), "hang"),
    "unary_garbage_message": lambda c: (msg(c, b"\xff\xff\xff") + ok(c), "hang"),
    "unary_two_messages": lambda c: (msg(c, get_job_response()) * 2 + ok(c), "hang"),
    "unary_no_message": lambda c: (ok(c), "hang"),
    # Call 0: the connection's end.
    "unary_call0": lambda c: (frame(0, STATUS, status(RESOURCE_EXHAUSTED, "frame too large", "FRAME_TOO_LARGE")), "close"),
    "unary_call0_ok": lambda c: (frame(0, STATUS, b""), "hang"),
    "unary_call0_message": lambda c: (frame(0, MESSAGE, b""), "hang"),
    # Timing.
    "hang_forever": lambda c: (b"", "hang"),
    "unary_drip": lambda c: (msg(c, get_job_response()) + ok(c), "drip"),
    # Streams.
    "watch_ok": lambda c: (watch_head(c) + msg(c, w_record(4)) + msg(c, w_record(5))
                           + msg(c, w_progress("succeeded", 5)) + ok(c), "serve"),
    "watch_status_midstream": lambda c: (watch_head(c) + frame(c, STATUS, status(INTERNAL, "boom")), "serve"),
    "watch_call0_midstream": lambda c: (watch_head(c) + frame(0, STATUS, status(INVALID_ARGUMENT, "bad", "MALFORMED_FRAME")), "close"),
    "watch_closed_midstream": lambda c: (watch_head(c), "close"),
    "watch_truncated_midstream": lambda c: (watch_head(c) + msg(c, w_record(4))[:20], "close"),
    "watch_out_of_order": lambda c: (watch_head(c) + msg(c, w_record(3)) + ok(c), "hang"),
    "watch_seq_zero": lambda c: (msg(c, w_progress()) + msg(c, w_record(0)) + ok(c), "hang"),
    "watch_bad_record": lambda c: (msg(c, w_progress()) + msg(c, f_bytes(2, f_bytes(1, b"1"))) + ok(c), "hang"),
    "watch_bad_event": lambda c: (msg(c, w_progress()) + msg(c, f_varint(2, 7)) + ok(c), "hang"),
    "watch_bad_progress": lambda c: (msg(c, f_bytes(1, b"\xff\xff")) + ok(c), "hang"),
    "watch_no_progress": lambda c: (msg(c, w_record(1)) + ok(c), "hang"),
    "watch_empty_ok": lambda c: (ok(c), "hang"),
    "watch_immediate_error": lambda c: (frame(c, STATUS, status(NOT_FOUND, "job syn_job_probe not found")), "serve"),
    "watch_unknown_event": lambda c: (msg(c, w_progress()) + msg(c, f_bytes(9, b"future")) + msg(c, b"")
                                      + msg(c, w_record(1)) + ok(c), "serve"),
    "watch_big_record": lambda c: (msg(c, w_progress()) + msg(c, w_record(1, b'{"big":"' + b"a" * (5 << 20) + b'"}'))
                                   + msg(c, w_record(2)) + msg(c, w_progress("succeeded", 2)) + ok(c), "serve"),
    # Sent in two parts with a pause between: the client's buffer empties after the big frame.
    "watch_big_then_small": lambda c: ([msg(c, w_progress()) + msg(c, w_record(1, b'{"big":"' + b"b" * (3 << 20) + b'"}')),
                                        msg(c, w_record(2)) + msg(c, w_progress("succeeded", 2)) + ok(c)], "serve"),
    "watch_many": lambda c: (msg(c, w_progress()) + b"".join(msg(c, w_record(i)) for i in range(1, 20001))
                             + msg(c, w_progress("succeeded", 20000)) + ok(c), "serve"),
    "splits_ok": lambda c: (msg(c, s_split("a", 2)) + msg(c, w_record(5)) + msg(c, w_record(2))
                            + msg(c, s_split("b", 1)) + msg(c, w_record(9)) + ok(c), "serve"),
    "splits_short": lambda c: (msg(c, s_split("a", 3)) + msg(c, w_record(1)) + msg(c, w_record(2)) + ok(c), "hang"),
    "splits_extra": lambda c: (msg(c, s_split("a", 1)) + msg(c, w_record(1)) + msg(c, w_record(2)) + ok(c), "hang"),
    "splits_early_next": lambda c: (msg(c, s_split("a", 2)) + msg(c, w_record(1)) + msg(c, s_split("b", 1)), "hang"),
    "splits_record_first": lambda c: (msg(c, w_record(1)) + ok(c), "hang"),
    "splits_negative": lambda c: (msg(c, f_bytes(1, f_bytes(1, "a") + f_varint(2, (1 << 64) - 1))) + ok(c), "hang"),
    # Batched streams (the probe asks for batches when the name starts with "b").
    "bwatch_ok": lambda c: (msg(c, w_progress()) + msg(c, w_batch([1, 2, 3])) + msg(c, w_batch([4, 5]))
                            + msg(c, w_progress("succeeded", 5)) + ok(c), "serve"),
    "bwatch_records": lambda c: (watch_head(c) + msg(c, w_batch([4, 5])) + msg(c, w_progress("succeeded", 5)) + ok(c), "serve"),
    "bwatch_overlap": lambda c: (msg(c, w_progress()) + msg(c, w_batch([1, 2, 3])) + msg(c, w_batch([3, 4])) + ok(c), "hang"),
    "bwatch_count_zero": lambda c: (msg(c, w_progress()) + msg(c, w_batch([1], count=0)) + ok(c), "hang"),
    "bwatch_count_above_span": lambda c: (msg(c, w_progress()) + msg(c, w_batch([1, 2], count=9, jsonl=b"{}\n" * 9)) + ok(c), "hang"),
    "bwatch_cut_line": lambda c: (msg(c, w_progress()) + msg(c, w_batch([1, 2], jsonl=rec_json(1) + b"\n" + rec_json(2))) + ok(c), "hang"),
    "bwatch_bad_batch": lambda c: (msg(c, w_progress()) + msg(c, f_bytes(3, f_bytes(1, b"x"))) + ok(c), "hang"),
    "watch_unasked_batch": lambda c: (msg(c, w_progress()) + msg(c, w_batch([1, 2])) + ok(c), "hang"),
    "bsplits_ok": lambda c: (msg(c, s_split("a", 2)) + msg(c, w_batch([5, 2], sequenced=False))
                             + msg(c, s_split("b", 1)) + msg(c, w_batch([9], sequenced=False)) + ok(c), "serve"),
    "bsplits_extra": lambda c: (msg(c, s_split("a", 1)) + msg(c, w_batch([1, 2], sequenced=False)) + ok(c), "hang"),
    # The client abandons the stream after one item: what still comes for it must be skipped.
    "abandon_watch": lambda c: (watch_head(c), "serve"),
}


class Handler(socketserver.BaseRequestHandler):
    def read_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.request.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    def read_frame(self):
        head = self.read_exact(4)
        if head is None:
            return None
        body = self.read_exact(struct.unpack(">I", head)[0])
        if body is None:
            return None
        fields, i = {}, 0
        while i < len(body):
            key, i = read_varint(body, i)
            num, wt = key >> 3, key & 7
            if wt == 0:
                fields[num], i = read_varint(body, i)
            else:
                n, i = read_varint(body, i)
                fields[num] = body[i:i + n]
                i += n
        open_fields = {}
        if 2 in fields:
            b, j = fields[2], 0
            while j < len(b):
                key, j = read_varint(b, j)
                num, wt = key >> 3, key & 7
                if wt == 0:
                    open_fields[num], j = read_varint(b, j)
                else:
                    n, j = read_varint(b, j)
                    open_fields[num] = b[j:j + n]
                    j += n
        return fields.get(1, 0), ("open" if 2 in fields else "cancel" if 5 in fields else "other"), open_fields

    def handle(self):
        first = True
        streams = set()
        while True:
            f = self.read_frame()
            if f is None:
                return
            cid, kind, op = f
            if kind == "cancel":
                if cid in streams:
                    # Records already under way, then the status, as synthd does.
                    self.request.sendall(msg(cid, w_record(4)) + msg(cid, w_record(5))
                                         + frame(cid, STATUS, status(CANCELLED, "call cancelled by the client")))
                    streams.discard(cid)
                continue
            method = op.get(1, b"").decode()
            if not first:
                if method == "Health":
                    self.request.sendall(msg(cid, health_response()) + ok(cid))
                else:
                    self.request.sendall(frame(cid, STATUS, status(NOT_FOUND, "only Health after the scenario")))
                continue
            first = False
            name = op.get(2, b"").decode()
            if name not in SCENARIOS:
                self.request.sendall(frame(cid, STATUS, status(INVALID_ARGUMENT, "unknown scenario " + name)))
                continue
            data, then = SCENARIOS[name](cid)
            if name.startswith("abandon_"):
                streams.add(cid)
            if isinstance(data, list):
                for k, part in enumerate(data):
                    if k:
                        time.sleep(0.2)
                    self.request.sendall(part)
                continue
            if then == "drip":
                for k in range(len(data)):
                    self.request.sendall(data[k:k + 1])
                    time.sleep(0.001)
                continue
            try:
                self.request.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                return
            if then == "close":
                self.request.shutdown(socket.SHUT_RDWR)
                return
            if then == "hang":
                # Read (and drop) until the client goes away.
                while self.request.recv(65536):
                    pass
                return


def read_varint(b, i):
    shift = v = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return v, i


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def main():
    path = sys.argv[1]
    if os.path.exists(path):
        os.unlink(path)
    server = Server(path, Handler)
    print("LISTENING " + path, flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        sys.stdin.read()  # runs until its stdin closes
    finally:
        server.shutdown()
        os.unlink(path)


if __name__ == "__main__":
    main()
