# The two commands that matter (see README.md):
#   make run    build the default mapping components and run the sandbox: both emulators and
#               the host, seeded, on loopback (`cosell sandbox`)
#   make test   build the components and run every test, then the lint checks
#
# Other targets: make serve | guests | lint | fmt

CARGO ?= cargo
# A local development token for the admin API; set your own for anything else.
COSELL_ADMIN_TOKEN ?= local-dev-token
export COSELL_ADMIN_TOKEN

# The Python example mapping, built with componentize-py (from PyPI) in a private virtualenv;
# rebuilt only when its source or the contract changes.
PYTHON_GUEST := guest-mappings/dist/python_example.wasm
PYTHON_VENV := guest-mappings/python-example/.venv
COMPONENTIZE_PY_VERSION := 0.25.1

.PHONY: run serve test guests rust-guests lint fmt

guests: rust-guests $(PYTHON_GUEST)

rust-guests:
	bash guest-mappings/build.sh --release

$(PYTHON_VENV)/bin/componentize-py:
	python3 -m venv $(PYTHON_VENV)
	timeout 600 $(PYTHON_VENV)/bin/pip install --quiet componentize-py==$(COMPONENTIZE_PY_VERSION)

$(PYTHON_GUEST): guest-mappings/python-example/app.py wit/mapping.wit $(PYTHON_VENV)/bin/componentize-py
	mkdir -p guest-mappings/dist
	cd guest-mappings/python-example && timeout 600 .venv/bin/componentize-py --quiet \
		-d ../../wit -w cosell:mapping/mapping-step componentize app -o ../dist/python_example.wasm

run: rust-guests
	$(CARGO) run -p cosell -- sandbox

# Only the host, on the example configuration (no emulators).
serve: rust-guests
	@echo "admin API token: $$COSELL_ADMIN_TOKEN (set COSELL_ADMIN_TOKEN to change it)"
	$(CARGO) run -p cosell -- serve --config cosell.example.toml

# nextest runs each test in its own process, in parallel; cargo test is the fallback.
# The slow reliability drills are #[ignore]d for a quick `cargo nextest run`; make test runs
# them too.
test: guests
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast --run-ignored all; \
	else \
		$(CARGO) test --workspace --no-fail-fast -- --include-ignored; \
	fi
	$(MAKE) lint

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all
