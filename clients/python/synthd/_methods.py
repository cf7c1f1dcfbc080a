"""The protocol's methods: one `Method` per RPC of ``service Synthd`` (proto/synthd/v1/service.proto).

This is the one place the client writes a method's name. Everything else about a method (its request
and response types, and whether it answers once or streams) comes from the generated service
descriptor; only the scope is written here, as in the server's table (Sources/SynthAPI/Methods.swift).
tests/test_methods.py holds this table to the .proto file and to the server's scopes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Dict, Tuple, Type

from google.protobuf import descriptor_pb2, message_factory
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message

from .v1 import service_pb2

SERVICE = service_pb2.DESCRIPTOR.services_by_name["Synthd"]


class Kind(str, enum.Enum):
    """Whether a method answers once or streams."""
    UNARY = "unary"
    SERVER_STREAMING = "server_streaming"


class Scope(str, enum.Enum):
    """What a key must be allowed to do to call a method."""
    OPEN = "open"    # no key needed
    READ = "read"    # reads an org's jobs and their data
    WRITE = "write"  # creates or changes jobs
    ADMIN = "admin"  # manages the org's keys


@dataclass(frozen=True)
class Method:
    """One RPC: its name on the wire (CallOpen.method), its kind, its scope, and its message classes."""
    name: str
    kind: Kind
    scope: Scope
    request_type: Type[Message]
    response_type: Type[Message]
    descriptor: MethodDescriptor

    def __str__(self) -> str:
        return self.name


def _server_streaming(d: MethodDescriptor) -> bool:
    streaming = getattr(d, "server_streaming", None)
    if streaming is None:  # a protobuf without MethodDescriptor.server_streaming
        proto = descriptor_pb2.MethodDescriptorProto()
        d.CopyToProto(proto)
        streaming = proto.server_streaming
    return bool(streaming)


def _method(name: str, scope: Scope) -> Method:
    d = SERVICE.methods_by_name.get(name)
    if d is None:
        raise ImportError(f"synthd: service {SERVICE.full_name} has no method {name} (regenerate synthd/v1)")
    return Method(name, Kind.SERVER_STREAMING if _server_streaming(d) else Kind.UNARY, scope,
                  message_factory.GetMessageClass(d.input_type), message_factory.GetMessageClass(d.output_type), d)


GENERATE = _method("Generate", Scope.WRITE)
PLAN = _method("Plan", Scope.WRITE)
GET_JOB = _method("GetJob", Scope.READ)
LIST_JOBS = _method("ListJobs", Scope.READ)
CANCEL_JOB = _method("CancelJob", Scope.WRITE)
WATCH_JOB = _method("WatchJob", Scope.READ)
FETCH_SPLITS = _method("FetchSplits", Scope.READ)
GET_QUALITY_REPORT = _method("GetQualityReport", Scope.READ)
GET_MANIFEST = _method("GetManifest", Scope.READ)
GET_PRICING = _method("GetPricing", Scope.OPEN)
HEALTH = _method("Health", Scope.OPEN)
CREATE_API_KEY = _method("CreateApiKey", Scope.ADMIN)
LIST_API_KEYS = _method("ListApiKeys", Scope.ADMIN)
REVOKE_API_KEY = _method("RevokeApiKey", Scope.ADMIN)
DELETE_JOB = _method("DeleteJob", Scope.WRITE)
GET_USAGE = _method("GetUsage", Scope.READ)
COMPARE_JOBS = _method("CompareJobs", Scope.READ)

# Every method above, in the service's order.
ALL: Tuple[Method, ...] = tuple(sorted((v for v in dict(globals()).values() if isinstance(v, Method)),
                                       key=lambda m: m.descriptor.index))
BY_NAME: Dict[str, Method] = {m.name: m for m in ALL}
