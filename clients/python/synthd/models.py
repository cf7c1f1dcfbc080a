"""What calls return: `Job`, `Record`, `SplitInfo`, and plain dicts converted from messages."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any, Dict, NamedTuple

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor

FINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})

_WRAPPERS = frozenset({
    "google.protobuf.DoubleValue", "google.protobuf.FloatValue", "google.protobuf.Int64Value",
    "google.protobuf.UInt64Value", "google.protobuf.Int32Value", "google.protobuf.UInt32Value",
    "google.protobuf.BoolValue", "google.protobuf.StringValue", "google.protobuf.BytesValue",
})
_JSON_VALUES = frozenset({"google.protobuf.Value", "google.protobuf.Struct", "google.protobuf.ListValue"})


def _value(fd: FieldDescriptor, v: Any, presence: bool) -> Any:
    if fd.type != FieldDescriptor.TYPE_MESSAGE:
        return v
    name = fd.message_type.full_name
    if name in _WRAPPERS:
        return v.value
    if name in _JSON_VALUES:
        return json_format.MessageToDict(v)
    return to_dict(v, presence=presence)


def to_dict(msg, *, presence: bool = False) -> Dict[str, Any]:
    """A message as a dict of plain Python values, keyed by the proto field names.

    Unlike ``json_format.MessageToDict``, 64-bit integers stay ints and wrapper types become their
    value (None when absent). With ``presence=False`` every field is present, with its default when
    unset; with ``presence=True`` only the fields that were set are, as in a JSON request body.
    """
    out: Dict[str, Any] = {}
    if presence:
        items = [(fd, v) for fd, v in msg.ListFields()]
    else:
        items = []
        for fd in msg.DESCRIPTOR.fields:
            if fd.type == FieldDescriptor.TYPE_MESSAGE and fd.label != FieldDescriptor.LABEL_REPEATED \
                    and fd.message_type.full_name in _WRAPPERS and not msg.HasField(fd.name):
                out[fd.name] = None
                continue
            items.append((fd, getattr(msg, fd.name)))
    for fd, v in items:
        if fd.label == FieldDescriptor.LABEL_REPEATED:
            if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
                vfd = fd.message_type.fields_by_name["value"]
                out[fd.name] = {k: _value(vfd, x, presence) for k, x in v.items()}
            else:
                out[fd.name] = [_value(fd, x, presence) for x in v]
        else:
            out[fd.name] = _value(fd, v, presence)
    return out


@dataclass(frozen=True)
class Job:
    """A job's state, as GetJob and the progress events of WatchJob report it."""

    job_id: str
    status: str  # queued | running | succeeded | failed | cancelled
    schema: str
    domain: str
    tier: str
    count: int
    accepted: int
    rejected: int
    generated: int
    last_seq: int
    created_at: str
    started_at: str
    finished_at: str
    error: str
    grade: str
    usage: Dict[str, Any] = field(repr=False)
    cost_usd: float
    # Why the job is where it is, beyond its status: {"code": ..., "message": ...}, both empty when
    # there is nothing to add (codes: PAUSED_STORAGE_FULL, FAILED, ENDED_SHORT, CANCELLED).
    detail: Dict[str, str]

    @property
    def done(self) -> bool:
        """True once the job is final: succeeded, failed or cancelled."""
        return self.status in FINAL_STATUSES

    @classmethod
    def from_proto(cls, pb) -> "Job":
        d = to_dict(pb)
        return cls(**{f.name: d[f.name] for f in fields(cls)})

    def to_dict(self) -> Dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class JobList(list):
    """A page of jobs, newest first; ``next_page_token`` continues the listing (empty at the end)."""

    def __init__(self, jobs, next_page_token: str = ""):
        super().__init__(jobs)
        self.next_page_token = next_page_token


class SplitInfo(NamedTuple):
    """Announces a split's records in a FetchSplits stream."""

    name: str
    count: int
    sha256: str  # of the split's JSONL file, each line ending in "\n"; empty if the manifest has none


class Record:
    """One record: its sequence number in the job and its exact JSON line (bytes, no newline)."""

    __slots__ = ("seq", "json", "_data")

    def __init__(self, seq: int, json_bytes: bytes, data: Any = None):
        self.seq = seq
        self.json = json_bytes
        self._data = data

    @property
    def data(self) -> Dict[str, Any]:
        """The record decoded (once) from its JSON."""
        if self._data is None:
            self._data = json.loads(self.json)
        return self._data

    def __eq__(self, other):
        return isinstance(other, Record) and other.seq == self.seq and other.json == self.json

    def __hash__(self):
        return hash((self.seq, self.json))

    def __repr__(self) -> str:
        text = self.json[:60].decode("utf-8", "replace")
        return f"Record(seq={self.seq}, json={text!r}{'...' if len(self.json) > 60 else ''})"

    def __reduce__(self):
        return (Record, (self.seq, self.json))


__all__ = ["Job", "JobList", "Record", "SplitInfo", "to_dict", "FINAL_STATUSES"]
