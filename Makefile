# The two commands a newcomer needs: `make demo` and `make test`. `make unit` runs the pure
# tests alone, in seconds, with no control plane.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
# kubernetes-sigs/mcs-api's conformance suite, a test binary built from its conformance/ module
# (not served by the Go module proxy: this project cannot fetch or build it).
MCS_CONFORMANCE ?= $(HOME)/.cache/ksm-sync/mcs-conformance/conformance.test

.PHONY: demo test unit bench conformance lint binaries lock clean

$(BIN)/ksm-sync: pyproject.toml requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

binaries:
	scripts/build-binaries >/dev/null

demo: $(BIN)/ksm-sync binaries
	PATH="$(abspath $(BIN)):$$PATH" scripts/demo

test: $(BIN)/ksm-sync binaries
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -n 2 $(PYTEST_ARGS)

unit: $(BIN)/ksm-sync
	$(BIN)/pytest -q tests/unit $(PYTEST_ARGS)

bench: $(BIN)/ksm-sync binaries
	$(BIN)/python -m bench $(BENCH_ARGS)

# The MCS conformance suite against two members, each with its ksm-sync loop; where the suite
# is missing, says so (exit 2).
conformance: $(BIN)/ksm-sync binaries
	$(BIN)/python scripts/conformance "$(MCS_CONFORMANCE)"

lint: $(BIN)/ksm-sync
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Regenerates both lock files from pyproject.toml, keeping the pins they have where they still fit.
# requirements.lock also pins the build backend ([build-system] requires), which
# scripts/install-runtime installs from it to build ksm-sync without build isolation.
lock:
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet uv
	.lock-venv/bin/python -c 'import tomllib; \
		print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], sep="\n")' \
		>.lock-venv/build-system.in
	.lock-venv/bin/uv pip compile pyproject.toml .lock-venv/build-system.in --python-version 3.11 --generate-hashes -o requirements.lock
	.lock-venv/bin/uv pip compile pyproject.toml --extra dev --python-version 3.11 --generate-hashes -o requirements-dev.lock
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
