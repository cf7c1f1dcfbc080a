# synthd: `make demo` runs a real job on the bundled local model; `make test` runs every test.
SHELL := /bin/bash
# Only when swift is not on PATH already: a changed PATH makes SwiftPM rebuild part of the tree.
export PATH := $(if $(shell command -v swift),$(PATH),/opt/swift/usr/bin:$(PATH))
PY := .venv/bin/python

.PHONY: all build test test-swift test-proto test-c test-c-client test-python test-fake test-examples demo deps proto clean bench-engine bench-dedup bench-stream bench-local bench-abuse bench-latency

all: build

deps:
	@tools/setup-deps

build: deps
	swift build

## Everything: Swift tests (wire, store, spec, server over real sockets), the generated-code and
## golden-frame checks in Swift, Python and C, the fake provider's own tests, and every documented
## request example run end to end through the CLI.
test: deps test-swift test-proto test-c test-fake test-examples test-c-client test-python
	@echo "make test: all passed"

test-swift:
	swift build --build-tests
	swift test --skip-build

test-proto:
	$(PY) tools/check-golden.py

test-c:
	$(MAKE) -C clients/c golden_decode

## Every documented request example through `synth generate --request` against the fake provider.
test-examples: test-swift
	$(PY) tools/run-examples

## The C client (clients/c) against a real synthd: every call, synth-c-watch, valgrind, bad frames.
test-c-client: test-swift
	$(MAKE) -C clients/c test

## The Python client (clients/python) against a real synthd and the fake provider.
test-python: test-swift
	tools/python-client-test

test-fake:
	$(PY) -m pytest -q -p no:cacheprovider tools/fake_provider/tests

# test-proto runs the C decoder too, so build it first.
test-proto: test-c

demo: deps
	@tools/demo

## Regenerates Swift, C and Python code from proto/ (needs protoc-gen-swift; not run in CI).
proto:
	tools/gen-proto

clean:
	rm -rf .build clients/c/build

## Benchmarks print measured figures; they are not part of make test.
bench-engine: deps
	$(PY) tools/bench-engine

bench-dedup: deps
	$(PY) tools/bench-dedup

## Reads a stored job of 1,000,000 records back with synth-c-watch and the Python client (Unix socket
## and TCP) against cat and a json.loads loop on the same JSONL, and synthd's RSS under a slow reader.
## BENCH_ARGS go to the script, e.g. BENCH_ARGS="--bin-dir .build/debug --records 100000".
bench-stream: deps
	$(PY) tools/bench-stream $(BENCH_ARGS)

## Health's round trip (p50, p99) every 20 ms while a 10,000-record job runs on the same server against
## the fake provider (200 ms latency, 128 in flight, near-duplicates planted); three runs, medians.
## BENCH_ARGS go to the script, e.g. BENCH_ARGS="--bin-dir .build/release --runs 1".
bench-latency: deps
	$(PY) tools/bench-latency $(BENCH_ARGS)

## The same 40-record job on the bundled local model through synthd and as direct calls to llama-server.
bench-local: deps
	$(PY) tools/bench-local $(BENCH_ARGS)

## Hostile clients (huge and malformed requests, partial frames, idle and slow-reading connections,
## too many calls), each against a fresh synthd (a release build): peak RSS, CPU and Health's latency.
## BENCH_ARGS go to the script, e.g. BENCH_ARGS="--only slow-reader-streams".
bench-abuse: deps
	$(PY) tools/bench-abuse $(BENCH_ARGS)
