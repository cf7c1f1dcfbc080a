"""Addresses as `synth --address` takes them: ``unix:PATH``, ``unix://PATH``, a path starting with
``/`` or ``.``, ``HOST:PORT`` (``[IPV6]:PORT``), or ``tls:HOST:PORT`` for TCP with TLS."""

from __future__ import annotations

import os
from typing import NamedTuple, Optional


class Address(NamedTuple):
    """Where synthd listens: ``kind`` is ``"unix"`` (``path`` set), ``"tcp"`` or ``"tls"`` (``host``,
    ``port``)."""

    kind: str
    path: str = ""
    host: str = ""
    port: int = 0

    def __str__(self) -> str:
        if self.kind == "unix":
            return "unix:" + self.path
        tcp = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        return "tls:" + tcp if self.kind == "tls" else tcp


def default_socket_path() -> str:
    """``~/.synthd/synthd.sock``: where ``synthd serve`` listens when told nothing."""
    return os.environ.get("HOME", "/tmp") + "/.synthd/synthd.sock"


def parse_address(text: str) -> Optional[Address]:
    """Parses an address exactly as the Swift CLI does; None when it is not one."""
    for prefix in ("tls://", "tls:"):
        if text.startswith(prefix):
            inner = parse_address(text[len(prefix):])
            return inner._replace(kind="tls") if inner is not None and inner.kind == "tcp" else None
    if text.startswith("unix://"):
        path = text[7:]
    elif text.startswith("unix:"):
        path = text[5:]
    elif text.startswith("/") or text.startswith("."):
        path = text
    else:
        host, colon, port = text.rpartition(":")
        # Swift's Int(String): an optional sign, then ASCII digits.
        digits = port[1:] if port[:1] in ("+", "-") else port
        if not colon or not digits or not digits.isascii() or not digits.isdigit():
            return None
        n = int(port)
        if not 0 <= n <= 65535:
            return None
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not host:
            return None
        return Address("tcp", host=host, port=n)
    if not path:
        return None
    return Address("unix", path=path)


def resolve_address(address: Optional[str]) -> Address:
    """The address argument, else ``$SYNTH_ADDRESS``, else the default socket."""
    if address is None:
        address = os.environ.get("SYNTH_ADDRESS")
    text = address if address is not None else "unix:" + default_socket_path()
    parsed = parse_address(text)
    if parsed is None:
        raise ValueError(f"address must be unix:PATH, HOST:PORT or tls:HOST:PORT, got {text!r}")
    return parsed
