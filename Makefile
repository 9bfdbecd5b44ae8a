# Tidewire: `make test` runs everything (Rust tests, clippy, end-to-end tests
# with the official Node and Python clients). Needs Rust, Node 20 (npm),
# Python 3.11 (venv + pip), redis-server, and PostgreSQL for the message
# store tests (TIDEWIRE_TEST_POSTGRES_URL, default
# postgres://postgres@127.0.0.1:5432/postgres; .ci/run starts it); the
# other dependencies are installed locally:
#   server-example/e2e/node/node_modules  (npm ci, from package-lock.json)
#   .venv                                 (pip, from requirements.txt)
# CARGO_TARGET_DIR may point at a persistent directory (CI does).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test
.DELETE_ON_ERROR:

CARGO ?= cargo
NPM ?= npm
NODE ?= node
PYTHON ?= python3

CARGO_TARGET_DIR ?= target
TARGET_ABS := $(abspath $(CARGO_TARGET_DIR))
# Absolute, so that builds started from a subdirectory (napi, maturin) share it.
override CARGO_TARGET_DIR := $(TARGET_ABS)
export CARGO_TARGET_DIR
SERVER_BIN := $(TARGET_ABS)/debug/tidewire-server

NODE_DIR := server-example/e2e/node
PY_DIR := server-example/e2e/python
VENV := $(abspath .venv)
NODE_STAMP := $(NODE_DIR)/node_modules/.tidewire-installed
VENV_STAMP := $(VENV)/.tidewire-installed

.PHONY: test readme-first-command rust-test lint build-server e2e e2e-node e2e-python node-deps python-deps clean-e2e \
	bench bench-python bench-micro bench-smoke bench-deps binding-node binding-node-deps binding-python binding-python-deps binding-python-wheel binding-swift

SUITES := readme-first-command rust-test lint e2e-node e2e-python bench-smoke binding-node binding-python binding-swift

## Runs every suite even when an earlier one fails, then fails if any did.
test:
	@failed=""; \
	for suite in $(SUITES); do \
	  echo "==> make $$suite"; \
	  $(MAKE) --no-print-directory $$suite || failed="$$failed $$suite"; \
	done; \
	if [ -n "$$failed" ]; then echo "make test: FAILED:$$failed" >&2; exit 1; fi; \
	echo "make test: all suites passed"

## The README's first command, literally, from a fresh clone: the
## reference server starts and answers /healthz (a release build).
readme-first-command:
	server-example/e2e/readme-first-command.sh

## All Rust tests in the workspace: unit, property and integration tests.
rust-test:
	$(CARGO) test --workspace --no-fail-fast --features tidewire/client,tidewire/redis

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --features tidewire/client,tidewire/redis -- -D warnings

build-server:
	$(CARGO) build -p tidewire-server

e2e: e2e-node e2e-python

node-deps: $(NODE_STAMP)

$(NODE_STAMP): $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	cd $(NODE_DIR) && $(NPM) ci --no-audit --no-fund
	touch $@

