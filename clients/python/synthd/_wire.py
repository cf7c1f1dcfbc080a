"""One connection to synthd: framing (4-byte big-endian length + a serialized ``synthd.v1.Frame``),
calls, and the fast path that reads record streams.

Records dominate every stream, so a record frame is recognised without building protobuf objects:
with the fields in number order (as the protocol's serializers write them) a record frame is

    08 <call id>  1a <len>  12 <len>  08 <seq>  12 <json len>  <json bytes ...to the frame's end>

(Frame.call_id, Frame.message = a WatchJobResponse or FetchSplitsResponse whose field 2 is a
Record{seq, json}). One anchored regex finds where the JSON starts; the frame's length says where it
ends. The JSON length varint is checked against that, and anything else (progress events, split
headers, statuses, or a record laid out differently) goes through the protobuf parser.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import struct
from typing import Any, Callable, Iterator, Optional

from google.protobuf.message import DecodeError

from ._address import Address
from .errors import Cancelled, ConnectionLost, ProtocolError, StatusCode, Unavailable, from_status
from .v1 import frame_pb2

DEFAULT_MAX_FRAME_SIZE = 16 * 1024 * 1024
RECV_SIZE = 1 << 18

_LEN = struct.Struct(">I")
_Frame = frame_pb2.Frame
_V = rb"[\x80-\xff]{0,9}[\x00-\x7f]"  # one varint
_RECORD_FRAME = re.compile(rb"\x08" + _V + rb"\x1a" + _V + rb"\x12" + _V + rb"\x08(" + _V + rb")\x12(" + _V + rb")", re.S)
_DECODER = json.JSONDecoder()
_scan_once = _DECODER.scan_once

# What a stream yields for each record.
DICT, RAW, RECORD, SEQ_DICT, SEQ_RAW = range(5)


def _varint(buf, i: int, j: int) -> int:
    v = 0
    shift = 0
    while i < j:
        v |= (buf[i] & 0x7F) << shift
        shift += 7
        i += 1
    return v


class Connection:
    """A blocking connection. Calls on it are sequential: open one, read it to its status."""

    def __init__(self, address: Address, *, connect_timeout: float = 10.0,
                 max_frame_size: int = DEFAULT_MAX_FRAME_SIZE, ssl_context: Optional[ssl.SSLContext] = None):
        self.address = address
        self.max_frame_size = max_frame_size
        self._buf = b""
        self._pos = 0
        self._next_call_id = 0
        self.sock_timeout: Optional[float] = None
        try:
            if address.kind == "unix":
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.settimeout(connect_timeout)
                    sock.connect(address.path)
                except BaseException:
                    sock.close()
                    raise
            else:
                sock = socket.create_connection((address.host, address.port), timeout=connect_timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                if address.kind == "tls":
                    # The handshake happens here: a server certificate that does not verify (CA, host
                    # name or IP address) fails before any key is sent.
                    try:
                        sock = (ssl_context or ssl.create_default_context()).wrap_socket(sock, server_hostname=address.host)
                    except BaseException:
                        sock.close()
                        raise
        except ssl.SSLError as e:
            raise ConnectionLost.because(f"the TLS handshake with synthd at {address} failed: {e}") from None
        except OSError as e:
            raise ConnectionLost.because(f"cannot connect to synthd at {address}: {e.strerror or e}") from None
        sock.settimeout(None)
        self.sock: Optional[socket.socket] = sock

    # ---- lifecycle -------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.sock is None

    def close(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def looks_closed(self) -> bool:
        """True when the server has already closed this idle connection (EOF is waiting)."""
        if self.sock is None:
            return True
        if self._pos < len(self._buf):
            return False
        try:
            self.sock.setblocking(False)
            try:
                if isinstance(self.sock, ssl.SSLSocket):
                    # TLS cannot peek: a byte read here is kept in the buffer for the next frame.
                    data = self.sock.recv(1)
                    self._buf = self._buf[self._pos:] + data
                    self._pos = 0
                else:
                    data = self.sock.recv(1, socket.MSG_PEEK)
            finally:
                self.sock.setblocking(True)
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
            return False
        except OSError:
            return True
        return data == b""

    # ---- writing ---------------------------------------------------------------------------

    def new_call_id(self) -> int:
        self._next_call_id += 1
        return self._next_call_id

    def send_frame(self, frame) -> None:
        body = frame.SerializeToString(deterministic=True)
        self._send(_LEN.pack(len(body)) + body)

    def _send(self, data: bytes) -> None:
        if self.sock is None:
            raise ConnectionLost.because("the connection to synthd is closed")
        try:
            self.sock.sendall(data)
        except OSError as e:
            self.close()
            raise ConnectionLost.because(f"the connection to synthd failed: {e.strerror or e}") from None

    def open_call(self, method: str, api_key: str, timeout_ms: int, request) -> int:
        """Sends ``open`` for a new call and returns its id."""
        call_id = self.new_call_id()
        self.send_frame(open_frame(call_id, method, api_key, timeout_ms, request.SerializeToString(deterministic=True)))
        return call_id

    def cancel(self, call_id: int) -> None:
        f = _Frame(call_id=call_id)
        f.cancel.SetInParent()
        self.send_frame(f)

    # ---- reading ---------------------------------------------------------------------------

    def _fill(self) -> None:
        if self.sock is None:
            raise ConnectionLost.because("the connection to synthd is closed")
        try:
            chunk = self.sock.recv(RECV_SIZE)
        except socket.timeout:
            raise
        except OSError as e:
            self.close()
            raise ConnectionLost.because(f"the connection to synthd failed: {e.strerror or e}") from None
        if not chunk:
            self.close()
            raise ConnectionLost.because("synthd closed the connection")
        self._buf = self._buf[self._pos:] + chunk if self._pos < len(self._buf) else chunk
        self._pos = 0

    def read_frame(self):
        """The next frame, parsed. Raises ConnectionLost at the end of the stream."""
        while True:
            buf, pos = self._buf, self._pos
            if pos + 4 <= len(buf):
                n = _LEN.unpack_from(buf, pos)[0]
                self._check_length(n)
                end = pos + 4 + n
                if end <= len(buf):
                    self._pos = end
                    return parse_frame(buf[pos + 4:end])
            self._fill()

    def _check_length(self, n: int) -> None:
        if n == 0:
            self.close()
            raise ProtocolError.because("synthd sent an empty frame")
        if n > self.max_frame_size:
            self.close()
            raise ProtocolError.because(f"synthd sent a frame of {n} bytes, above the maximum of {self.max_frame_size}")

    def unary(self, call_id: int, response_type):
        """Reads call ``call_id`` to its status and returns its one response message."""
        result = None
        while True:
            frame = self.read_frame()
            kind = frame.WhichOneof("kind")
            if frame.call_id == 0 and kind == "status":
                self.close()
                raise from_status(frame.status)
            if frame.call_id != call_id:
                continue
            if kind == "message":
                try:
                    result = response_type.FromString(frame.message)
                except DecodeError:
                    raise ProtocolError.because(f"synthd sent a response that is not a {response_type.DESCRIPTOR.name}") from None
            elif kind == "status":
                if frame.status.code != StatusCode.OK:
                    raise from_status(frame.status)
                if result is None:
                    raise ProtocolError.because("the call ended OK without a response")
                return result
            else:
                raise ProtocolError.because(f"synthd sent a frame of kind {kind} on call {call_id}")

    def stream(self, call_id: int, response_type, mode: int, on_item: Callable[[Any], Any],
               skip_through_seq: Optional[int] = None) -> Iterator[Any]:
        """Reads server-stream call ``call_id`` to its status.

        Yields each record according to ``mode`` (DICT: the decoded JSON; RAW: the JSON bytes;
        RECORD: a `Record`; SEQ_DICT / SEQ_RAW: ``(seq, value)``). Every other response item is
        passed to ``on_item``, and whatever it returns other than None is yielded as it is.
        Records up to and including seq ``skip_through_seq`` are dropped (a resumed split).

        If the connection fails, the `ConnectionLost` raised carries ``last_seq``: the seq of the
        last record yielded, or None if none was.
        """
        from .models import Record

        match = _RECORD_FRAME.match
        unpack = _LEN.unpack_from
        scan = _scan_once
        maxf = self.max_frame_size
        recv_into = self.sock.recv_into if self.sock is not None else None
        rbuf = bytearray(RECV_SIZE)
        rview = memoryview(rbuf)
        buf = self._buf
        pos = self._pos
        last_buf = None
        last_pos = 0
        skip = skip_through_seq
        fast = skip is None
        try:
            while True:
                end = len(buf)
                while pos + 4 <= end:
                    fe = pos + 4 + unpack(buf, pos)[0]
                    if fe > end:
                        break
                    m = match(buf, pos + 4, fe)
                    if m is not None and fast:
                        s = m.end()
                        # The JSON length varint must say the JSON runs to the frame's end.
                        a = m.start(2)
                        if s - a == 2:
                            jl = (buf[a] & 0x7F) | (buf[a + 1] << 7)
                        elif s - a == 1:
                            jl = buf[a]
                        else:
                            jl = _varint(buf, a, s)
                        if jl == fe - s:
                            if mode == DICT:
                                txt = buf[s:fe].decode()
                                obj, e = scan(txt, 0)
                                if e != len(txt):
                                    obj = _loads_strict(txt)
                                last_buf = buf
                                last_pos = pos
                                pos = fe
                                yield obj
                                continue
                            if mode == RAW:
                                last_buf = buf
                                last_pos = pos
                                pos = fe
                                yield buf[s:fe]
                                continue
                            a, b = m.span(1)
                            if b - a == 1:
                                seq = buf[a]
                            elif b - a == 2:
                                seq = (buf[a] & 0x7F) | (buf[a + 1] << 7)
                            elif b - a == 3:
                                seq = (buf[a] & 0x7F) | ((buf[a + 1] & 0x7F) << 7) | (buf[a + 2] << 14)
                            else:
                                seq = _varint(buf, a, b)
                            raw = buf[s:fe]
                            last_buf = buf
                            last_pos = pos
                            pos = fe
                            if mode == RECORD:
                                yield Record(seq, raw)
                            elif mode == SEQ_RAW:
                                yield (seq, raw)
                            else:
                                yield (seq, _loads_strict(raw.decode()))
                            continue
                    # Everything else: parse it properly.
                    n = fe - pos - 4
                    if n == 0 or n > maxf:
                        self._check_length(n)
                    frame = parse_frame(buf[pos + 4:fe])
                    frame_pos = pos
                    pos = fe
                    kind = frame.WhichOneof("kind")
                    if frame.call_id == 0 and kind == "status":
                        self.close()
                        raise from_status(frame.status)
                    if frame.call_id != call_id:
                        continue
                    if kind == "status":
                        if frame.status.code != StatusCode.OK:
                            raise from_status(frame.status)
                        return
                    if kind != "message":
                        raise ProtocolError.because(f"synthd sent a frame of kind {kind} on call {call_id}")
                    try:
                        item = response_type.FromString(frame.message)
                    except DecodeError:
                        raise ProtocolError.because(f"synthd sent a stream item that is not a {response_type.DESCRIPTOR.name}") from None
                    which = item.WhichOneof(item.DESCRIPTOR.oneofs[0].name)
                    if which == "record":
                        seq = item.record.seq
                        if skip is not None:
                            if seq == skip:
                                skip = None
                                fast = True
                            continue
                        raw = item.record.json
                        last_buf = buf
                        last_pos = frame_pos
                        if mode == DICT:
                            yield _loads_strict(raw.decode())
                        elif mode == RAW:
                            yield raw
                        elif mode == RECORD:
                            yield Record(seq, raw)
                        elif mode == SEQ_RAW:
                            yield (seq, raw)
                        else:
                            yield (seq, _loads_strict(raw.decode()))
                    else:
                        out = on_item(item)
                        if out is not None:
                            yield out
                if pos + 4 <= end:
                    self._check_length(unpack(buf, pos)[0])
                if recv_into is None:
                    raise ConnectionLost.because("the connection to synthd is closed")
                try:
                    # Into one reused buffer: a fresh RECV_SIZE allocation per read costs more than
                    # the read itself when synthd's frames arrive a few at a time.
                    got = recv_into(rbuf)
                except OSError as e:
                    raise ConnectionLost.because(f"the connection to synthd failed: {e.strerror or e}") from None
                if not got:
                    raise ConnectionLost.because("synthd closed the connection before the call ended")
                buf = buf[pos:] + rview[:got] if pos < end else bytes(rview[:got])
                pos = 0
        except (ConnectionLost, Cancelled, Unavailable) as e:
            # A dropped connection, or a server that ended the call as it stopped: either way the
            # error says which record came last, so that a resumed stream starts after it.
            if isinstance(e, ConnectionLost):
                self.close()
            e.last_seq = _frame_seq(last_buf, last_pos, response_type) if last_buf is not None else None
            raise
        except (UnicodeDecodeError, StopIteration, ValueError) as e:
            self.close()
            raise ProtocolError.because(f"synthd sent a record that is not valid JSON: {e}") from None
        finally:
            self._buf = buf
            self._pos = pos


def _loads_strict(txt: str):
    return _DECODER.decode(txt)


def _frame_seq(buf: bytes, pos: int, response_type) -> int:
    n = _LEN.unpack_from(buf, pos)[0]
    frame = _Frame.FromString(buf[pos + 4:pos + 4 + n])
    return response_type.FromString(frame.message).record.seq


def parse_frame(body: bytes):
    try:
        frame = _Frame.FromString(body)
    except DecodeError:
        raise ProtocolError.because("synthd sent a frame that is not a valid Frame message") from None
    if frame.WhichOneof("kind") is None:
        raise ProtocolError.because("synthd sent a frame with no kind")
    return frame


def open_frame(call_id: int, method: str, api_key: str, timeout_ms: int, request: bytes):
    """The frame that opens a call."""
    f = _Frame(call_id=call_id)
    f.open.method = method
    f.open.api_key = api_key
    f.open.timeout_ms = timeout_ms
    f.open.request = request
    return f


def encode_frame(frame) -> bytes:
    """A frame with its length prefix, as it goes on the wire."""
    body = frame.SerializeToString(deterministic=True)
    return _LEN.pack(len(body)) + body
