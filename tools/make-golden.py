#!/usr/bin/env python3
"""Writes the golden request frames in proto/testdata/.

For every method, two files:
  <Method>.json   the request as proto3 JSON with the proto field names
                  (json_format.MessageToDict(preserving_proto_field_name=True)), keys sorted
  <Method>.frame  the complete frame a client sends to open the call: a 4-byte big-endian length, then
                  a serialized synthd.v1.Frame{call_id, open: CallOpen{method, api_key, timeout_ms, request}}
and Frame.json, the envelope values shared by every frame and the method -> request type table.

The requests are written below in proto3 JSON (the form the .json files hold), parsed with ParseDict and
serialized deterministically, so a re-run produces identical bytes. Before writing, the script checks that
each request survives JSON -> message -> JSON unchanged (no field at its default value, which proto3 JSON
would drop, and no float that does not round-trip) and that every field of every synthd.v1 message
reachable from the request type is set at least once.

Usage: tools/make-golden.py          (needs python protobuf; run from anywhere)
Checked by tools/check-golden.py.
"""

import copy
import json
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "clients" / "python"))

from google.protobuf import json_format  # noqa: E402
from synthd.v1 import frame_pb2, service_pb2  # noqa: E402

OUT = ROOT / "proto" / "testdata"

CALL_ID = 7
API_KEY = "sk_live_golden_example_key_0000000000"
TIMEOUT_MS = 30000

# One request body exercising every field of request.proto. Numbers follow proto3 JSON: int64 values
# (and the Int64Value wrappers) are strings, doubles are floats chosen to be exact in binary.
JOB_REQUEST = {
    "schema": "conflict_v1",
    "domain": "customer support for a B2B invoicing platform",
    "count": "1200",
    "model": "balanced",
    "models": {
        "generator": {"provider": "anthropic", "model": "claude-sonnet-4-5"},
        "critic": {"provider": "openai", "model": "gpt-4.1-mini"},
    },
    "system_prompt": (
        "You are a support agent at Ledgerly.\n"
        "Answer in the customer's language; quote amounts exactly as the invoice shows them "
        "(e.g. \"€1 250,00\")."
    ),
    "verified": True,
    "advanced": {
        "categories": {
            "billing_disputes": {
                "percentage": 40.0,
                "description": "The customer disputes a charge on an issued invoice",
            },
            "refunds": {"percentage": 25.0, "description": "Requests for a full or partial refund"},
            "tax_questions": {"percentage": 22.5, "description": "VAT, reverse charge and tax IDs"},
            "account_access": {"percentage": 12.5, "description": "Locked accounts, SSO and 2FA resets"},
        },
        "coverage": {
            "dimensions": [
                {"name": "customer_tier", "values": ["free", "pro", "enterprise"]},
                {"name": "channel", "values": ["email", "chat"]},
            ],
            "mode": "all_combinations",
            "min_per_cell": "5",
        },
        "invariants": [
            {"rule": "Never promise a refund amount before the ticket is verified", "enforcement": "strict"},
            {"rule": "Link the help-centre article when one applies", "enforcement": "soft"},
        ],
        "response_policy": {
            "refund_request": "Explain the 30-day policy, then open a refund ticket",
            "legal_threat": "Do not argue; hand over to a human agent",
        },
        "style_rules": [
            "Use the customer's first name once",
            "At most three short paragraphs",
            "No emoji — not even in chat",
        ],
        "hard_negatives": {
            "enabled": True,
            "percentage": 12.5,
            # Built-in technique names and a custom {name, description} technique, mixed.
            "techniques": [
                "near_miss",
                "policy_trap",
                {
                    "name": "currency_swap",
                    "description": "The same dispute, but the invoice currency silently changes",
                },
            ],
        },
        "output_split": {"train": 80.0, "validation": 10.0, "test": 10.0},
        "metadata_fields": [
            {"name": "record_id", "type": "auto_increment", "prefix": "ldg-"},
            {"name": "category", "type": "from_category"},
            {"name": "trace_id", "type": "uuid"},
            {"name": "source", "type": "constant", "value": "golden-fixture"},
            {"name": "rubric_version", "type": "constant", "value": 2.5},
            {"name": "synthetic", "type": "constant", "value": True},
            {
                "name": "empathy",
                "type": "llm_assessed",
                "description": "How well the reply acknowledges the customer's frustration, 1 to 5",
            },
        ],
        "response_constraints": {"min_tokens": "40", "max_tokens": "400"},
        "dedup_against": ["job_01JD3Z8K6Q2W4E5R7T9Y1U3I5P", "job_01JD3Z8K6Q2W4E5R7T9Y1U3I5Q"],
    },
    "conflict_config": {
        "drive_pairs": [
            {
                "axis_name": "honesty_vs_retention",
                "description": "Telling the customer the plan does not fit them versus keeping the account",
                "drives": [
                    {"name": "honesty", "description": "Recommend the cheaper competitor plan if it fits"},
                    {"name": "retention", "description": "Keep the customer on a paid plan"},
                ],
            },
            {"a": "speed", "b": "thoroughness"},
        ],
        "axis_distribution": {"honesty_vs_retention": 60.0, "speed_vs_thoroughness": 40.0},
        "resolution_mode": "graded",
        "override_vocabulary": ["escalate to billing", "exception approved"],
    },
    "constraints": {
        "language": "en-GB",
        "tone": "warm, precise",
        "difficulty": "hard",
        "min_tokens": "64",
        "max_tokens": "512",
    },
    "license": "CC-BY-4.0",
    "delivery": "batch",
    "max_provider_cost_usd": 12.5,
}