## socket.io-client / engine.io-client against the server (node --test).
## --test-force-exit: a file whose tests are done exits even if a client it
## leaked keeps a timer (a reconnecting client held a CI run for 25 min).
e2e-node: build-server node-deps
	cd $(NODE_DIR) && TIDEWIRE_SERVER_BIN="$(SERVER_BIN)" $(NODE) --test --test-force-exit test/*.test.mjs

python-deps: $(VENV_STAMP)

$(VENV_STAMP): $(PY_DIR)/requirements.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --disable-pip-version-check -q -r $(PY_DIR)/requirements.txt
	touch $@

## python-socketio AsyncClient against the server (pytest). Exit code 5
## (no tests collected) counts as a failure.
e2e-python: build-server python-deps
	cd $(PY_DIR) && rc=0 && TIDEWIRE_SERVER_BIN="$(SERVER_BIN)" $(VENV)/bin/python -m pytest -q || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "e2e-python: pytest collected no tests" >&2; exit 1; fi; \
	exit $$rc

BENCH_NODE_DIR := benches/node
BENCH_NODE_STAMP := $(BENCH_NODE_DIR)/node_modules/.tidewire-installed

bench-deps: $(BENCH_NODE_STAMP)

$(BENCH_NODE_STAMP): $(BENCH_NODE_DIR)/package.json $(BENCH_NODE_DIR)/package-lock.json
	cd $(BENCH_NODE_DIR) && $(NPM) ci --no-audit --no-fund
	touch $@

## Every load scenario against Tidewire and Node socket.io 4.8.4, alternated,
## pinned (server core 0, load generator core 1); a table with ratios, JSON
## in benches/results/, regressions against benches/RESULTS.md flagged.
## RECORD=1 writes the run into benches/RESULTS.md. Takes several minutes.
bench: bench-deps
	$(CARGO) build --release -p tidewire-benches --bins
	$(TARGET_ABS)/release/loadgen suite $(if $(RECORD),--record) $(BENCH_ARGS)

## The criterion micro-benchmarks (codec, rooms, broadcast, acks).
bench-micro:
	$(CARGO) bench -p tidewire-benches --benches

## The load generator's quick run against both servers (debug build): the
## tooling and both servers' side of the contract work, every message and
## ack arrives. Part of `make test`; it measures nothing.
bench-smoke: bench-deps
	$(CARGO) build -p tidewire-benches --bins
	$(TARGET_ABS)/debug/loadgen suite --quick --check --out $(TARGET_ABS)/bench-smoke.json

BENCH_PY_SERVER := $(VENV)/bin/python benches/python/server.py
BENCH_PY_ONLY ?= idle,fanout,acks

## The same app on python-socketio (uvicorn), on tidewire.AsyncServer
## mounted with ASGIApp (uvicorn) and on Tidewire's native listener
## (benches/python/server.py): idle memory (5,000 connections), fan-out and
## acks (fan-out from 500 deliveries/s: python-socketio tops out near 1k),
## each Tidewire side alternated with python-socketio as the suite
## does. The binding is built in release first. Takes several minutes.
bench-python: binding-python-deps
	cd $(BINDING_PY_DIR) && VIRTUAL_ENV=$(VENV) $(VENV)/bin/maturin develop --release --quiet
	$(CARGO) build --release -p tidewire-benches --bins
	for side in tidewire-asgi tidewire-native; do \
	  $(TARGET_ABS)/release/loadgen suite --only $(BENCH_PY_ONLY) --idle-connections 5000 --fanout-start 500 \
	    --a-cmd "$(BENCH_PY_SERVER) $$side" --a-label $$side \
	    --b-cmd "$(BENCH_PY_SERVER) python-socketio" --b-label python-socketio \
	    --out benches/results/python-$$side.json $(BENCH_ARGS) || exit 1; \
	done

BINDING_NODE_DIR := bindings-node
BINDING_NODE_STAMP := $(BINDING_NODE_DIR)/node_modules/.tidewire-installed

binding-node-deps: $(BINDING_NODE_STAMP)

$(BINDING_NODE_STAMP): $(BINDING_NODE_DIR)/package.json $(BINDING_NODE_DIR)/package-lock.json
	cd $(BINDING_NODE_DIR) && $(NPM) ci --no-audit --no-fund
	touch $@

## The Node binding: builds the addon with @napi-rs/cli (debug), fails if the
## generated index.js / index.d.ts differ from the committed ones, then runs
## its tests (node --test, socket.io-client as the peer).
binding-node: binding-node-deps
	cd $(BINDING_NODE_DIR) && npx --no-install napi build --platform
	git diff --exit-code -- $(BINDING_NODE_DIR)/index.js $(BINDING_NODE_DIR)/index.d.ts || \
	  { echo "binding-node: generated index.js / index.d.ts drifted: commit them" >&2; exit 1; }
	test -z "$$(git status --porcelain -- $(BINDING_NODE_DIR)/index.js $(BINDING_NODE_DIR)/index.d.ts)" || \
	  { echo "binding-node: generated index.js / index.d.ts are not committed" >&2; exit 1; }
	cd $(BINDING_NODE_DIR) && $(NODE) --test --test-force-exit test/*.test.mjs

BINDING_PY_DIR := bindings-python
BINDING_PY_STAMP := $(VENV)/.tidewire-binding-python-installed

binding-python-deps: $(BINDING_PY_STAMP)

$(BINDING_PY_STAMP): $(BINDING_PY_DIR)/tests/requirements.txt $(VENV_STAMP)
	$(VENV)/bin/python -m pip install --disable-pip-version-check -q -r $(BINDING_PY_DIR)/tests/requirements.txt
	touch $@

## The Python binding: builds and installs it into .venv with maturin
## (debug), checks the native module against its .pyi stub (mypy.stubtest),
## the package and its examples with mypy --strict, builds the abi3 wheel and runs a
## tiny server from it in a fresh venv, then runs its pytest suite
## (python-socketio, redis-server and npm socket.io-client as peers). Exit
## code 5 (no tests collected) counts as a failure.
binding-python: binding-python-deps node-deps
	cd $(BINDING_PY_DIR) && VIRTUAL_ENV=$(VENV) $(VENV)/bin/maturin develop --quiet
	cd $(BINDING_PY_DIR) && $(VENV)/bin/python -m mypy.stubtest tidewire._native
	cd $(BINDING_PY_DIR) && $(VENV)/bin/python -m mypy --strict python/tidewire examples
	$(MAKE) --no-print-directory binding-python-wheel
	cd $(BINDING_PY_DIR)/tests && rc=0 && SIO_CLIENT_DIR=$(abspath $(NODE_DIR))/node_modules $(VENV)/bin/python -m pytest -q || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "binding-python: pytest collected no tests" >&2; exit 1; fi; \
	exit $$rc

PY_WHEELS := $(TARGET_ABS)/wheels
PY_WHEEL_VENV := $(TARGET_ABS)/wheel-venv

## The abi3 wheel maturin builds installs into a fresh venv (nothing else
## in it) and serves a handshake there, natively and through ASGIApp.
binding-python-wheel: binding-python-deps
	rm -rf $(PY_WHEELS) $(PY_WHEEL_VENV)
	cd $(BINDING_PY_DIR) && $(VENV)/bin/maturin build --quiet --out $(PY_WHEELS)
	ls $(PY_WHEELS)/tidewire-*-abi3-*.whl >/dev/null || { echo "binding-python-wheel: no abi3 wheel built" >&2; exit 1; }
	$(PYTHON) -m venv $(PY_WHEEL_VENV)
	$(PY_WHEEL_VENV)/bin/python -m pip install --disable-pip-version-check -q --no-index $(PY_WHEELS)/tidewire-*-abi3-*.whl
	cd $(PY_WHEEL_VENV) && $(PY_WHEEL_VENV)/bin/python $(abspath $(BINDING_PY_DIR))/tests/wheel_smoke.py

SWIFT_LIB := $(TARGET_ABS)/debug/libtidewire_swift.so
UNIFFI_PY := $(TARGET_ABS)/uniffi-python

## The Swift binding: builds the library, regenerates the committed Swift
## sources (fails if they drift), and runs its tests through UniFFI's Python
## bindings of the same library (the C ABI Swift uses) against the server.
binding-swift: build-server python-deps
	$(CARGO) build -p tidewire-swift
	bindings-swift/generate.sh $(SWIFT_LIB) $(UNIFFI_PY)
	git diff --exit-code -- bindings-swift/Sources || \
	  { echo "binding-swift: generated Swift sources drifted: commit them" >&2; exit 1; }
	test -z "$$(git status --porcelain -- bindings-swift/Sources)" || \
	  { echo "binding-swift: generated Swift sources are not committed" >&2; exit 1; }
	cd bindings-swift/tests && rc=0 && PYTHONPATH=$(UNIFFI_PY) TIDEWIRE_SERVER_BIN="$(SERVER_BIN)" $(VENV)/bin/python -m pytest -q || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "binding-swift: pytest collected no tests" >&2; exit 1; fi; \
	exit $$rc

clean-e2e:
	rm -rf $(NODE_DIR)/node_modules $(BENCH_NODE_DIR)/node_modules $(BINDING_NODE_DIR)/node_modules $(VENV)
