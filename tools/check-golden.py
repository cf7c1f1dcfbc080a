#!/usr/bin/env python3
"""Checks the golden request frames in proto/testdata/ (written by tools/make-golden.py).

For every method:
  (a) Python protobuf: the length prefix matches, the Frame parses into a CallOpen whose envelope is the
      one in Frame.json and whose method is the file's name, the request parses as the method's type,
      its MessageToDict(preserving_proto_field_name=True) equals <Method>.json, and deterministic
      re-serialization gives back the same bytes;
  (b) protobuf-c: clients/c/build/golden_decode prints the same envelope and request.
Then: golden_decode runs clean under valgrind on Generate.frame (when valgrind is installed), and
rejects corrupt frames with exit status 1 and a message rather than a crash.

One line per method (`ok Generate`, or `FAIL Generate` and the differences); exit status 1 on any failure.

Usage: make -C clients/c golden_decode && tools/check-golden.py
"""

import json
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "clients" / "python"))

from google.protobuf import json_format, message_factory, symbol_database  # noqa: E402
from synthd.v1 import frame_pb2, service_pb2  # noqa: E402,F401  (service_pb2 registers the request types)

TESTDATA = ROOT / "proto" / "testdata"
DECODER = ROOT / "clients" / "c" / "build" / "golden_decode"

# The methods of the protocol and their request types. Kept here independently of make-golden.py, so
# that a method dropped from the generator (and from Frame.json with it) is caught.
METHODS = {
    "Generate": "synthd.v1.GenerateRequest",
    "Plan": "synthd.v1.PlanRequest",
    "GetJob": "synthd.v1.GetJobRequest",
    "ListJobs": "synthd.v1.ListJobsRequest",
    "CancelJob": "synthd.v1.CancelJobRequest",
    "WatchJob": "synthd.v1.WatchJobRequest",
    "FetchSplits": "synthd.v1.FetchSplitsRequest",
    "GetQualityReport": "synthd.v1.GetQualityReportRequest",
    "GetManifest": "synthd.v1.GetManifestRequest",
    "GetPricing": "synthd.v1.GetPricingRequest",
    "Health": "synthd.v1.HealthRequest",
    "CreateApiKey": "synthd.v1.CreateApiKeyRequest",
    "ListApiKeys": "synthd.v1.ListApiKeysRequest",
    "RevokeApiKey": "synthd.v1.RevokeApiKeyRequest",
    "DeleteJob": "synthd.v1.DeleteJobRequest",
    "GetUsage": "synthd.v1.GetUsageRequest",
    "CompareJobs": "synthd.v1.CompareJobsRequest",
}

ENVELOPE = ("call_id", "api_key", "timeout_ms")
INTEGER = re.compile(r"-?[0-9]+\Z")


class Failure(Exception):
    """A golden file that cannot be read."""


# ---- Comparison ------------------------------------------------------------------------------------

def same_scalar(expected, actual):
    """JSON scalars compare by type and value, with two allowances: a 64-bit integer matches whether it
    is written as a number or as the decimal string proto3 JSON uses, and numbers compare by value
    (40 == 40.0), floats exactly."""
    if isinstance(expected, bool) or isinstance(actual, bool) or expected is None or actual is None:
        return type(expected) is type(actual) and expected == actual
    if isinstance(expected, str) and isinstance(actual, str):
        return expected == actual
    if isinstance(expected, int) and isinstance(actual, int):
        return expected == actual
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        return float(expected) == float(actual)
    if isinstance(expected, str) and isinstance(actual, int):
        return INTEGER.match(expected) is not None and int(expected) == actual
    if isinstance(expected, int) and isinstance(actual, str):
        return INTEGER.match(actual) is not None and int(actual) == expected
    return False


