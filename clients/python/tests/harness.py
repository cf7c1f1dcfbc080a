"""Real processes for the tests: the fake LLM provider and synthd, started and stopped here.

The synthd binaries come from $SYNTHD_BIN_DIR, else from `swift build --show-bin-path` run in the
repository's root (which only prints the path; it builds nothing).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import List, Optional

REPO = Path(__file__).resolve().parents[3]


def _die_with_us() -> None:
    """In the child before exec: SIGKILL when the test process dies, however it dies (Linux), so
    that a test run killed by a timeout leaves no synthd or fake provider behind."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def bin_dir() -> Path:
    d = os.environ.get("SYNTHD_BIN_DIR")
    if not d:
        d = subprocess.run(["swift", "build", "--show-bin-path"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.strip()
    path = Path(d)
    for exe in ("synthd", "synth"):
        if not (path / exe).is_file():
            raise RuntimeError(f"{path / exe} does not exist: build synthd first or set SYNTHD_BIN_DIR")
    return path


def _first_line(proc: subprocess.Popen, what: str, timeout: float = 30.0) -> str:
    """The first stdout line of a process, which announces where it listens."""
    deadline = time.monotonic() + timeout
    buf = b""
    fd = proc.stdout.fileno()
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            proc.kill()
            raise RuntimeError(f"{what} did not start: {buf!r}")
        r, _, _ = select.select([fd], [], [], left)
        if r:
            chunk = os.read(fd, 4096)
            if not chunk:
                continue
            buf += chunk
    return buf.split(b"\n", 1)[0].decode()


def _stop(proc: subprocess.Popen, sig=signal.SIGTERM, timeout: float = 15.0) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    if proc.stdout:
        proc.stdout.close()


def _openssl(*args: str, cwd: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d: str):
    """Certificates made now with openssl, in `d`: two CAs (ca, other-ca), a server certificate for
    localhost and 127.0.0.1 and a client certificate, both signed by ca. Returns name -> path."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for name in ("ca", "other-ca"):
        _openssl("req", "-x509", *ec, "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
                 "-subj", f"/CN=synthd test {name}", "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n")
    with open(os.path.join(d, "client.ext"), "w") as f:
        f.write("extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n")
    for name, ca, ext in (("server", "ca", "server.ext"), ("client", "ca", "client.ext")):
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
                 "-out", f"{name}.pem", "-days", "2", "-extfile", ext, cwd=d)
    return lambda name: os.path.join(d, name)


class FakeProvider:
    """tools/fake_provider on a free loopback port."""

    def __init__(self, *args: str):
        self.proc = subprocess.Popen([sys.executable, str(REPO / "tools/fake_provider/server.py"), "--port", "0", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True,
                                     preexec_fn=_die_with_us)
        line = _first_line(self.proc, "fake provider")
        self.port = int(line.split()[1])
        # A fake that listens but cannot answer would stall every job: find out now, not in a test.
        import urllib.request
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=10) as r:
                assert r.status == 200
        except Exception as e:
            self.stop()
            raise RuntimeError(f"the fake provider does not answer /health: {e}") from None

    def stop(self) -> None:
        _stop(self.proc, signal.SIGKILL)


class Synthd:
    """A real synthd: its own data directory, a short Unix socket path and a TCP port on loopback,
    the engine talking to the fake provider. It can be stopped, killed and started again on the
    same data directory and addresses."""

    def __init__(self, fake: FakeProvider, server: Optional[dict] = None, grpc: bool = False, metrics: bool = False):
        self.bin = bin_dir()
        self.dir = tempfile.mkdtemp(prefix="sdpy-", dir="/tmp")
        self.data = os.path.join(self.dir, "data")
        self.sock = os.path.join(self.dir, "s.sock")
        self.log_path = os.path.join(self.dir, "synthd.log")
        self.config = os.path.join(self.dir, "config.json")
        url = f"http://127.0.0.1:{fake.port}"
        cfg = {"engine": {
            "providers": {
                "openai": {"kind": "openai", "base_url": url + "/v1", "max_in_flight": 64},
                "anthropic": {"kind": "anthropic", "base_url": url, "max_in_flight": 64},
            },
            "job_concurrency": 64,
        }}
        # Tests make many calls a second from one org: no per-org rate limit unless a test sets one.
        cfg["server"] = {"rate_limit_per_minute": 0, **(server or {})}
        with open(self.config, "w") as f:
            json.dump(cfg, f)
        self.proc: Optional[subprocess.Popen] = None
        self.tcp_port = 0
        # The standard gRPC endpoint (--grpc) too, on a port of its own, when asked for.
        self.grpc = grpc
        self.grpc_port = 0
        # Prometheus metrics (--metrics), when asked for.
        self.metrics = metrics
        self.metrics_port = 0

    # ---- admin -----------------------------------------------------------------------------

    def admin(self, *args: str) -> str:
        r = subprocess.run([str(self.bin / "synthd"), "admin", *args, "--data", self.data],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"synthd admin {' '.join(args)}: {r.stderr.strip()}")
        return r.stdout.strip()

    def create_org(self, name: str) -> str:
        """A new org and its first key."""
        self.admin("create-org", name)
        return self.admin("create-key", "--org", name)

    # ---- process ---------------------------------------------------------------------------

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [str(self.bin / "synthd"), "serve", "--data", self.data, "--unix", self.sock,
             "--tcp", f"127.0.0.1:{self.tcp_port}", "--config", self.config,
             *(["--grpc", f"127.0.0.1:{self.grpc_port}"] if self.grpc else []),
             *(["--metrics", f"127.0.0.1:{self.metrics_port}"] if self.metrics else [])],
            stdout=subprocess.PIPE, stderr=log, start_new_session=True, preexec_fn=_die_with_us)
        log.close()
        line = _first_line(self.proc, "synthd")
        parts = dict(p.split("=", 1) for p in line.split()[1:])
        assert parts.get("unix") == self.sock, line
        self.tcp_port = int(parts["tcp"])
        if self.grpc:
            self.grpc_port = int(parts["grpc"])
        if self.metrics:
            self.metrics_port = int(parts["metrics"])

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc, signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: no chance to close anything cleanly."""
        if self.proc is not None:
            _stop(self.proc, signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self) -> str:
        try:
            return open(self.log_path).read()
        except OSError:
            return ""

    @property
    def unix_address(self) -> str:
        return "unix:" + self.sock

    @property
    def tcp_address(self) -> str:
        return f"127.0.0.1:{self.tcp_port}"


class CuttableProxy:
    """A TCP relay on loopback in front of synthd whose connections the test can cut at will,
    as a network failure would, while synthd itself keeps running."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.conns: List[socket.socket] = []
        self.accepted = 0
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self.stopped:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self.lock:
                self.accepted += 1
                self.conns += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> int:
        """Resets every connection open now; returns how many relays were cut."""
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        return len(conns) // 2

    def close(self) -> None:
        self.stopped = True
        self.listener.close()
        self.cut()
