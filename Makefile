# Tidewire: `make test` runs everything (Rust tests, clippy, end-to-end tests
# with the official Node and Python clients). Needs Rust, Node 20 (npm),
# Python 3.11 (venv + pip), redis-server, and PostgreSQL for the message
# store tests (TIDEWIRE_TEST_POSTGRES_URL, default
# postgres://postgres@127.0.0.1:5432/postgres; .ci/run starts it); the
# other dependencies are installed locally:
#   server-example/e2e/node/node_modules  (npm ci, from package-lock.json)
#   server-example/web/node_modules       (npm ci: the web app's build and browser tests)
#   .venv                                 (pip, from requirements.txt)
# The browser tests drive Debian's `chromium` (CHROMIUM_BIN, by default
# /usr/bin/chromium; .ci/run installs it): nothing downloads a browser.
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
	bench bench-python bench-node bench-micro bench-smoke bench-deps binding-node binding-node-deps binding-python binding-python-deps binding-python-wheel binding-swift socketio-suite

SUITES := readme-first-command rust-test lint e2e-node web e2e-browser e2e-python bench-smoke binding-node binding-python binding-swift \
	autobahn-smoke fuzz-smoke cluster-faults-smoke soak-smoke abuse-smoke

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
e2e-node: build-server node-deps python-deps
	cd $(NODE_DIR) && TIDEWIRE_SERVER_BIN="$(SERVER_BIN)" TIDEWIRE_PYTHON="$(VENV)/bin/python" $(NODE) --test --test-force-exit test/*.test.mjs

WEB_DIR := server-example/web
WEB_STAMP := $(WEB_DIR)/node_modules/.tidewire-installed

.PHONY: web web-deps e2e-browser

web-deps: $(WEB_STAMP)

$(WEB_STAMP): $(WEB_DIR)/package.json $(WEB_DIR)/package-lock.json
	cd $(WEB_DIR) && $(NPM) ci --no-audit --no-fund
	touch $@

## The chat's web app (React + TypeScript): type-checks it, builds it with
## Vite from package-lock.json, and fails if the bundle the server embeds
## (server-example/web/dist, committed) differs from the build.
web: web-deps
	cd $(WEB_DIR) && npx --no-install tsc --noEmit -p . && npx --no-install vite build --logLevel warn
	git diff --exit-code --stat -- $(WEB_DIR)/dist || \
	  { echo "web: the committed bundle differs from the build: run make web and commit $(WEB_DIR)/dist" >&2; exit 1; }
	test -z "$$(git status --porcelain -- $(WEB_DIR)/dist)" || \
	  { echo "web: the build made files that are not committed in $(WEB_DIR)/dist" >&2; exit 1; }

## The web app in headless Chromium (playwright-core) against the server:
## two users, tabs and presence, remounts, bad input, a restart under the
## page, a recovered drop, long-polling with WebSocket blocked, two nodes
## over Redis sharing PostgreSQL. Screenshots in server-example/web/test-artifacts/.
e2e-browser: build-server web-deps node-deps
	cd $(WEB_DIR) && TIDEWIRE_SERVER_BIN="$(SERVER_BIN)" $(NODE) --test --test-force-exit test/*.test.mjs

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
BENCH_NODE_SERVER := $(NODE) benches/node/server.mjs
BENCH_NODE_ONLY ?= fanout,cluster
BENCH_NODE_FAST ?= on off

## The same socket.io app (benches/node/server.mjs) with stock internals
## (engine.io, socket.io-adapter, @socket.io/redis-adapter through Redis)
## as side B and with Tidewire's Engine and adapter (the drop-in) as side A:
## fan-out on one node and two nodes through Redis, alternated and pinned as
## the suite does. `--fast-path off` is the drop-in with socket.io's own
## broadcast path (the before of the fast path), in the same build. The
## addon is built in release first (it replaces a debug build in
## bindings-node: `make binding-node` builds debug again).
bench-node: bench-deps binding-node-deps
	cd $(BINDING_NODE_DIR) && npx --no-install napi build --platform --release
	$(CARGO) build --release -p tidewire-benches --bins
	for fast in $(BENCH_NODE_FAST); do \
	  $(TARGET_ABS)/release/loadgen suite --only $(BENCH_NODE_ONLY) \
	    --a-cmd "$(BENCH_NODE_SERVER) --engine tidewire --adapter tidewire --fast-path $$fast" --a-label drop-in-fast-path-$$fast \
	    --b-cmd "$(BENCH_NODE_SERVER)" --b-label socket.io \
	    --out benches/results/node-drop-in-fast-path-$$fast.json $(BENCH_ARGS) || exit 1; \
	done

BINDING_NODE_STAMP := $(BINDING_NODE_DIR)/node_modules/.tidewire-installed

binding-node-deps: $(BINDING_NODE_STAMP)

$(BINDING_NODE_STAMP): $(BINDING_NODE_DIR)/package.json $(BINDING_NODE_DIR)/package-lock.json
	cd $(BINDING_NODE_DIR) && $(NPM) ci --no-audit --no-fund
	touch $@

## The Node binding: builds the addon with @napi-rs/cli (debug), fails if the
## generated index.js / index.d.ts differ from the committed ones, type-checks
## the typed API (test/types, tsc), then runs its tests (node --test,
## socket.io-client as the peer).
binding-node: binding-node-deps
	cd $(BINDING_NODE_DIR) && npx --no-install napi build --platform
	git diff --exit-code -- $(BINDING_NODE_DIR)/index.js $(BINDING_NODE_DIR)/index.d.ts || \
	  { echo "binding-node: generated index.js / index.d.ts drifted: commit them" >&2; exit 1; }
	test -z "$$(git status --porcelain -- $(BINDING_NODE_DIR)/index.js $(BINDING_NODE_DIR)/index.d.ts)" || \
	  { echo "binding-node: generated index.js / index.d.ts are not committed" >&2; exit 1; }
	cd $(BINDING_NODE_DIR) && npx --no-install tsc --noEmit --strict --types node --module nodenext --moduleResolution nodenext --target es2022 test/types/*.ts
	cd $(BINDING_NODE_DIR) && $(NODE) --test --test-force-exit test/*.test.mjs

## socket.io's own server tests against Tidewire's Engine and adapter (not in
## make test: the tests come from a checkout of socketio/socket.io, which is
## not on a package registry): make socketio-suite SOCKETIO_SRC=<checkout>.
socketio-suite: binding-node-deps
	@test -n "$(SOCKETIO_SRC)" || { echo "socketio-suite: set SOCKETIO_SRC to a checkout of socketio/socket.io" >&2; exit 1; }
	cd $(BINDING_NODE_DIR) && npx --no-install napi build --platform
	OUT=$(TARGET_ABS)/socket.io-suite $(BINDING_NODE_DIR)/conformance/run-socket.io-suite.sh $(SOCKETIO_SRC)

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

## The mobile binding: builds the library, regenerates the committed Swift
## and Kotlin sources (fails if they drift), checks the build recipes'
## tools (XCFramework, Android: they only run where Xcode / the NDK are),
## and runs its tests through UniFFI's Python bindings of the same library
## (the C ABI Swift and Kotlin use) against tidewire-server and Node socket.io.
binding-swift: build-server python-deps node-deps
	$(CARGO) build -p tidewire-swift
	bindings-swift/generate.sh $(SWIFT_LIB) $(UNIFFI_PY)
	git diff --exit-code -- bindings-swift/Sources bindings-swift/kotlin || \
	  { echo "binding-swift: generated Swift/Kotlin sources drifted: commit them" >&2; exit 1; }
	test -z "$$(git status --porcelain -- bindings-swift/Sources bindings-swift/kotlin)" || \
	  { echo "binding-swift: generated Swift/Kotlin sources are not committed" >&2; exit 1; }
	bindings-swift/scripts/build-xcframework.sh --check
	bindings-swift/scripts/build-android.sh --check
	cd bindings-swift/tests && rc=0 && PYTHONPATH=$(UNIFFI_PY) TIDEWIRE_SERVER_BIN="$(SERVER_BIN)" $(VENV)/bin/python -m pytest -q || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "binding-swift: pytest collected no tests" >&2; exit 1; fi; \
	exit $$rc

AUTOBAHN_DIR := hardening/autobahn
AUTOBAHN_STAMP := $(VENV)/.tidewire-autobahn-installed

.PHONY: autobahn autobahn-smoke autobahn-deps

autobahn-deps: $(AUTOBAHN_STAMP)

$(AUTOBAHN_STAMP): $(AUTOBAHN_DIR)/requirements.txt $(VENV_STAMP)
	$(VENV)/bin/python -m pip install --disable-pip-version-check -q -r $(AUTOBAHN_DIR)/requirements.txt
	touch $@

## RFC 6455: every Autobahn TestSuite case (kosoku, fuzzingclient mode)
## against the reference server's WebSocket echo (`/ws-echo`, conformance
## mode only: the Engine.IO WebSocket's frame layer, with an echo in place
## of the session). Fails on any failed case; writes
## hardening/autobahn/summary.json. Under nice: it shares the machine.
autobahn: build-server autobahn-deps
	nice -n 19 $(VENV)/bin/python $(AUTOBAHN_DIR)/run.py --server $(SERVER_BIN) --summary $(AUTOBAHN_DIR)/summary.json

## The short version in `make test`: every case but the performance (9.x)
## and permessage-deflate (12.x, 13.x) sections, about 10 s.
autobahn-smoke: build-server autobahn-deps
	$(VENV)/bin/python $(AUTOBAHN_DIR)/run.py --server $(SERVER_BIN) -x '9.*' -x '12.*' -x '13.*' \
	  --summary $(TARGET_ABS)/autobahn-smoke.json

FUZZ_DIR := core/fuzz
# The fuzz crate builds with sanitizer flags of its own: a target dir apart.
FUZZ_TARGET_DIR ?= $(TARGET_ABS)/fuzz
# Release with debug assertions (overflow checks), no sanitizer: the core
# forbids unsafe code, and libFuzzer then runs several times faster.
FUZZ_FLAGS := -O --debug-assertions --sanitizer none
FUZZ_TARGETS = $(shell sed -n 's/^name = "\(.*\)"$$/\1/p' $(FUZZ_DIR)/Cargo.toml | grep -v '^tidewire-fuzz$$')
FUZZ_RUNS ?= 10000000
FUZZ_MAX_SECONDS ?= 3600
FUZZ_SMOKE_SECONDS ?= 6
FUZZ := env RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=$(FUZZ_TARGET_DIR) cargo fuzz

.PHONY: fuzz fuzz-smoke fuzz-deps fuzz-build

## cargo-fuzz from crates.io, into ~/.cargo/bin, when missing.
fuzz-deps:
	command -v cargo-fuzz >/dev/null || $(CARGO) install --locked cargo-fuzz

fuzz-build: fuzz-deps
	cd $(FUZZ_DIR) && $(FUZZ) build $(FUZZ_FLAGS)

## Every fuzz target in turn, FUZZ_RUNS executions each (at most
## FUZZ_MAX_SECONDS), from the committed seeds plus the corpus it grew
## before (core/fuzz/corpus/, not committed); a crash fails it and leaves
## its input in core/fuzz/artifacts/. Long: under nice, it shares the machine.
fuzz: fuzz-build
	for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_DIR)/corpus/$$t; \
	  echo "==> fuzz $$t"; \
	  (cd $(FUZZ_DIR) && time nice -n 19 $(FUZZ) run $(FUZZ_FLAGS) $$t corpus/$$t seeds/$$t -- \
	    -runs=$(FUZZ_RUNS) -max_total_time=$(FUZZ_MAX_SECONDS) -print_final_stats=1) 2>&1 | \
	    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|Done|real|user|==|SUMMARY|thread|panicked)'; \
	done

## The short version in `make test`: every target for FUZZ_SMOKE_SECONDS
## from the committed seeds (into a scratch corpus), about a minute in all.
fuzz-smoke: fuzz-build
	for t in $(FUZZ_TARGETS); do \
	  scratch=$$(mktemp -d); mkdir -p $$scratch/corpus; \
	  if (cd $(FUZZ_DIR) && $(FUZZ) run $(FUZZ_FLAGS) $$t $$scratch/corpus seeds/$$t -- \
	        -max_total_time=$(FUZZ_SMOKE_SECONDS) -print_final_stats=1) >$$scratch/log 2>&1; then \
	    echo "fuzz-smoke $$t: $$(grep -h '^stat::number_of_executed_units' $$scratch/log)"; \
	  else \
	    tail -40 $$scratch/log; rm -rf $$scratch; echo "fuzz-smoke: $$t failed" >&2; exit 1; \
	  fi; \
	  rm -rf $$scratch; \
	done

FAULTS_DIR := hardening/cluster-faults
FAULTS_ROUNDS ?= 10
FAULTS_FIGURES := $(TARGET_ABS)/cluster-faults.jsonl
FAULTS_TEST := $(CARGO) test -p tidewire --features redis,client --test cluster_faults -- --ignored --test-threads=1

.PHONY: cluster-faults cluster-faults-smoke

## The cluster-faults campaign (issue 22, core/tests/cluster_faults.rs):
## Redis paused (CLIENT PAUSE ALL / WRITE), killed and restarted, latency,
## a stall and a cut between a node and Redis (a TCP proxy), a node
## frozen (SIGSTOP) and resumed; FAULTS_ROUNDS rounds of each under
## traffic. Prints the table of figures; RECORD=1 writes it into
## hardening/cluster-faults/RESULTS.md. Takes several minutes.
cluster-faults:
	rm -f $(FAULTS_FIGURES)
	rc=0; TIDEWIRE_FAULT_ROUNDS=$(FAULTS_ROUNDS) TIDEWIRE_FAULT_FIGURES=$(FAULTS_FIGURES) $(FAULTS_TEST) || rc=$$?; \
	$(PYTHON) $(FAULTS_DIR)/report.py $(FAULTS_FIGURES) | tee $(TARGET_ABS)/cluster-faults.md; \
	if [ -n "$(RECORD)" ]; then \
	  $(PYTHON) $(FAULTS_DIR)/record.py $(FAULTS_DIR)/RESULTS.md $(TARGET_ABS)/cluster-faults.md \
	    "make cluster-faults FAULTS_ROUNDS=$(FAULTS_ROUNDS) RECORD=1"; \
	fi; \
	exit $$rc

## The short version in `make test`: one round of each fault, about a minute
## and a half (after the build).
cluster-faults-smoke:
	TIDEWIRE_FAULT_ROUNDS=1 $(FAULTS_TEST)

LOADGEN_RELEASE := $(TARGET_ABS)/release/loadgen
LOADGEN_DEBUG := $(TARGET_ABS)/debug/loadgen
SOAK_ARGS ?=
ABUSE_ARGS ?=

.PHONY: soak soak-smoke abuse abuse-smoke

## The soak campaign (issue 22, benches/src/bin/loadgen/soak.rs): the
## reference server (release build, --conformance, recovery on) for 30
## minutes at half of the capacity measured first on the same mix of
## echoes with acks, broadcasts, joins and leaves, long-polling clients,
## short-lived clients and recovery reconnects. Fails unless every ack is
## answered, RSS at the end is within 5% of its level after the warm-up,
## and descriptors, threads, sessions and sockets are back where they were
## before the load. JSON in $(TARGET_ABS)/soak.json; the figures go into
## benches/RESULTS.md by hand (hardening/soak/RESULTS.md says how).
soak:
	$(CARGO) build --release -p tidewire-server -p tidewire-benches --bins
	$(LOADGEN_RELEASE) soak --server-bin $(TARGET_ABS)/release/tidewire-server --check \
	  --out $(TARGET_ABS)/soak.json $(SOAK_ARGS)

## The short version in `make test` (debug builds, about 60 s): a fixed
## low rate, the same mix and the same criteria but RSS within 50% (a
## young process's allocator still grows), no latency asserted.
soak-smoke:
	$(CARGO) build -p tidewire-server -p tidewire-benches --bins
	$(LOADGEN_DEBUG) soak --server-bin $(SERVER_BIN) --check --rate 200 --clients 50 --polling 5 --rooms 5 \
	  --warmup 10s --duration 30s --sample-every 5s --recovery-window 3s --rss-tolerance 0.5 \
	  --out $(TARGET_ABS)/soak-smoke.json

## The abuse-under-load campaign (issue 22, benches/src/bin/loadgen/abuse.rs):
## healthy clients on the reference server (release, caps on) through an
## undisturbed phase, then slow headers, slow bodies, slow consumers, a
## handshake flood from 50,000 addresses and a reconnect storm of 10,000
## clients drained from a second server. Fails if the server stops, a
## healthy ack goes unanswered, memory passes 1 GiB, a slow client is not
## closed by the server, a storm client does not get back, or a healthy p99
## is more than twice the undisturbed one. JSON in $(TARGET_ABS)/abuse.json.
abuse:
	$(CARGO) build --release -p tidewire-server -p tidewire-benches --bins
	$(LOADGEN_RELEASE) abuse --server-bin $(TARGET_ABS)/release/tidewire-server --check --check-latency \
	  --out $(TARGET_ABS)/abuse.json $(ABUSE_ARGS)

## The short version in `make test` (debug builds, about 80 s): every attack
## smaller, the same criteria but latency.
abuse-smoke:
	$(CARGO) build -p tidewire-server -p tidewire-benches --bins
	$(LOADGEN_DEBUG) abuse --server-bin $(SERVER_BIN) --check --phase 6s --clients 30 --polling 3 --rate 150 \
	  --slow-headers 200 --slow-bodies 50 --slow-consumers 20 --handshakes 300 --storm 1000 \
	  --out $(TARGET_ABS)/abuse-smoke.json

clean-e2e:
	rm -rf $(NODE_DIR)/node_modules $(WEB_DIR)/node_modules $(BENCH_NODE_DIR)/node_modules $(BINDING_NODE_DIR)/node_modules $(VENV)
