PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: demo test test-fast test-node node-deps docs docs-reference lint install install-infra clean chaos synth deploy smoke destroy cdk-cli bench gpu-bundle espeak chromium ffmpeg

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	# torch first, exactly pinned, so no resolver step can choose a CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev,infra,docs]'
	touch $(STAMP)

install: $(STAMP)

# The CDK app runs from a virtualenv of its own with only the infra install: synth and deploy never need torch.
INFRA_VENV := .venv-infra
INFRA_BIN := $(INFRA_VENV)/bin
INFRA_STAMP := $(INFRA_VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

$(INFRA_STAMP): pyproject.toml
	$(PYTHON) -m venv $(INFRA_VENV)
	$(INFRA_BIN)/pip install --quiet --upgrade pip
	$(INFRA_BIN)/pip install --quiet -e '.[infra]'
	touch $(INFRA_STAMP)

install-infra: $(INFRA_STAMP)

demo: install
	$(BIN)/whisper-worker demo

# espeak-ng speaks the synthetic benchmark corpus (and the tests that build it): Debian's package, installed here when
# this user can; otherwise one line says what to run.
espeak:
	@command -v espeak-ng >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& { apt-get install -y -q espeak-ng >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q espeak-ng >/dev/null; }; }; } \
		|| { echo "espeak-ng is missing and could not be installed here: run 'sudo apt-get install espeak-ng'" >&2; exit 1; }

# chromium (does a browser read our WebVTT?) and ffmpeg (do our SRT and WebVTT convert cleanly?) check the subtitles
# (tests/test_subtitles_speech.py): Debian's packages, installed the same way.
chromium ffmpeg:
	@command -v $@ >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& { apt-get install -y -q $@ >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q $@ >/dev/null; }; }; } \
		|| { echo "$@ is missing and could not be installed here: run 'sudo apt-get install $@'" >&2; exit 1; }

# Line and branch coverage of worker/ and infra/, worker processes included (pyproject.toml [tool.coverage.run]);
# the floor sits a little under the last measurement (docs/development.md, "Coverage").
COVERAGE_FLOOR := 88
COVERAGE := --cov --cov-report=term:skip-covered --cov-fail-under=$(COVERAGE_FLOOR)

# Test processes (pytest-xdist). Two on two cores: four saved under a minute here (pytest 14 min 11 s against
# 14 min 38 s) and made timing-sensitive tests meet heavier contention than a loaded machine gives.
TEST_PROCESSES ?= 2

# Everything: the Node.js client's suite (tests/test_node_client.py) and the strict docs build with its generated
# reference (tests/test_docs_reference.py) run inside pytest, beside the other tests. Each process takes whole test
# files in the order tests/conftest.py sorts them (slowest tiers first), not xdist's by-count order.
test: install install-infra cdk-cli espeak chromium ffmpeg node-deps
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest --durations=30 -n $(TEST_PROCESSES) --dist loadfile --no-loadscope-reorder $(COVERAGE)

# The quick loop: ruff and every test but the e2e tier (real worker processes, whole stacks; tests/conftest.py `tier`),
# on two processes (pytest-xdist); about 3 minutes on two cores. docs/development.md, "Test tiers".
test-fast: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -m "not e2e" -n 2 --durations=15

# The Node.js client (clients/node), against moto and a real worker from .venv; needs npm. Its dependencies come
# from the committed lockfile, installed again when the lockfile changes.
NODE_DEPS := clients/node/node_modules/.package-lock.json

$(NODE_DEPS): clients/node/package-lock.json
	cd clients/node && npm ci --no-audit --no-fund --silent

node-deps: $(NODE_DEPS)

test-node: install node-deps
	cd clients/node && npm test

# The manual: docs/reference/ is generated from the code (scripts/docs_reference.py; its Node.js pages need npm), then
# the site is built with --strict into site/, so a stale reference page, a broken link or a missing page fails.
docs: install
	$(BIN)/python -m scripts.docs_reference --check
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

