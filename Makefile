# The two commands that matter (see README.md):
#   make run    build the default mapping components and run the sandbox: both emulators and
#               the host, seeded, on loopback (`cosell sandbox`)
#   make test   build the components and run every test, then the lint checks
#
# Other targets: make serve | guests | sdk-venv | lint | fmt | fuzz | bench | package | package-check

CARGO ?= cargo
# A local development token for the admin API; set your own for anything else.
COSELL_ADMIN_TOKEN ?= local-dev-token-not-for-production-use
export COSELL_ADMIN_TOKEN

# The Python example mapping, built with componentize-py (from PyPI) in a private virtualenv;
# rebuilt only when its source or the contract changes.
PYTHON_GUEST := guest-mappings/dist/python_example.wasm
PYTHON_VENV := guest-mappings/python-example/.venv
COMPONENTIZE_PY_VERSION := 0.25.1

# The JavaScript example mapping, built with componentize-js (from npm, exact versions in its
# package-lock.json) installed by `npm ci` into the example's node_modules/; rebuilt only when its
# source, its lock file or the contract changes. npm ci writes node_modules/.package-lock.json.
JS_GUEST := guest-mappings/dist/js_example.wasm
JS_EXAMPLE := guest-mappings/js-example

# Microsoft's Python SDK for Dataverse (from PyPI, pinned in its requirements.txt), which the
# compatibility suite (tests/dataverse_python_sdk.rs) drives the Dataverse emulator with, in a
# private virtualenv; installed again when its requirements change.
SDK_DIR := compat/dataverse-python-sdk
SDK_VENV := $(SDK_DIR)/.venv

.PHONY: run serve test guests rust-guests sdk-venv lint fmt fuzz bench package package-check

guests: rust-guests $(PYTHON_GUEST) $(JS_GUEST)

rust-guests:
	bash guest-mappings/build.sh --release

$(PYTHON_VENV)/bin/componentize-py:
	python3 -m venv $(PYTHON_VENV)
	timeout 600 $(PYTHON_VENV)/bin/pip install --quiet componentize-py==$(COMPONENTIZE_PY_VERSION)

$(PYTHON_GUEST): guest-mappings/python-example/app.py wit/mapping.wit $(PYTHON_VENV)/bin/componentize-py
	mkdir -p guest-mappings/dist
	cd guest-mappings/python-example && timeout 600 .venv/bin/componentize-py --quiet \
		-d ../../wit -w cosell:mapping/mapping-step componentize app -o ../dist/python_example.wasm

$(JS_EXAMPLE)/node_modules/.package-lock.json: $(JS_EXAMPLE)/package.json $(JS_EXAMPLE)/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "npm is missing: install Node.js 20.19 or newer with npm" >&2; exit 1; }
	cd $(JS_EXAMPLE) && timeout 600 npm ci --no-audit --no-fund --loglevel=error

$(JS_GUEST): $(JS_EXAMPLE)/mapping.js wit/mapping.wit $(JS_EXAMPLE)/node_modules/.package-lock.json
	mkdir -p guest-mappings/dist
	cd $(JS_EXAMPLE) && timeout 600 npm run --silent build

sdk-venv: $(SDK_VENV)/.installed

$(SDK_VENV)/.installed: $(SDK_DIR)/requirements.txt
	python3 -m venv $(SDK_VENV)
	timeout 900 $(SDK_VENV)/bin/pip install --quiet -r $(SDK_DIR)/requirements.txt
	touch $@

run: rust-guests
	$(CARGO) run -p cosell -- sandbox

# Only the host, on the example configuration (no emulators).
serve: rust-guests
	@echo "admin API token: $$COSELL_ADMIN_TOKEN (set COSELL_ADMIN_TOKEN to change it)"
	$(CARGO) run -p cosell -- serve --config cosell.example.toml

