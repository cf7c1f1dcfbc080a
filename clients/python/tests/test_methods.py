"""The client's method table (synthd/_methods.py) against the protocol: proto/synthd/v1/service.proto
for the methods, their types and kinds, and the server's table (Sources/SynthAPI/Methods.swift) for
the scopes. No server needed."""

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

import synthd
from synthd import _methods as M
from synthd.v1 import service_pb2 as pb
from harness import REPO

SERVICE_PROTO = REPO / "proto" / "synthd" / "v1" / "service.proto"
SWIFT_METHODS = REPO / "Sources" / "SynthAPI" / "Methods.swift"
PACKAGE = Path(synthd.__file__).resolve().parent
TESTS = Path(__file__).resolve().parent


def proto_rpcs():
    """``service Synthd`` as the .proto file writes it: name -> (request, response, streams)."""
    text = re.sub(r"//[^\n]*", "", SERVICE_PROTO.read_text())
    body = re.search(r"\bservice\s+Synthd\s*\{(.*?)\n\}", text, re.S)
    assert body, f"no service Synthd in {SERVICE_PROTO}"
    rpcs = {}
    for m in re.finditer(r"\brpc\s+(\w+)\s*\(\s*(stream\s+)?([\w.]+)\s*\)\s*returns\s*\(\s*(stream\s+)?([\w.]+)\s*\)",
                         body.group(1)):
        name, client_stream, request, server_stream, response = m.groups()
        assert not client_stream, f"{name}: the framed protocol has no client streams"
        assert name not in rpcs, f"{name} twice in service Synthd"
        rpcs[name] = (request, response, bool(server_stream))
    assert len(rpcs) == len(re.findall(r"\brpc\b", body.group(1))), "an rpc line that the pattern above does not read"
    return rpcs


def swift_methods():
    """Sources/SynthAPI/Methods.swift's table: name -> (kind, scope)."""
    text = SWIFT_METHODS.read_text()
    found = re.findall(r'Method<\w+,\s*\w+>\(\s*"(\w+)"\s*,\s*\.(\w+)\s*,\s*\.(\w+)\s*\)', text)
    assert found, f"no Method(...) declarations in {SWIFT_METHODS}"
    return {name: (kind, scope) for name, kind, scope in found}


def test_every_rpc_of_the_proto_is_in_the_table_and_nothing_else():
    rpcs = proto_rpcs()
    assert [m.name for m in M.ALL] == list(rpcs), "the table's methods, in order, are service Synthd's"
    assert set(M.BY_NAME) == set(rpcs)
    assert len(M.ALL) == len(M.SERVICE.methods)


@pytest.mark.parametrize("method", M.ALL, ids=str)
def test_each_method_has_the_types_and_kind_of_its_rpc(method):
    request, response, streams = proto_rpcs()[method.name]
    assert method.request_type.DESCRIPTOR.full_name == f"synthd.v1.{request}"
    assert method.response_type.DESCRIPTOR.full_name == f"synthd.v1.{response}"
    # The classes are the generated module's own, so responses parse as the rest of the client expects.
    assert method.request_type is getattr(pb, request) and method.response_type is getattr(pb, response)
    assert method.kind is (M.Kind.SERVER_STREAMING if streams else M.Kind.UNARY)
    assert method.descriptor is M.SERVICE.methods_by_name[method.name]


def test_every_method_has_the_scope_the_server_gives_it():
    swift = swift_methods()
    assert set(swift) == set(M.BY_NAME), "Methods.swift and synthd/_methods.py list different methods"
    kinds = {"unary": M.Kind.UNARY, "serverStreaming": M.Kind.SERVER_STREAMING}
    for m in M.ALL:
        assert isinstance(m.scope, M.Scope), m.name
        kind, scope = swift[m.name]
        assert kinds[kind] is m.kind, f"{m.name}: {kind} in Methods.swift, {m.kind.value} here"
        assert M.Scope(scope) is m.scope, f"{m.name}: scope {scope} in Methods.swift, {m.scope.value} here"


def test_no_method_name_is_written_outside_the_table():
    """Call sites name a method through synthd._methods, never by a string of their own."""
    names = set(M.BY_NAME)
    table = Path(M.__file__).resolve()
    generated = PACKAGE / "v1"
    files = [p for p in sorted(PACKAGE.rglob("*.py")) + sorted(TESTS.rglob("*.py"))
             if p.resolve() != table and generated not in p.parents]
    assert len(files) > 5
    found = []
    for path in files:
        for tok in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
            if tok.type != tokenize.STRING:
                continue
            try:
                value = ast.literal_eval(tok.string)
            except ValueError:  # an f-string (a STRING token before Python 3.12)
                continue
            if isinstance(value, bytes):
                value = value.decode("latin-1")
            if value in names:
                found.append(f"{path.relative_to(PACKAGE.parent)}:{tok.start[0]}: {tok.string}")
    assert not found, "method names written outside synthd/_methods.py:\n" + "\n".join(found)


def test_a_call_with_the_wrong_request_or_kind_is_refused_before_anything_is_sent():
    c = synthd.Client("unix:/nonexistent/synthd-test.sock", "sk_live_x")
    with pytest.raises(TypeError):
        c._unary(M.GET_JOB, pb.CancelJobRequest(job_id="x"))
    with pytest.raises(TypeError):
        c._unary(M.WATCH_JOB, pb.WatchJobRequest(job_id="x"))
    assert c._conn is None