docs-reference: install
	$(BIN)/python -m scripts.docs_reference

chaos: install
	$(BIN)/python scripts/chaos.py

# Throughput benchmark (bench/run.py), not part of `make test`: `make bench BENCH_ARGS="--device cuda --repeat 10"`
# (`--diarize` adds the worker with diarize: true beside it). Then diarization accuracy and speed (bench/diarization.py)
# when given data: `make bench DIARIZATION_ARGS="--recordings DIR --clips DIR --device cpu --json out.json"`.
BENCH_ARGS ?=
DIARIZATION_ARGS ?=
BENCH_STAMP := $(STAMP)-bench

$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $(BENCH_STAMP)

bench: install $(BENCH_STAMP) espeak
	$(BIN)/python -m bench.run $(BENCH_ARGS)
ifneq ($(strip $(DIARIZATION_ARGS)),)
	$(BIN)/python -m bench.diarization $(DIARIZATION_ARGS)
else
	@echo 'diarization: skipped; pass data with make bench DIARIZATION_ARGS="--recordings DIR --clips DIR" (see python -m bench.diarization --help)'
endif

# docs/performance.md's tables and prices.json's measured throughput, regenerated from bench/results/*.json
# (`make bench BENCH_ARGS="--json bench/results/NAME.json"` writes one); `--check` is tests/test_bench_publish.py's.
.PHONY: bench-publish
bench-publish: install
	$(BIN)/python -m bench.publish

# .gpu/ for the benchmark on an offline GPU machine (bench/gpu_bundle.py); there: `bash bench/gpu.sh`.
gpu-bundle: install
	$(BIN)/python -m bench.gpu_bundle

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# --- AWS CDK (infra/, cdk.json): the CLI lives in .cdk/, pinned; `make deploy CDK_ARGS="-c cpuOnly=true"`.
CDK_VERSION := 2.1148.1
CDK_DIR := .cdk
CDK := $(CDK_DIR)/node_modules/.bin/cdk
CDK_STAMP := $(CDK_DIR)/.installed-$(CDK_VERSION)
CDK_ENV := JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20 CDK_DISABLE_CLI_TELEMETRY=true
CDK_ARGS ?=

$(CDK_STAMP):
	npm install --no-fund --no-audit --silent --prefix $(CDK_DIR) aws-cdk@$(CDK_VERSION)
	touch $(CDK_STAMP)

# For `make test`: without npm the CLI synth test skips instead of failing the whole suite.
cdk-cli:
	@if command -v npm >/dev/null; then $(MAKE) --no-print-directory $(CDK_STAMP); \
	else echo "npm not found: not installing the aws-cdk CLI (tests/test_infra_cli.py will skip)"; fi

synth: install-infra $(CDK_STAMP)
	@$(CDK_ENV) $(CDK) synth --no-notices $(CDK_ARGS)

deploy: install-infra $(CDK_STAMP)
	@args="$$($(INFRA_BIN)/python -m infra.preflight $(CDK_ARGS))" || exit 1; \
	$(CDK_ENV) $(CDK) deploy --no-notices --outputs-file cdk-outputs.json $$args $(CDK_ARGS) && \
	$(INFRA_BIN)/python -m infra.preflight outputs cdk-outputs.json

# Prove a deployed stack works: the bundled sample through its queue (and HTTPS API), every format checked.
STACK ?= WhisperBatch
smoke: install
	$(BIN)/whisper-worker smoke --stack $(STACK) $(SMOKE_ARGS)

destroy: install-infra $(CDK_STAMP)
	$(CDK_ENV) $(CDK) destroy --no-notices $(CDK_ARGS)
	@echo "The results bucket is retained by default (context removalPolicy=retain): empty and delete it yourself."

clean:
	rm -rf $(VENV) $(INFRA_VENV) .pytest_cache
