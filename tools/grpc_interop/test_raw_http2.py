"""What a client that never shows a key can hold on the gRPC endpoint, in raw HTTP/2 frames over
the same mutual TLS (grpcio would never send these): the server must let go of it."""

import socket
import ssl
import struct
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS, HEADERS, GOAWAY, WINDOW_UPDATE = 0x4, 0x1, 0x7, 0x8
END_STREAM, END_HEADERS = 0x1, 0x4


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def connect(server, pki):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pki("ca.pem"))
    ctx.load_cert_chain(pki("client.pem"), pki("client.key"))
    ctx.set_alpn_protocols(["h2"])
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", server.grpc_port), timeout=30), server_hostname="localhost")
    assert s.selected_alpn_protocol() == "h2"
    s.sendall(PREFACE + frame(SETTINGS, 0, 0))
    return s


def frames_until_closed(s, seconds):
    """Every frame the server sends (kind, flags, stream, seconds since the start) until it closes the
    connection; fails if it is still open after `seconds`."""
    s.settimeout(seconds)
    t0, buf, out = time.monotonic(), b"", []
    while True:
        try:
            chunk = s.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            chunk = b""
        if not chunk:
            return out
        assert time.monotonic() - t0 < seconds, "the server kept the connection open"
        buf += chunk
        while len(buf) >= 9:
            n = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + n:
                break
            out.append((buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF, time.monotonic() - t0))
            buf = buf[9 + n:]


def literal(name, value):
    """An HPACK literal header field without indexing, no Huffman coding (names and values < 127 bytes)."""
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def test_a_connection_that_only_says_hello_is_told_to_go_and_closed(server, pki):
    s = connect(server, pki)
    seen = frames_until_closed(s, 30)
    goaway = [t for kind, _, _, t in seen if kind == GOAWAY]
    # unauthenticated_idle_timeout_seconds is 2: GOAWAY at the first or second check, then closed
    # within the 10 s grace time (this client never answers the server's PING).
    assert goaway and 1.5 < goaway[0] < 6, seen
    s.close()


def test_a_request_that_never_comes_ends_the_call(server, pki):
    s = connect(server, pki)
    headers = b"".join(literal(n, v) for n, v in [
        (b":method", b"POST"), (b":scheme", b"https"), (b":path", b"/synthd.v1.Synthd/Health"),
        (b":authority", b"localhost"), (b"content-type", b"application/grpc"), (b"te", b"trailers")])
    # The stream's headers end it: no message will ever come.
    s.sendall(frame(HEADERS, END_HEADERS | END_STREAM, 1, headers))
    s.settimeout(10)
    t0, buf, answered = time.monotonic(), b"", None
    while answered is None:
        buf += s.recv(65536)
        while len(buf) >= 9 and len(buf) >= 9 + int.from_bytes(buf[:3], "big"):
            n = int.from_bytes(buf[:3], "big")
            if buf[3] == HEADERS and int.from_bytes(buf[5:9], "big") == 1 and buf[4] & END_STREAM:
                answered = time.monotonic() - t0
            buf = buf[9 + n:]
    # The call ends (DEADLINE_EXCEEDED, within the unauthenticated idle time of 2 s) instead of
    # holding its stream for ever.
    assert 1.5 < answered < 5, answered
    s.close()


def test_a_connection_without_a_key_may_not_send_more_than_a_request(server, pki):
    s = connect(server, pki)
    # WINDOW_UPDATE +1 frames: valid HTTP/2, each costs the server a little and nothing limits them
    # in HTTP/2 itself. 4 MB of them is above what a connection may send before it authenticates
    # (the largest valid request and 64 KiB).
    burst = frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1)) * 10_000
    sent, closed = 0, False
    try:
        while sent < 4_000_000:
            s.sendall(burst)
            sent += len(burst)
    except (BrokenPipeError, ConnectionResetError, ssl.SSLError, socket.timeout):
        closed = True
    if not closed:
        frames_until_closed(s, 10)
    s.close()