def differences(expected, actual, path="$"):
    """The differences between two parsed JSON values, one line each."""
    if isinstance(expected, dict) or isinstance(actual, dict):
        if not (isinstance(expected, dict) and isinstance(actual, dict)):
            return [f"{path}: expected {show(expected)}, got {show(actual)}"]
        out = []
        for key in sorted(expected.keys() | actual.keys()):
            where = f"{path}.{key}"
            if key not in actual:
                out.append(f"{where}: missing, expected {show(expected[key])}")
            elif key not in expected:
                out.append(f"{where}: unexpected {show(actual[key])}")
            else:
                out += differences(expected[key], actual[key], where)
        return out
    if isinstance(expected, list) or isinstance(actual, list):
        if not (isinstance(expected, list) and isinstance(actual, list)):
            return [f"{path}: expected {show(expected)}, got {show(actual)}"]
        out = [f"{path}: expected {len(expected)} items, got {len(actual)}"] if len(expected) != len(actual) else []
        for i, (e, a) in enumerate(zip(expected, actual)):
            out += differences(e, a, f"{path}[{i}]")
        return out
    return [] if same_scalar(expected, actual) else [f"{path}: expected {show(expected)}, got {show(actual)}"]


def show(value, limit=120):
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "..."


# ---- Checks ----------------------------------------------------------------------------------------

