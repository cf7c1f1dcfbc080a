"""The gRPC endpoint tested with a client we did not write: Python's grpcio, with stubs that
grpcio-tools generates here, at the start of the run, from proto/synthd/v1. Nothing of synthd's own
Python client is imported (its generated modules share the `synthd.v1` package name)."""

import os
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "clients/python/tests"))

from harness import FakeProvider, Synthd, make_pki  # noqa: E402


def _generate_stubs() -> str:
    import grpc_tools
    from grpc_tools import protoc

    out = tempfile.mkdtemp(prefix="synthd-grpcio-")
    protos = sorted(str(p.relative_to(REPO / "proto")) for p in (REPO / "proto/synthd/v1").glob("*.proto"))
    include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    rc = protoc.main(["grpc_tools.protoc", f"-I{REPO / 'proto'}", f"-I{include}", f"--python_out={out}",
                      f"--grpc_python_out={out}", *protos])
    assert rc == 0, f"grpc_tools.protoc failed ({rc})"
    for d in ("synthd", "synthd/v1"):
        Path(out, d, "__init__.py").touch()
    return out


sys.path.insert(0, _generate_stubs())


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return make_pki(str(tmp_path_factory.mktemp("pki")))


@pytest.fixture(scope="session")
def fake():
    f = FakeProvider("--seed", "5")
    yield f
    f.stop()


@pytest.fixture(scope="session")
def server(fake, pki):
    """synthd with its gRPC endpoint on, behind mutual TLS: the server's certificate signed by the
    test CA, and clients must show one signed by it too."""
    s = Synthd(fake, grpc=True, metrics=True, server={
        "tls": {"certificate_chain": pki("server.pem"), "private_key": pki("server.key"), "client_ca": pki("ca.pem")},
        "idle_timeout_seconds": 5,
        # Short, so that the tests of connections that never authenticate are quick.
        "unauthenticated_idle_timeout_seconds": 2,
    })
    s.key = s.create_org("grpcio")
    s.start()
    yield s
    s.cleanup()