JOB_ID = "job_01JD3Z8K6Q2W4E5R7T9Y1U3I5O"

# Method -> (request class, request in proto3 JSON), in the order of service.proto.
REQUESTS = {
    "Generate": (service_pb2.GenerateRequest, {
        "request": JOB_REQUEST,
        "domain_confirmed": True,
        "idempotency_key": "7f9c2ba4-e88f-4c7a-9d1e-0b6a2f3c4d5e",
    }),
    # Plan the same body that Generate then submits, as a client does.
    "Plan": (service_pb2.PlanRequest, {"request": copy.deepcopy(JOB_REQUEST), "domain_confirmed": True}),
    "GetJob": (service_pb2.GetJobRequest, {"job_id": JOB_ID}),
    "ListJobs": (service_pb2.ListJobsRequest, {
        "status": "running",
        "limit": 100,
        "page_token": "eyJiZWZvcmUiOiJqb2JfMDFKRDNaOEs2UTJXNEU1UjdUOVkxVTNJNU8ifQ",
    }),
    "CancelJob": (service_pb2.CancelJobRequest, {"job_id": JOB_ID}),
    # after_seq is 2^53 + 1: a uint64 that a JSON reader going through doubles would get wrong.
    "WatchJob": (service_pb2.WatchJobRequest, {
        "job_id": JOB_ID,
        "after_seq": "9007199254740993",
        "progress_only": True,
        "batch_bytes": 65536,
    }),
    "FetchSplits": (service_pb2.FetchSplitsRequest, {"job_id": JOB_ID, "split": "validation", "batch_bytes": 1048576}),
    "GetQualityReport": (service_pb2.GetQualityReportRequest, {"job_id": JOB_ID}),
    "GetManifest": (service_pb2.GetManifestRequest, {"job_id": JOB_ID}),
    "GetPricing": (service_pb2.GetPricingRequest, {}),
    "Health": (service_pb2.HealthRequest, {}),
    "CreateApiKey": (service_pb2.CreateApiKeyRequest, {"name": "ci-pipeline (staging)", "scope": "read", "expires_in_seconds": "2592000"}),
    "ListApiKeys": (service_pb2.ListApiKeysRequest, {}),
    "RevokeApiKey": (service_pb2.RevokeApiKeyRequest, {"key_id": "key_01JD40F2M8N6B4V2C0X8Z6L4K2"}),
    "DeleteJob": (service_pb2.DeleteJobRequest, {"job_id": JOB_ID}),
    "GetUsage": (service_pb2.GetUsageRequest, {}),
    "CompareJobs": (service_pb2.CompareJobsRequest, {"job_a": JOB_ID, "job_b": "job_01JD3Z8K6Q2W4E5R7T9Y1U3I5P", "limit": 100}),
}