def load_json(path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise Failure(f"{path.relative_to(ROOT)}: {e}")


def request_class(type_name):
    descriptor = symbol_database.Default().pool.FindMessageTypeByName(type_name)
    return message_factory.GetMessageClass(descriptor)


def check_python(method, data, envelope, expected_request):
    """(a): decode with Python protobuf; returns the differences."""
    if len(data) < 4 or struct.unpack(">I", data[:4])[0] != len(data) - 4:
        return ["python: the length prefix does not match the bytes after it"]
    payload = data[4:]
    frame = frame_pb2.Frame.FromString(payload)
    if frame.WhichOneof("kind") != "open":
        return [f"python: the frame is not a CallOpen but {frame.WhichOneof('kind')}"]
    opened = frame.open
    actual_envelope = {"call_id": str(frame.call_id), "method": opened.method, "api_key": opened.api_key,
                       "timeout_ms": str(opened.timeout_ms)}
    out = differences({**envelope, "method": method}, actual_envelope, "$envelope")
    request = request_class(METHODS[method]).FromString(opened.request)
    out += differences(expected_request,
                       json_format.MessageToDict(request, preserving_proto_field_name=True), "$request")
    # The golden bytes are canonical: what a deterministic serializer writes for them.
    if request.SerializeToString(deterministic=True) != opened.request:
        out.append("$request: not the deterministic serialization of the request it decodes to")
    if frame.SerializeToString(deterministic=True) != payload:
        out.append("$frame: not the deterministic serialization of the frame it decodes to")
    return ["python: " + line for line in out]


def run_decoder(path, valgrind=False):
    command = [str(DECODER), str(path)]
    if valgrind:
        command = ["valgrind", "--error-exitcode=3", "--leak-check=full", "-q"] + command
    return subprocess.run(command, capture_output=True, timeout=120)


def check_c(method, path, envelope, expected_request):
    """(b): decode with protobuf-c (golden_decode); returns the differences."""
    result = run_decoder(path)
    if result.returncode != 0:
        return [f"c: golden_decode exited with {result.returncode}: {result.stderr.decode(errors='replace').strip()}"]
    try:
        actual = json.loads(result.stdout)
    except ValueError as e:
        return [f"c: golden_decode printed invalid JSON ({e}): {result.stdout[:200]!r}"]
    expected = {**{key: envelope[key] for key in ENVELOPE}, "method": method, "request": expected_request}
    return ["c: " + line for line in differences(expected, actual)]


def check_valgrind(path):
    if shutil.which("valgrind") is None:
        print(f"skip valgrind {path.stem} (valgrind is not installed)")
        return True
    result = run_decoder(path, valgrind=True)
    if result.returncode != 0 or result.stderr.strip():
        print(f"FAIL valgrind {path.stem}: exit status {result.returncode}")
        for line in result.stderr.decode(errors="replace").splitlines():
            print("  " + line)
        return False
    print(f"ok valgrind {path.stem}")
    return True


def check_rejected(name, data):
    """golden_decode must exit 1 with a message on stderr (not crash, not print) for a corrupt frame."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.frame"
        path.write_bytes(data)
        result = run_decoder(path)
        problems = []
        if result.returncode < 0:
            problems.append(f"killed by signal {-result.returncode}")
        elif result.returncode != 1:
            problems.append(f"exit status {result.returncode}, expected 1")
        if not result.stderr.strip():
            problems.append("no message on stderr")
        if result.stdout:
            problems.append(f"printed {result.stdout[:80]!r}")
        # The error paths must free what they allocated too.
        if not problems and shutil.which("valgrind") is not None:
            checked = run_decoder(path, valgrind=True)
            if checked.returncode != 1:
                problems.append(f"under valgrind: exit status {checked.returncode}: "
                                f"{checked.stderr.decode(errors='replace').strip()}")
    if problems:
        print(f"FAIL rejects {name}: {'; '.join(problems)}")
        return False
    print(f"ok rejects {name} ({result.stderr.decode(errors='replace').strip()})")
    return True


def frame_bytes(method, request_bytes, envelope):
    frame = frame_pb2.Frame(call_id=int(envelope["call_id"]), open=frame_pb2.CallOpen(
        method=method, api_key=envelope["api_key"], timeout_ms=int(envelope["timeout_ms"]), request=request_bytes))
    payload = frame.SerializeToString(deterministic=True)
    return struct.pack(">I", len(payload)) + payload


def main():
    if not DECODER.exists():
        print(f"check-golden: {DECODER.relative_to(ROOT)} is missing; run: make -C clients/c golden_decode")
        return 1
    try:
        frame_json = load_json(TESTDATA / "Frame.json")
    except Failure as e:
        print(f"FAIL {e}")
        return 1
    envelope = {key: frame_json.get(key) for key in ENVELOPE}
    ok = True

    listed = frame_json.get("methods", {})
    if listed != METHODS:
        ok = False
        print("FAIL Frame.json: its methods differ from the protocol's")
        for line in differences(METHODS, listed, "$methods"):
            print("  " + line)
    present = {p.stem for p in TESTDATA.glob("*.frame")}
    for stray in sorted(present - METHODS.keys()):
        ok = False
        print(f"FAIL {stray}: {stray}.frame is not a method's frame")

    for method in METHODS:
        frame_path, json_path = TESTDATA / f"{method}.frame", TESTDATA / f"{method}.json"
        if not frame_path.exists() or not json_path.exists():
            ok = False
            missing = " and ".join(p.name for p in (frame_path, json_path) if not p.exists())
            print(f"FAIL {method}: {missing} missing")
            continue
        try:
            expected = load_json(json_path)
        except Failure as e:
            ok = False
            print(f"FAIL {method}: {e}")
            continue
        try:
            problems = check_python(method, frame_path.read_bytes(), envelope, expected)
        except Exception as e:  # a DecodeError, or anything else the bytes provoke
            problems = [f"python: {type(e).__name__}: {e}"]
        problems += check_c(method, frame_path, envelope, expected)
        if problems:
            ok = False
            print(f"FAIL {method}")
            for line in problems:
                print("  " + line)
        else:
            print(f"ok {method}")

    generate = TESTDATA / "Generate.frame"
    if generate.exists():
        ok &= check_valgrind(generate)
        data = generate.read_bytes()
        # Cut short: the length prefix no longer matches.
        ok &= check_rejected("truncated-Generate", data[:-5])
        # Cut short with the prefix patched to match, so the protobuf-c parser itself must refuse it.
        payload = data[4:-5]
        ok &= check_rejected("truncated-Generate-with-patched-length", struct.pack(">I", len(payload)) + payload)
    ok &= check_rejected("unknown-method", frame_bytes("NoSuchMethod", b"", envelope))
    ok &= check_rejected("too-short", b"\x00\x00")

    print("check-golden: all passed" if ok else "check-golden: FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
