# greenlight — the two commands a newcomer needs are `make demo` and `make test`.
# Everything they need (the Python venvs with the pinned local AWS emulator and the pinned
# template linters) is installed here.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
# The infrastructure linters get their own venv: checkov pins boto3 exactly, moto wants another.
VENV_INFRA ?= .venv-infra
# The one Lambda bootstrap every function runs (functions/greenlight-lambda; each function's
# Handler in infra/template.yaml says which one it serves).
BOOTSTRAP := greenlight-lambda
export GREENLIGHT_PYTHON ?= $(abspath $(VENV))/bin/python

.PHONY: help setup awscli browser demo up test fmt lint asl infra-check lambdas bench fuzz sim clean

help:
	@echo "make demo   full canary rollout on a local AWS emulator, shown live"
	@echo "make up     a local stack to play with until Ctrl-C (PORT=4599 to pick the emulator's port)"
	@echo "make test   every test: template linters, formatting, unit and end-to-end (linted by clippy as they build), emulator self-test"
	@echo "make asl    regenerate infra/statemachine.asl.json from the Rust plan"
	@echo "make infra-check  lint infra/template.yaml offline (cfn-lint with AWS Serverless Rules, checkov); part of make test"
	@echo "make lambdas      build the bootstrap of every function for Lambda (arm64): target/lambda/$(BOOTSTRAP)/bootstrap"
	@echo "make bench        benchmarks (sizes, cold starts, memory, AWS calls, time-to-revert, scale) into BENCHMARKS.md"
	@echo "make sim          the deterministic simulator over SEEDS seeds (default 10000; the test command runs 150)"
	@echo "make fuzz         fuzz every parser target for FUZZ_SECONDS each (cargo-fuzz, nightly)"

# The venv with moto (pinned in tests/emulator/requirements.txt).
setup: $(VENV)/.installed

$(VENV)/.installed: tests/emulator/requirements.txt
	@command -v cargo >/dev/null || { echo "cargo not found: install Rust from https://rustup.rs"; exit 1; }
	@cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
	@cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/emulator/requirements.txt
	touch $@

# A local stack to play with until Ctrl-C (greenlight-local up): it prints what to export.
up: setup
	cargo build --quiet -p greenlight-cli
	cargo run --quiet -p greenlight-local -- up $(if $(PORT),--port $(PORT))

# The demo runs the greenlight CLI where an engineer would: build it first.
demo: setup
	cargo build --quiet -p greenlight-cli
	cargo run --quiet -p greenlight-local -- demo

# The template's linters first (seconds), formatting, the emulator's self-test next (the e2e
# tests stand on it), then every Rust test, linted by clippy as it builds: clippy-driver is
# the compiler of the workspace's own crates (RUSTC_WORKSPACE_WRAPPER, what `cargo clippy`
# does, here with code generation), so every dependency is built once instead of checked
# for clippy and built again for the tests. The workspace's lint table denies every warning,
# clippy's included, so a lint fails the build as `make lint` would. The tests' own `cargo
# build` of the binaries inherits the wrapper, and with it the same build.
CLIPPY_AS_RUSTC = RUSTC_WORKSPACE_WRAPPER="$$(rustup which clippy-driver 2>/dev/null || command -v clippy-driver)"

#
# The three venvs, the template's linters and the formatting check are independent: they run
# side by side (a fresh machine spends minutes in pip). The browser tests' Chromium and
# Playwright (make browser) install in the background while the emulator's self-test runs: on
# a fresh machine apt takes about a minute. The Rust build (the tests, and the binaries the
# end-to-end tests run: what their `build_binaries` would build) starts first, in the
# background: on a fresh machine it takes minutes of CPU that the downloads, the linters and
# the self-test (mostly waiting on health checks) leave idle. Its output is
# target/test-build.log, shown if it fails.
test:
	@mkdir -p target
	@{ $(CLIPPY_AS_RUSTC) cargo test --workspace --no-run && \
	   $(CLIPPY_AS_RUSTC) cargo build --workspace --bins; } > target/test-build.log 2>&1 & build=$$!; \
	$(MAKE) --no-print-directory -j4 infra-check setup awscli fmt || { kill $$build; exit 1; }; \
	$(MAKE) --no-print-directory browser > target/browser-install.log 2>&1 & browser=$$!; \
	$(VENV)/bin/python -m unittest discover -s tests/emulator -p 'test_*.py' || { kill $$build; exit 1; }; \
	wait $$browser || { cat target/browser-install.log; kill $$build; exit 1; }; \
	wait $$build || { cat target/test-build.log; exit 1; }
	$(CLIPPY_AS_RUSTC) cargo test --workspace -- --test-threads=8

# rustfmt is ensured here too: make test runs fmt beside setup, which adds it otherwise.
fmt:
	@cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
	cargo fmt --all --check

lint: fmt
	cargo clippy --workspace --all-targets -- -D warnings

asl:
	cargo run --quiet -p greenlight-local -- asl > infra/statemachine.asl.json

# The AWS CLI pinned in tests/awscli-requirements.txt, in its own venv: e2e `up::*` runs the
# README's `aws events put-events` commands with it against `greenlight-local up`.
VENV_AWSCLI ?= .venv-awscli
awscli: $(VENV_AWSCLI)/.installed