def to_dict(message):
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def is_map(field):
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def reachable_fields(descriptor, seen_types=None):
    """Full names of the fields of every synthd.v1 message reachable from descriptor."""
    seen_types = set() if seen_types is None else seen_types
    if descriptor.full_name in seen_types:
        return set()
    seen_types.add(descriptor.full_name)
    fields = set()
    for field in descriptor.fields:
        fields.add(field.full_name)
        target = field.message_type
        if target is not None and is_map(field):
            target = target.fields_by_name["value"].message_type
        # The well-known types (Value, Int64Value, ...) are not ours to cover field by field.
        if target is not None and target.full_name.startswith("synthd."):
            fields |= reachable_fields(target, seen_types)
    return fields


def set_fields(message, out=None):
    """Full names of the fields set (non-default) anywhere in message."""
    out = set() if out is None else out
    for field, value in message.ListFields():
        out.add(field.full_name)
        if field.message_type is None:
            continue
        if is_map(field):
            if field.message_type.fields_by_name["value"].message_type is not None:
                for item in value.values():
                    set_fields(item, out)
        elif field.label == field.LABEL_REPEATED:
            for item in value:
                set_fields(item, out)
        else:
            set_fields(value, out)
    return out


def build(method, cls, body):
    request = json_format.ParseDict(body, cls())
    if to_dict(request) != body:
        sys.exit(f"make-golden: {method}: the request does not survive JSON -> message -> JSON unchanged "
                 "(a field at its default value, or a float that does not round-trip)")
    # request_json is the other way to send a Generate's body (the request as JSON text, which the
    # server reads as the documentation writes it): a frame carries one or the other, and this one
    # carries the typed request.
    missing = reachable_fields(cls.DESCRIPTOR) - set_fields(request) - {"synthd.v1.GenerateRequest.request_json",
                                                                         "synthd.v1.PlanRequest.request_json"}
    if missing:
        sys.exit(f"make-golden: {method}: fields never set: {', '.join(sorted(missing))}")
    request_bytes = request.SerializeToString(deterministic=True)
    frame = frame_pb2.Frame(
        call_id=CALL_ID,
        open=frame_pb2.CallOpen(method=method, api_key=API_KEY, timeout_ms=TIMEOUT_MS, request=request_bytes),
    )
    payload = frame.SerializeToString(deterministic=True)
    return to_dict(request), struct.pack(">I", len(payload)) + payload


def dump_json(value):
    # Keys sorted: MessageToDict returns map entries in the order of the runtime's hash table.
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    envelope = {
        "description": "Envelope of every <Method>.frame: a 4-byte big-endian length, then a serialized "
                       "synthd.v1.Frame{call_id, open: CallOpen{method, api_key, timeout_ms, request}}. "
                       "method is the file's name; request is the serialized request message of the type "
                       "listed in methods, whose proto3 JSON is <Method>.json. Written by tools/make-golden.py.",
        # uint64 values as proto3 JSON writes them.
        "call_id": str(CALL_ID),
        "api_key": API_KEY,
        "timeout_ms": str(TIMEOUT_MS),
        "methods": {method: cls.DESCRIPTOR.full_name for method, (cls, _) in REQUESTS.items()},
    }
    written = [("Frame.json", dump_json(envelope).encode())]
    for method, (cls, body) in REQUESTS.items():
        as_dict, frame = build(method, cls, body)
        written.append((f"{method}.json", dump_json(as_dict).encode()))
        written.append((f"{method}.frame", frame))
    for name, data in written:
        (OUT / name).write_bytes(data)
    print(f"make-golden: wrote {len(written)} files in {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
