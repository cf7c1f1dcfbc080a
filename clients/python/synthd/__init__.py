"""Python client for synthd: synthetic LLM training data over synthd's framed protobuf protocol.

    from synthd import Client
    client = Client()                      # $SYNTH_ADDRESS and $SYNTH_API_KEY
    job = client.generate({"schema": "instruction_v1", "domain": "customer support", "count": 100, "model": "fast"})
    for record in client.records(job.job_id):
        ...

Adapters (optional imports): `synthd.torch` (PyTorch IterableDataset), `synthd.hf` (Hugging Face
datasets), `synthd.formats` (TRL SFT / DPO, Alpaca, ShareGPT, OpenAI chat).
"""

from ._address import Address, parse_address
from .client import Client, job_request
from .errors import (Cancelled, ConnectionLost, DeadlineExceeded, FailedPrecondition, FieldError, Internal,
                     InvalidArgument, NotFound, PermissionDenied, ProtocolError, ResourceExhausted,
                     SpellingSuggestion, StatusCode, SynthError, Unauthenticated, Unavailable, Unimplemented)
from .models import FINAL_STATUSES, Job, JobList, Record, SplitInfo

__version__ = "0.3.0"

__all__ = [
    "Address", "Cancelled", "Client", "ConnectionLost", "DeadlineExceeded", "FINAL_STATUSES", "FailedPrecondition",
    "FieldError", "Internal", "InvalidArgument", "Job", "JobList", "NotFound", "PermissionDenied", "ProtocolError",
    "Record", "ResourceExhausted", "SpellingSuggestion", "SplitInfo", "StatusCode", "SynthError", "Unauthenticated",
    "Unavailable", "Unimplemented", "job_request", "parse_address",
]
