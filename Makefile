# greenlight — the two commands a newcomer needs are `make demo` and `make test`.
# Everything they need (the Python venv with the pinned local AWS emulator) is installed here.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
export GREENLIGHT_PYTHON ?= $(abspath $(VENV))/bin/python

.PHONY: help setup demo test lint asl clean

help:
	@echo "make demo   full canary rollout on a local AWS emulator, shown live"
	@echo "make test   every test: formatting, clippy, unit, end-to-end, emulator self-test"
	@echo "make asl    regenerate infra/statemachine.asl.json from the Rust plan"

# The venv with moto (pinned in tests/emulator/requirements.txt).
setup: $(VENV)/.installed

$(VENV)/.installed: tests/emulator/requirements.txt
	@command -v cargo >/dev/null || { echo "cargo not found: install Rust from https://rustup.rs"; exit 1; }
	@cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
	@cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/emulator/requirements.txt
	touch $@

demo: setup
	cargo run --quiet -p greenlight-local -- demo

# The emulator's self-test first (the e2e tests stand on it), then every Rust test.
test: setup lint
	$(VENV)/bin/python -m unittest discover -s tests/emulator -p 'test_*.py'
	cargo test --workspace -- --test-threads=8

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

asl:
	cargo run --quiet -p greenlight-local -- asl > infra/statemachine.asl.json

clean:
	rm -rf $(VENV) target