# nextest runs each test in its own process, in parallel; cargo test is the fallback.
# The slow reliability drills are #[ignore]d for a quick `cargo nextest run`; make test runs
# them too.
test: guests sdk-venv
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast --run-ignored all; \
	else \
		$(CARGO) test --workspace --no-fail-fast -- --include-ignored; \
	fi
	$(MAKE) lint

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	# The API docs build without a broken link (module docs may link private items: see lib.rs).
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps --quiet
	# A production build leaves the emulators out: the sandbox feature is the only way in. It
	# builds without them, and they are no dependency of it at all (not even an unused one).
	$(CARGO) clippy -p cosell --no-default-features -- -D warnings
	@if $(CARGO) tree -p cosell --no-default-features -e normal --prefix none | grep -q '^cosell-emulators '; then \
		echo "cosell without the sandbox feature depends on cosell-emulators: make that dependency optional, enabled by the sandbox feature only" >&2; exit 1; \
	fi

fmt:
	$(CARGO) fmt --all

# The fuzz targets of the webhook parsers and the signature verifier (fuzz/README.md), each for
# FUZZ_SECONDS, from the kept seeds. cargo-fuzz wants nightly flags: RUSTC_BOOTSTRAP=1 lets the
# stable compiler accept them. Its own target dir, so instrumented builds never mix with ours.
# A crash input is copied into fuzz/regressions/<target>/ (replayed by `make test` from then
# on) and fails the run.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := partner_center_event dataverse_context signature

fuzz:
	cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz build --target-dir target
	@cd fuzz && for target in $(FUZZ_TARGETS); do \
		mkdir -p corpus/$$target regressions/$$target; rm -rf artifacts/$$target; \
		log=target/fuzz-$$target.log; \
		echo "==> fuzzing $$target for $(FUZZ_SECONDS) s (log: fuzz/$$log)"; \
		if RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run --target-dir target $$target corpus/$$target seeds/$$target -- \
			-max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >$$log 2>&1; then \
			grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added|Done)' $$log; \
		else \
			tail -n 60 $$log; \
			if ls artifacts/$$target/* >/dev/null 2>&1; then \
				cp artifacts/$$target/* regressions/$$target/; \
				echo "FUZZ FAILURE in $$target: inputs copied to fuzz/regressions/$$target/; fix, then commit them"; \
			fi; \
			exit 1; \
		fi; \
	done

# The benchmarks (docs/benchmarks.md): the criterion benches (in-process figures), then the load
# driver (end-to-end figures against the emulators, ~6 min; figure 8 needs PostgreSQL, found as
# `make test` finds it), then one table of everything. Release builds; nothing here asserts a time.
bench: rust-guests
	$(CARGO) build --release -p cosell -p cosell-bench
	$(CARGO) bench -p cosell-bench
	$(CARGO) run --release -p cosell-bench -- all

# The Debian package (deploy/debian/, docs/production.md): one release build, then cargo-deb
# packages it without building again (`cargo install cargo-deb --locked --version 3.8.0`).
TARGET_DIR = $(or $(CARGO_TARGET_DIR),target)
PACKAGE_DEB = $(TARGET_DIR)/debian/cosell.deb
# PACKAGE_FROM_TEST_BUILD=1 packages the binary `make test` has just built (target/debug) instead
# of building for release. CI uses it: the package check looks at the packaging (files, owners,
# the user, the unit, install, upgrade, serve, purge), which is the same for either binary, and a
# cold release build adds 13 to 16 minutes on 2 cores. cargo-deb warns that it is meant for
# release builds; a package to install anywhere is built without it.
PACKAGE_FROM_TEST_BUILD ?=

package: rust-guests
	@$(CARGO) deb --version >/dev/null 2>&1 || { \
		echo "cargo-deb is missing: cargo install cargo-deb --locked --version 3.8.0" >&2; exit 1; }
ifeq ($(PACKAGE_FROM_TEST_BUILD),)
	$(CARGO) build --release -p cosell
	$(CARGO) deb -p cosell --no-build --output $(PACKAGE_DEB)
else
	@test -x $(TARGET_DIR)/debug/cosell || { \
		echo "no test build of cosell to package: run make test first, or leave PACKAGE_FROM_TEST_BUILD unset" >&2; exit 1; }
	$(CARGO) deb -p cosell --no-build --profile dev --output $(PACKAGE_DEB)
endif

# Installs the package on this machine with dpkg (as root), checks it and purges it again
# (deploy/debian/check-package.sh says what it checks).
package-check: package
	bash deploy/debian/check-package.sh $(PACKAGE_DEB)