$(VENV_AWSCLI)/.installed: tests/awscli-requirements.txt
	$(PYTHON) -m venv $(VENV_AWSCLI)
	$(VENV_AWSCLI)/bin/pip install --quiet --disable-pip-version-check -r tests/awscli-requirements.txt
	touch $@

# The browser tests (e2e `dashboard::*`): Debian's Chromium, and Playwright pinned in
# tests/browser/requirements.txt in its own venv (it cannot download its own browsers here:
# tests/browser/driver.py starts $(CHROMIUM)). As root, apt-get installs chromium; otherwise
# this says how to get it.
VENV_BROWSER ?= .venv-browser
CHROMIUM ?= /usr/bin/chromium
export GREENLIGHT_CHROMIUM ?= $(CHROMIUM)
browser: $(VENV_BROWSER)/.installed
	@test -x $(CHROMIUM) || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's chromium for the browser tests (apt-get)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  elif command -v apt-get >/dev/null && sudo -n true 2>/dev/null; then \
	    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "the browser tests need Chromium at $(CHROMIUM): install it (Debian/Ubuntu: sudo apt-get install chromium) or point CHROMIUM=/path/to/chromium at one, then run make test again"; \
	    exit 1; \
	  fi; }
	@test -x $(CHROMIUM) || { echo "$(CHROMIUM) is still missing after installing chromium"; exit 1; }

$(VENV_BROWSER)/.installed: tests/browser/requirements.txt
	$(PYTHON) -m venv $(VENV_BROWSER)
	$(VENV_BROWSER)/bin/pip install --quiet --disable-pip-version-check -r tests/browser/requirements.txt
	touch $@

# The linters pinned in infra/requirements.txt.
$(VENV_INFRA)/.installed: infra/requirements.txt
	$(PYTHON) -m venv $(VENV_INFRA)
	$(VENV_INFRA)/bin/pip install --quiet --disable-pip-version-check -r infra/requirements.txt
	touch $@

# The deployable template, checked offline: cfn-lint (CloudFormation and SAM schemas, IAM
# policy shapes) with AWS Serverless Rules (cfn-lint-serverless: tracing, async failure
# destinations, log retention, ...), failing on warnings and errors, and checkov (security
# misconfigurations; fails on any failed check). Every suppression sits in the template's
# Metadata with its reason. --skip-download: no Prisma Cloud/Bridgecrew calls.
infra-check: $(VENV_INFRA)/.installed
	$(VENV_INFRA)/bin/cfn-lint --non-zero-exit-code warning --append-rules cfn_lint_serverless.rules -- infra/template.yaml
	$(VENV_INFRA)/bin/checkov -f infra/template.yaml --framework cloudformation --skip-download --quiet --compact

# cargo-lambda and zig, pinned in infra/build-requirements.txt, into the main venv.
$(VENV)/.lambda-tools: infra/build-requirements.txt $(VENV)/.installed
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r infra/build-requirements.txt
	touch $@

# The bootstrap of every function, release build for Lambda's arm64 runtime, into
# target/lambda/greenlight-lambda/bootstrap (what `sam build` packages for each function
# too). The venv's bin comes first on PATH: cargo finds the `cargo lambda` subcommand there,
# and cargo-lambda finds zig (its cross-linker) as `python3 -m ziglang`.
lambdas: $(VENV)/.lambda-tools
	@rustup target list --installed | grep -qx aarch64-unknown-linux-gnu || rustup target add aarch64-unknown-linux-gnu
	PATH="$(abspath $(VENV))/bin:$$PATH" cargo lambda build --release --arm64 --locked -p $(BOOTSTRAP)

# The deterministic simulator (shared/sim) over many seeds (the test build: its dependencies
# are optimised, and a release build with LTO takes far longer than it saves); a failing seed prints its trace and
# how to replay it. `make test` runs a fixed set (shared/sim/tests/seeds.rs).
SEEDS ?= 10000
sim:
	cargo run -p greenlight-sim -- --seed 1 --runs $(SEEDS)

# Each fuzz target in shared/fuzz (one per parser family) for FUZZ_SECONDS, one after the
# other, on corpora seeded from events/ (shared/fuzz/corpus, not committed; crashes go to
# shared/fuzz/artifacts). Needs the nightly toolchain; installs cargo-fuzz if missing.
# On a shared machine: nice -n 19 make fuzz.
FUZZ_SECONDS ?= 600
fuzz:
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@cargo fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked
	shared/fuzz/seed.sh
	set -e; for target in $$(cargo +nightly fuzz list --fuzz-dir shared/fuzz); do \
		cargo +nightly fuzz run --fuzz-dir shared/fuzz $$target -- -max_total_time=$(FUZZ_SECONDS); \
	done

clean:
	rm -rf $(VENV) $(VENV_INFRA) target

# Where cargo puts builds (the bench runs the release binaries from there).
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)

# The benchmarks (not part of `make test`): the arm64 bootstrap for its size (`lambdas`),
# this machine's release build of it to run the functions, then greenlight-bench, which
# writes BENCHMARKS.md.
# BENCH_ARGS passes options (`make bench BENCH_ARGS="--only cold,calls --runs 3"`; see
# `cargo run -p greenlight-bench -- --help`). Cold on 2 cores: about 45 min of builds.
bench: setup lambdas
	cargo build --release --locked -p $(BOOTSTRAP)
	cargo run --quiet --locked -p greenlight-bench -- --binaries $(TARGET_DIR)/release --arm64 $(TARGET_DIR)/lambda $(BENCH_ARGS)
